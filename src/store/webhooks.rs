//! [`WebhookStore`]: the durable side of webhooks (Standard Webhooks).
//!
//! Events are written to an outbox in the transaction of the change they
//! report (`sql/outbox.rs`, called by [`WriteTx::record_audit`]), one
//! delivery per subscribed endpoint. This trait is what the server's
//! delivery worker and admin routes need on top: endpoints, claiming due
//! deliveries under a lease (so an instance killed mid-delivery leaves them
//! to another, or to itself after a restart), recording attempts, and the
//! expiry sweep. Signing and HTTP are the server's; the store keeps no rule
//! about retry timing beyond the `next_attempt_at` it is given.
//!
//! [`WriteTx::record_audit`]: super::WriteTx::record_audit

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{AuditEvent, StoreError};

/// A webhook endpoint's signing secret, `whsec_<base64>`. Its `Debug`
/// redacts it and its memory is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    /// Wraps a secret read from the store or made by [`WebhookSecret::generate`].
    pub fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    /// A new random secret: `whsec_` and 32 random bytes in base64.
    pub fn generate() -> Self {
        use base64::Engine;
        use rand::RngCore;
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes.as_ref());
        Self::new(format!("whsec_{encoded}"))
    }

    /// The secret itself: to sign with, or to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A registered endpoint, with its secrets (never serialized).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookEndpoint {
    /// `whe_...`.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The subscribed event types; `None`: every type.
    pub events: Option<Vec<String>>,
    /// The current signing secret.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(WebhookSecret, OffsetDateTime)>,
    /// When the endpoint was registered.
    pub created_at: OffsetDateTime,
}

impl WebhookEndpoint {
    /// The event types an endpoint can subscribe to.
    pub const EVENT_TYPES: [&str; 7] = [
        "token.created",
        "token.rotated",
        "token.revoked",
        "token.expiring",
        "token.expired",
        "account.plan_changed",
        "account.limit_reached",
    ];

    /// A new endpoint with a fresh secret.
    pub fn new(id: String, url: String, events: Option<Vec<String>>, now: OffsetDateTime) -> Self {
        Self {
            id,
            url,
            events,
            secret: WebhookSecret::generate(),
            previous_secret: None,
            created_at: now,
        }
    }
}

/// A delivery a worker has claimed: the event, where it goes, and how to sign it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimedDelivery {
    /// The delivery's row id.
    pub delivery_id: i64,
    /// The event's id, `msg_...`: the `webhook-id` header, the same on every attempt.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The JSON body, exactly as signed and sent.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// A 2xx answer: done.
    Delivered,
    /// It failed and will be tried again.
    Retrying,
    /// It failed and was the last try.
    Failed,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "delivered" => Ok(Self::Delivered),
            "retrying" => Ok(Self::Retrying),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!(
                "bad attempt outcome {other:?}"
            ))),
        }
    }

    /// The delivery's status after this outcome.
    pub(crate) fn status(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "pending",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn text(self) -> &'static str {
        self.as_str()
    }
}

/// One delivery attempt: what a worker records after it
/// ([`WebhookAttempt::new`]), and what `GET /admin/webhooks/{id}/deliveries`
/// lists.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct WebhookAttempt {
    /// The event's id (`webhook-id`).
    #[schema(example = "msg_2b8f0c5e4a1d4f0e9c7b6a5d4c3b2a10")]
    pub event_id: String,
    /// The event type.
    #[schema(example = "token.revoked")]
    pub event_type: String,
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status; null when there was no answer.
    pub status_code: Option<u16>,
    /// Why it failed (never the response body).
    pub error: Option<String>,
    /// `delivered`, `retrying` or `failed`.
    pub outcome: AttemptOutcome,
    /// For [`AttemptOutcome::Retrying`]: when to try again. Recorded on the
    /// delivery, not listed (`None` in [`WebhookStore::webhook_attempts`]).
    #[serde(skip)]
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl WebhookAttempt {
    /// The next attempt at `delivery`, made at `at`, that ended with `outcome`.
    pub fn new(
        delivery: &ClaimedDelivery,
        at: OffsetDateTime,
        status_code: Option<u16>,
        error: Option<String>,
        outcome: AttemptOutcome,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt: delivery.attempts + 1,
            at,
            status_code,
            error,
            outcome,
            next_attempt_at,
        }
    }
}

/// Deliveries by status, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryCounts {
    /// Waiting for their first or a later attempt.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Given up after the last retry.
    pub failed: u64,
}

/// The webhooks' storage: endpoints, the outbox's deliveries, attempts and
/// the expiry sweep. Both built-in stores implement it.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Registers an endpoint, and records `audit` in the same transaction.
    async fn insert_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Every endpoint, oldest first.
    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// One endpoint.
    async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Removes an endpoint and its pending deliveries, and records `audit`
    /// in the same transaction; `false` (and nothing recorded) if there was
    /// none.
    async fn delete_webhook_endpoint(
        &self,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Replaces an endpoint's secret, and records `audit` in the same
    /// transaction; the old one keeps signing until `previous_until`.
    /// `false` (and nothing recorded) if there is no such endpoint.
    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &WebhookSecret,
        previous_until: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Claims up to `limit` due deliveries until `lease_until`: pending,
    /// due by `now`, not claimed by a live lease, and the oldest pending one
    /// of their token for their endpoint (so a token's events keep their
    /// order). Two instances never claim the same delivery at once.
    async fn claim_webhook_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records attempts at claimed deliveries and releases their claims, in
    /// one transaction.
    async fn record_webhook_attempts(
        &self,
        attempts: &[(ClaimedDelivery, WebhookAttempt)],
    ) -> Result<(), StoreError>;
    /// Records one attempt (see [`WebhookStore::record_webhook_attempts`]).
    async fn record_webhook_attempt(
        &self,
        delivery: &ClaimedDelivery,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        self.record_webhook_attempts(&[(delivery.clone(), attempt.clone())])
            .await
    }
    /// An endpoint's attempts, newest first, at most `limit`.
    async fn webhook_attempts(
        &self,
        endpoint_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError>;
    /// Deliveries by status.
    async fn webhook_delivery_counts(&self) -> Result<DeliveryCounts, StoreError>;
    /// Writes `token.expiring` (7 days and 1 day left) and `token.expired`
    /// events that are due at `now` and not yet written, each once per token
    /// and threshold; returns how many.
    async fn sweep_token_expiry(&self, now: OffsetDateTime) -> Result<u32, StoreError>;
    /// Deletes attempts, finished deliveries, their events and expiry
    /// notices older than `before`, a batch of each; returns how many rows.
    async fn prune_webhooks(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}
