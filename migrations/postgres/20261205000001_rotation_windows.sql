-- A rotated token and its successor share one rate window, so a rotation
-- never grants extra requests: a successor's window_id is its predecessor's
-- window (NULL: the token's own id, for every token never rotated into).
ALTER TABLE api_tokens ADD COLUMN window_id TEXT;

-- A rotation ends the grace of the rotated token's own predecessor: found
-- by its successor.
CREATE INDEX api_tokens_by_successor ON api_tokens (replaced_by) WHERE replaced_by IS NOT NULL;
