//! The delivery worker: claims due deliveries from the outbox, POSTs each
//! signed event, records the attempt, and schedules the retry; and the
//! expiry sweep. Both run on every instance; the store's claims and the
//! sweep's notices make each delivery and reminder happen once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use time::OffsetDateTime;
use tokengate::{AttemptOutcome, ClaimedDelivery, WebhookAttempt, WebhookStore};
use tokio::task::JoinSet;

use super::settings::WebhookSettings;
use super::sign::signature_header;
use super::target::{PublicOnlyResolver, literal_host_allowed};

/// Deliveries claimed at once (and sent concurrently).
const BATCH: u32 = 16;
/// Bytes of a receiver's answer read (for the error message); the rest is dropped.
const MAX_RESPONSE_BYTES: usize = 1024;
/// How long attempts, finished deliveries and their events are kept.
const RETENTION: time::Duration = time::Duration::days(30);
/// Characters of a receiver's answer kept in an attempt's error.
const MAX_ERROR_BODY_CHARS: usize = 200;

/// What this instance delivered, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct WebhookMetrics {
    pub(crate) delivered: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl WebhookMetrics {
    /// OpenMetrics lines (without `# EOF`).
    pub(crate) fn render(&self) -> String {
        let mut text = String::from(
            "# HELP tokengate_webhook_attempts Webhook delivery attempts by outcome: delivered (2xx), retrying (failed, will be retried), failed (the last retry failed).\n\
             # TYPE tokengate_webhook_attempts counter\n",
        );
        for (outcome, counter) in [
            ("delivered", &self.delivered),
            ("retrying", &self.retried),
            ("failed", &self.failed),
        ] {
            text.push_str(&format!(
                "tokengate_webhook_attempts_total{{outcome=\"{outcome}\"}} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        text
    }
}

/// The worker's parts.
pub(crate) struct Worker {
    pub(crate) store: Arc<dyn WebhookStore>,
    pub(crate) settings: WebhookSettings,
    pub(crate) metrics: Arc<WebhookMetrics>,
    client: reqwest::Client,
}

impl Worker {
    pub(crate) fn new(
        store: Arc<dyn WebhookStore>,
        settings: WebhookSettings,
        metrics: Arc<WebhookMetrics>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(PublicOnlyResolver {
                allow_private: settings.allow_private,
            }))
            .user_agent(concat!("tokengate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Self {
            store,
            settings,
            metrics,
            client,
        })
    }

    /// Delivers until the task is aborted. An abort mid-delivery leaves the
    /// claim to expire: the delivery is tried again (at least once).
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let delivered = match self.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read the outbox; trying again");
                    0
                }
            };
            if delivered < BATCH as usize {
                tokio::time::sleep(self.settings.poll).await;
            }
        }
    }

    /// Sweeps for expiring tokens, and prunes what is older than
    /// [`RETENTION`], until the task is aborted.
    pub(crate) async fn run_expiry_sweep(self: Arc<Self>) {
        loop {
            let now = OffsetDateTime::now_utc();
            match self.store.sweep_token_expiry(now).await {
                Ok(0) => {}
                Ok(events) => tracing::info!(events, "webhooks: expiry reminders written"),
                Err(e) => tracing::warn!(error = %e, "webhooks: expiry sweep failed; trying again"),
            }
            if let Err(e) = self.store.prune_webhooks(now - RETENTION).await {
                tracing::warn!(error = %e, "webhooks: pruning old deliveries failed; trying again");
            }
            tokio::time::sleep(self.settings.sweep).await;
        }
    }

    /// Claims and sends one batch; returns how many were claimed.
    async fn deliver_due(self: &Arc<Self>) -> Result<usize, tokengate::StoreError> {
        let now = OffsetDateTime::now_utc();
        // The lease outlives an attempt (at most the timeout, then the
        // record): a live instance never loses its claim, and a killed
        // one's claims are free again soon after.
        let lease = self.settings.timeout * 2 + Duration::from_secs(5);
        let claimed = self
            .store
            .claim_webhook_deliveries(now, now + lease, BATCH)
            .await?;
        let count = claimed.len();
        let mut attempts = JoinSet::new();
        for delivery in claimed {
            let worker = Arc::clone(self);
            attempts.spawn(async move { worker.attempt(delivery).await });
        }
        // Sent concurrently, recorded together: one transaction, where
        // writers racing for SQLite's one lock would wait on each other.
        let mut records = Vec::with_capacity(count);
        while let Some(result) = attempts.join_next().await {
            records.extend(result.ok());
        }
        if let Err(e) = self.store.record_webhook_attempts(&records).await {
            tracing::warn!(error = %e, "webhooks: cannot record attempts; they will be retried");
        }
        Ok(count)
    }

    /// Sends one delivery; answers what to record.
    async fn attempt(&self, delivery: ClaimedDelivery) -> (ClaimedDelivery, WebhookAttempt) {
        let at = OffsetDateTime::now_utc();
        let (status, error) = match self.send(&delivery, at).await {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (Some(status), Some(format!("HTTP {status}"))),
            Err(error) => (None, Some(error)),
        };
        let (outcome, next) = match &error {
            None => (AttemptOutcome::Delivered, None),
            Some(_) => match self.settings.retry.get(delivery.attempts as usize) {
                Some(wait) => (AttemptOutcome::Retrying, Some(at + *wait)),
                None => (AttemptOutcome::Failed, None),
            },
        };
        let counter = match outcome {
            AttemptOutcome::Delivered => &self.metrics.delivered,
            AttemptOutcome::Retrying => &self.metrics.retried,
            _ => &self.metrics.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if outcome == AttemptOutcome::Failed {
            tracing::warn!(endpoint = %delivery.endpoint.id, event = %delivery.event_id,
                attempts = delivery.attempts + 1, "webhooks: delivery failed after the last retry");
        }
        let record = WebhookAttempt::new(&delivery, at, status, error, outcome, next);
        (delivery, record)
    }

    /// One POST; answers the status, or why there was none.
    async fn send(&self, delivery: &ClaimedDelivery, at: OffsetDateTime) -> Result<u16, String> {
        let url = super::target::check_url(&delivery.endpoint.url, self.settings.allow_private)?;
        if !literal_host_allowed(&url, self.settings.allow_private) {
            return Err(
                "the URL's address is not public (WEBHOOK_ALLOW_PRIVATE_URLS is off)".into(),
            );
        }
        let timestamp = at.unix_timestamp();
        let body = delivery.payload.as_bytes();
        let signature =
            signature_header(&delivery.endpoint, &delivery.event_id, timestamp, body, at)
                .ok_or("the endpoint's secret is malformed; rotate it")?;
        let header = |value: &str| HeaderValue::from_str(value).map_err(|e| e.to_string());
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", header(&delivery.event_id)?)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", header(&signature)?)
            .body(delivery.payload.clone())
            .send()
            .await
            .map_err(|e| describe(&e.without_url()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let excerpt = read_excerpt(response).await;
            if !excerpt.is_empty() {
                return Err(format!("HTTP {status}: {excerpt}"));
            }
        }
        Ok(status)
    }
}

/// The start of an answer's body, for the attempt's error: at most
/// [`MAX_RESPONSE_BYTES`] read, control characters dropped, shortened.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(MAX_RESPONSE_BYTES);
    String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_BODY_CHARS)
        .collect()
}

/// A transport error with its causes, on one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
