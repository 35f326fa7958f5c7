-- Secret tags: 32 bits of SHA-256 over the token's id and secret, checked
-- before argon2, so a wrong secret is refused from memory (see src/token.rs).
-- NULL for tokens made before; filled in at their next successful use.
ALTER TABLE api_tokens ADD COLUMN secret_tag INTEGER CHECK (secret_tag BETWEEN 0 AND 4294967295);

-- A rotated token names its successor, so "rotate it again" can say which to rotate.
ALTER TABLE api_tokens ADD COLUMN replaced_by TEXT;

-- Timestamps gain milliseconds ("2026-11-26T23:44:59.000Z"), so a rotation's
-- grace period ends when it says. All values stay fixed-width text.
UPDATE api_tokens SET created_at = substr(created_at, 1, 19) || '.000Z' WHERE length(created_at) = 20;
UPDATE api_tokens SET last_used_at = substr(last_used_at, 1, 19) || '.000Z' WHERE length(last_used_at) = 20;
UPDATE api_tokens SET expires_at = substr(expires_at, 1, 19) || '.000Z' WHERE length(expires_at) = 20;
UPDATE api_tokens SET revoked_at = substr(revoked_at, 1, 19) || '.000Z' WHERE length(revoked_at) = 20;
UPDATE accounts SET created_at = substr(created_at, 1, 19) || '.000Z' WHERE length(created_at) = 20;
UPDATE accounts SET updated_at = substr(updated_at, 1, 19) || '.000Z' WHERE length(updated_at) = 20;
UPDATE changes SET at = substr(at, 1, 19) || '.000Z' WHERE length(at) = 20;
