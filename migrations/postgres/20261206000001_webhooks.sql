-- Webhooks (Standard Webhooks): endpoints, the outbox of events, one
-- delivery per event and endpoint, each attempt, and the expiry reminders
-- already sent. Events and deliveries are written in the transaction of the
-- change they report, as the audit event is, so none is lost.

-- Where events go. The signing secret must be kept to sign (HMAC); it is
-- shown once, when made. During a rotation the previous one signs too
-- until `previous_secret_until`.
CREATE TABLE webhook_endpoints (
    id                    TEXT NOT NULL PRIMARY KEY,
    url                   TEXT NOT NULL,
    events                TEXT,  -- space-separated event types; NULL: every type
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL
);

-- One row per event; `id` (`msg_...`) is the `webhook-id` of every attempt.
CREATE TABLE webhook_events (
    seq        BIGSERIAL   NOT NULL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    type       TEXT    NOT NULL,
    order_key  TEXT    NOT NULL,  -- the token (or account) whose events keep their order
    payload    TEXT    NOT NULL,
    created_at TIMESTAMPTZ    NOT NULL
);

-- One row per event and endpoint: the outbox the workers claim.
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL   NOT NULL PRIMARY KEY,
    event_seq       BIGINT NOT NULL,
    endpoint_id     TEXT    NOT NULL,
    order_key       TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',  -- pending, delivered, failed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ    NOT NULL,
    claimed_until   TIMESTAMPTZ,
    UNIQUE (event_seq, endpoint_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_order ON webhook_deliveries (endpoint_id, order_key, id);

-- Each attempt: when, the HTTP status (NULL: no answer) and the error.
CREATE TABLE webhook_attempts (
    id          BIGSERIAL   NOT NULL PRIMARY KEY,
    delivery_id BIGINT NOT NULL,
    endpoint_id TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    attempt     BIGINT NOT NULL,
    at          TIMESTAMPTZ    NOT NULL,
    status_code BIGINT,
    error       TEXT,
    outcome     TEXT    NOT NULL  -- delivered, retrying, failed
);

CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id);

-- Notices sent once per token and key: the expiry reminders (`7d`, `1d`,
-- `expired`) and the first refused request of an hour (`limit:<hour>`); the
-- key makes each one happen once across restarts and instances.
CREATE TABLE webhook_notices (
    token_id  TEXT NOT NULL,
    threshold TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (token_id, threshold)
);
