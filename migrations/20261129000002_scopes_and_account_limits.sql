-- Scopes: what a token may do. '*' (every scope) for tokens made before
-- scopes existed and for tokens created without a list; otherwise the
-- scope names separated by single spaces, sorted.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';

-- Account-wide limits of a plan: all of an account's tokens together get
-- at most this many requests in any rolling hour (NULL: no ceiling), and an
-- account may hold at most this many live tokens (NULL: no cap).
ALTER TABLE plans ADD COLUMN account_requests_per_hour INTEGER
    CHECK (account_requests_per_hour BETWEEN 0 AND 4294967295);
ALTER TABLE plans ADD COLUMN max_tokens INTEGER CHECK (max_tokens BETWEEN 0 AND 4294967295);

CREATE INDEX api_tokens_live_by_account ON api_tokens (account_id) WHERE revoked_at IS NULL;
