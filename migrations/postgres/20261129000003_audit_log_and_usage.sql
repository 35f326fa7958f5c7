-- The audit log: one row per change, written in the change's transaction.
-- Never a secret or a hash: `details` is a JSON object of plain facts.
CREATE TABLE audit_events (
    id         BIGSERIAL   NOT NULL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    action     TEXT        NOT NULL,
    actor      TEXT        NOT NULL,
    account_id TEXT,
    token_id   TEXT,
    source_ip  TEXT,
    request_id TEXT,
    details    TEXT        NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_by_account ON audit_events (account_id, id);
CREATE INDEX audit_events_by_token ON audit_events (token_id, id);
CREATE INDEX audit_events_by_action ON audit_events (action, id);
CREATE INDEX audit_events_by_time ON audit_events (at);

-- Requests per token per hour: admitted and refused by the rate limit.
-- Instances add their counts (an upsert that sums), so the rows are totals.
CREATE TABLE token_usage (
    token_id TEXT        NOT NULL,
    hour     TIMESTAMPTZ NOT NULL,
    admitted BIGINT      NOT NULL DEFAULT 0,
    limited  BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, hour)
);

CREATE INDEX token_usage_by_hour ON token_usage (hour);
