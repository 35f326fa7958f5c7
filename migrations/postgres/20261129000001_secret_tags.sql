-- Secret tags: 32 bits of SHA-256 over the token's id and secret, checked
-- before argon2, so a wrong secret is refused from memory (see src/token.rs).
-- NULL for tokens made before; filled in at their next successful use.
ALTER TABLE api_tokens ADD COLUMN secret_tag BIGINT CHECK (secret_tag BETWEEN 0 AND 4294967295);

-- A rotated token names its successor, so "rotate it again" can say which to rotate.
ALTER TABLE api_tokens ADD COLUMN replaced_by TEXT;
