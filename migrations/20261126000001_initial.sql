-- tokengate schema (SQLite). Timestamps are RFC 3339 UTC text with whole
-- seconds ("2026-11-26T23:44:59Z"): fixed width, so they sort as text.

CREATE TABLE plans (
    name              TEXT    NOT NULL PRIMARY KEY,
    api_access        INTEGER NOT NULL CHECK (api_access IN (0, 1)),
    requests_per_hour INTEGER NOT NULL CHECK (requests_per_hour >= 0)
) STRICT;

INSERT INTO plans (name, api_access, requests_per_hour) VALUES
    ('free',       0,     0),
    ('pro',        1,  1000),
    ('enterprise', 1, 10000);

CREATE TABLE accounts (
    id         TEXT NOT NULL PRIMARY KEY,   -- the host application's account id
    plan       TEXT NOT NULL REFERENCES plans (name),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    id             TEXT NOT NULL PRIMARY KEY,  -- public random token id (never sequential)
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,              -- argon2id PHC string; the plaintext is never stored
    hint           TEXT NOT NULL,              -- last 4 characters of the token
    created_at     TEXT NOT NULL,
    last_used_at   TEXT,
    expires_at     TEXT,
    revoked_at     TEXT,
    revoked_reason TEXT
) STRICT;

CREATE INDEX api_tokens_by_account ON api_tokens (account_id, created_at);

-- The change feed: token creations (so every server knows which ids exist)
-- and changes that make cached authentications stale, polled by running
-- servers so that a revoke made by the CLI or another instance reaches every
-- cache. Written in the same transaction as the change itself.
CREATE TABLE changes (
    seq     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind    TEXT    NOT NULL CHECK (kind IN ('created', 'token', 'account', 'plan')),
    subject TEXT    NOT NULL,
    at      TEXT    NOT NULL
) STRICT;

CREATE INDEX changes_by_time ON changes (at);

-- Server settings, e.g. the SHA-256 of a generated admin token.
CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
