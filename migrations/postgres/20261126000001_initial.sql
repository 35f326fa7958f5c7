-- tokengate schema (PostgreSQL): the same tables as the SQLite schema.

CREATE TABLE plans (
    name              TEXT    NOT NULL PRIMARY KEY,
    api_access        BOOLEAN NOT NULL,
    requests_per_hour BIGINT  NOT NULL CHECK (requests_per_hour BETWEEN 0 AND 4294967295)
);

INSERT INTO plans (name, api_access, requests_per_hour) VALUES
    ('free',       FALSE,     0),
    ('pro',        TRUE,   1000),
    ('enterprise', TRUE,  10000);

CREATE TABLE accounts (
    id         TEXT        NOT NULL PRIMARY KEY,   -- the host application's account id
    plan       TEXT        NOT NULL REFERENCES plans (name),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
    id             TEXT        NOT NULL PRIMARY KEY,  -- public random token id (never sequential)
    account_id     TEXT        NOT NULL REFERENCES accounts (id),
    name           TEXT        NOT NULL,
    secret_hash    TEXT        NOT NULL,              -- argon2id PHC string; the plaintext is never stored
    hint           TEXT        NOT NULL,              -- last 4 characters of the token
    created_at     TIMESTAMPTZ NOT NULL,
    last_used_at   TIMESTAMPTZ,
    expires_at     TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);

CREATE INDEX api_tokens_by_account ON api_tokens (account_id, created_at);

-- The change feed (see src/feed.rs). Writers hold a transaction-scoped
-- advisory lock while they append, so sequence order is commit order and a
-- poller never skips a row that commits late.
CREATE TABLE changes (
    seq     BIGSERIAL   NOT NULL PRIMARY KEY,
    kind    TEXT        NOT NULL CHECK (kind IN ('created', 'token', 'account', 'plan')),
    subject TEXT        NOT NULL,
    at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX changes_by_time ON changes (at);

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
