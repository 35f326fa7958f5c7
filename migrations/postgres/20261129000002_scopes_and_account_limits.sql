-- Scopes: what a token may do. '*' (every scope) for tokens made before
-- scopes existed and for tokens created without a list; otherwise the
-- scope names separated by single spaces, sorted.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';

-- Account-wide limits of a plan (NULL: none): a shared hourly ceiling for
-- all of an account's tokens, and a cap on its live tokens.
ALTER TABLE plans ADD COLUMN account_requests_per_hour BIGINT
    CHECK (account_requests_per_hour BETWEEN 0 AND 4294967295);
ALTER TABLE plans ADD COLUMN max_tokens BIGINT CHECK (max_tokens BETWEEN 0 AND 4294967295);

CREATE INDEX api_tokens_live_by_account ON api_tokens (account_id) WHERE revoked_at IS NULL;
