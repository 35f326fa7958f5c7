//! [`WebhookStore`] over any driver: endpoints, claiming and recording
//! deliveries, and the expiry sweep.
//!
//! Claiming is one `UPDATE ... WHERE id IN (SELECT ...) RETURNING` whose
//! outer `WHERE` repeats the claimable condition: on PostgreSQL, an instance
//! that raced another to the same row re-checks it after the other's commit
//! and skips it, so a delivery is claimed by one instance at a time; SQLite
//! has one writer. A claim is a lease (`claimed_until`): an instance killed
//! mid-delivery leaves it claimable again when the lease ends.

use async_trait::async_trait;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::SqlStore;
use super::columns::{all, first, placeholders};
use super::outbox::{enqueue, has_subscribers, order_key, token_view};
use super::write::SqlTx;
use crate::store::driver::{Conn, Driver, Row, Value};
use crate::store::webhooks::{
    AttemptOutcome, ClaimedDelivery, DeliveryCounts, WebhookAttempt, WebhookEndpoint,
    WebhookSecret, WebhookStore,
};
use crate::store::{AuditEvent, StoreError, WriteTx};
use crate::token::TokenId;

const ENDPOINT_COLUMNS: &str = "w.id AS endpoint_id, w.url, w.events, w.secret, w.previous_secret, w.previous_secret_until, \
     w.created_at";

fn endpoint_from_row(row: &Row) -> Result<WebhookEndpoint, StoreError> {
    let previous = match (
        row.opt_text("previous_secret")?,
        row.opt_time("previous_secret_until")?,
    ) {
        (Some(secret), Some(until)) => Some((WebhookSecret::new(secret), until)),
        _ => None,
    };
    Ok(WebhookEndpoint {
        id: row.text("endpoint_id")?,
        url: row.text("url")?,
        events: row
            .opt_text("events")?
            .map(|events| events.split(' ').map(str::to_owned).collect()),
        secret: WebhookSecret::new(row.text("secret")?),
        previous_secret: previous,
        created_at: row.time("created_at")?,
    })
}

/// An expiry reminder: its key in `webhook_notices`, its event type,
/// and the range of `expires_at` (relative to now) it covers.
struct Threshold {
    key: &'static str,
    event_type: &'static str,
    from: Duration,
    to: Duration,
}

/// The reminders, each sent once per token: 7 days left, 1 day left, and
/// expired (within the last 7 days, so a server that was down still sends
/// it, and a first sweep does not report every token that ever expired).
const THRESHOLDS: [Threshold; 3] = [
    Threshold {
        key: "7d",
        event_type: "token.expiring",
        from: Duration::days(1),
        to: Duration::days(7),
    },
    Threshold {
        key: "1d",
        event_type: "token.expiring",
        from: Duration::ZERO,
        to: Duration::days(1),
    },
    Threshold {
        key: "expired",
        event_type: "token.expired",
        from: Duration::days(-7),
        to: Duration::ZERO,
    },
];

/// Tokens swept per threshold per call (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;
/// Rows of each table pruned per call.
const PRUNE_BATCH: i64 = 1000;

#[async_trait]
impl<D: Driver> WebhookStore for SqlStore<D> {
    async fn insert_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = SqlTx(self.driver.begin_write().await?);
        tx.0.execute(
            "INSERT INTO webhook_endpoints (id, url, events, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                endpoint.id.as_str().into(),
                endpoint.url.as_str().into(),
                endpoint
                    .events
                    .as_ref()
                    .map(|events| events.join(" "))
                    .into(),
                endpoint.secret.expose().into(),
                endpoint.created_at.into(),
            ],
        )
        .await?;
        tx.record_audit(audit).await?;
        Box::new(tx).commit().await
    }

    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w ORDER BY w.created_at, w.id"
        );
        all(self.driver.fetch(&sql, vec![]).await?, |row| {
            endpoint_from_row(row)
        })
    }

    async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.id = $1");
        first(self.driver.fetch(&sql, vec![id.into()]).await?, |row| {
            endpoint_from_row(row)
        })
    }

    async fn delete_webhook_endpoint(
        &self,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = SqlTx(self.driver.begin_write().await?);
        let deleted =
            tx.0.execute(
                "DELETE FROM webhook_endpoints WHERE id = $1",
                vec![id.into()],
            )
            .await?;
        if deleted == 0 {
            // Nothing changed: nothing to record (the transaction rolls back).
            return Ok(false);
        }
        // Deliveries of a deleted endpoint are never claimed (the claim joins
        // the endpoint); these only tidy up.
        for table in ["webhook_deliveries", "webhook_attempts"] {
            let sql = format!("DELETE FROM {table} WHERE endpoint_id = $1");
            tx.0.execute(&sql, vec![id.into()]).await?;
        }
        tx.record_audit(audit).await?;
        Box::new(tx).commit().await?;
        Ok(true)
    }

    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &WebhookSecret,
        previous_until: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = SqlTx(self.driver.begin_write().await?);
        let updated =
            tx.0.execute(
                "UPDATE webhook_endpoints SET previous_secret = secret, \
                 previous_secret_until = $1, secret = $2 WHERE id = $3",
                vec![previous_until.into(), secret.expose().into(), id.into()],
            )
            .await?;
        if updated == 0 {
            return Ok(false);
        }
        tx.record_audit(audit).await?;
        Box::new(tx).commit().await?;
        Ok(true)
    }

    async fn claim_webhook_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claimable = "status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $2)";
        let sql = format!(
            "UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN (\
             SELECT d.id FROM webhook_deliveries d \
             JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             WHERE d.{claimable} AND d.next_attempt_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
             WHERE e.endpoint_id = d.endpoint_id AND e.order_key = d.order_key \
             AND e.status = 'pending' AND e.id < d.id) \
             ORDER BY d.id LIMIT $3) AND {claimable} RETURNING id"
        );
        let rows = self
            .driver
            .fetch(
                &sql,
                vec![lease_until.into(), now.into(), i64::from(limit).into()],
            )
            .await?;
        let ids: Vec<i64> = all(rows, |row| row.int("id"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT d.id AS delivery_id, v.id AS event_id, v.type AS event_type, v.payload, \
             d.attempts, {ENDPOINT_COLUMNS} \
             FROM webhook_deliveries d JOIN webhook_events v ON v.seq = d.event_seq \
             JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             WHERE d.id IN ({}) ORDER BY d.id",
            placeholders(1, ids.len())
        );
        let args = ids.iter().map(|&id| Value::Int(id)).collect();
        all(self.driver.fetch(&sql, args).await?, |row| {
            Ok(ClaimedDelivery {
                delivery_id: row.int("delivery_id")?,
                event_id: row.text("event_id")?,
                event_type: row.text("event_type")?,
                payload: row.text("payload")?,
                attempts: row.u32("attempts")?,
                endpoint: endpoint_from_row(row)?,
            })
        })
    }

    async fn record_webhook_attempts(
        &self,
        attempts: &[(ClaimedDelivery, WebhookAttempt)],
    ) -> Result<(), StoreError> {
        // One transaction for the batch: one commit (one fsync on SQLite).
        let mut tx = self.driver.begin_write().await?;
        for (delivery, attempt) in attempts {
            tx.execute(
                "INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, event_type, \
                 attempt, at, status_code, error, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    delivery.delivery_id.into(),
                    delivery.endpoint.id.as_str().into(),
                    delivery.event_id.as_str().into(),
                    delivery.event_type.as_str().into(),
                    i64::from(attempt.attempt).into(),
                    attempt.at.into(),
                    attempt.status_code.map(i64::from).into(),
                    attempt.error.clone().into(),
                    attempt.outcome.text().into(),
                ],
            )
            .await?;
            tx.execute(
                "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                 next_attempt_at = $2, claimed_until = NULL WHERE id = $3",
                vec![
                    attempt.outcome.status().into(),
                    attempt.next_attempt_at.unwrap_or(attempt.at).into(),
                    delivery.delivery_id.into(),
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn webhook_attempts(
        &self,
        endpoint_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT event_id, event_type, attempt, at, status_code, error, outcome \
                 FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
                vec![endpoint_id.into(), i64::from(limit).into()],
            )
            .await?;
        all(rows, |row| {
            Ok(WebhookAttempt {
                event_id: row.text("event_id")?,
                event_type: row.text("event_type")?,
                attempt: row.u32("attempt")?,
                at: row.time("at")?,
                status_code: row
                    .opt_u32("status_code")?
                    .and_then(|code| u16::try_from(code).ok()),
                error: row.opt_text("error")?,
                outcome: AttemptOutcome::parse(&row.text("outcome")?)?,
                next_attempt_at: None,
            })
        })
    }

    async fn webhook_delivery_counts(&self) -> Result<DeliveryCounts, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status",
                vec![],
            )
            .await?;
        let mut counts = DeliveryCounts::default();
        for row in rows {
            let n = u64::try_from(row.int("n")?).unwrap_or_default();
            match row.text("status")?.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn sweep_token_expiry(&self, now: OffsetDateTime) -> Result<u32, StoreError> {
        // The write transaction serializes sweeps of several instances (on
        // PostgreSQL, its lock), and the notice's key makes each one once.
        let mut tx = self.driver.begin_write().await?;
        let mut sent = 0;
        for threshold in &THRESHOLDS {
            if !has_subscribers(tx.as_mut(), threshold.event_type).await? {
                continue;
            }
            sent += sweep_threshold(tx.as_mut(), threshold, now).await?;
        }
        tx.commit().await?;
        Ok(sent)
    }

    async fn prune_webhooks(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        // Pending deliveries are never pruned, nor an event one still needs.
        let statements = [
            "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts \
             WHERE at < $1 ORDER BY id LIMIT $2)",
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE status <> 'pending' AND next_attempt_at < $1 ORDER BY id LIMIT $2)",
            "DELETE FROM webhook_events WHERE seq IN (SELECT e.seq FROM webhook_events e \
             WHERE e.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.event_seq = e.seq) ORDER BY e.seq LIMIT $2)",
            "DELETE FROM webhook_notices WHERE token_id IN (SELECT token_id \
             FROM webhook_notices WHERE at < $1 ORDER BY token_id LIMIT $2) AND at < $1",
        ];
        let mut pruned = 0;
        for sql in statements {
            pruned += self
                .driver
                .execute(sql, vec![before.into(), PRUNE_BATCH.into()])
                .await?;
        }
        Ok(pruned)
    }
}

async fn sweep_threshold(
    tx: &mut dyn Conn,
    threshold: &Threshold,
    now: OffsetDateTime,
) -> Result<u32, StoreError> {
    // A token rotated with a grace period stops then, which is not an
    // expiry its owner needs to hear about: `token.rotated` said so.
    let rows = tx
        .fetch(
            "SELECT t.id FROM api_tokens t WHERE t.revoked_at IS NULL \
             AND t.expires_at > $1 AND t.expires_at <= $2 \
             AND (t.revoked_reason IS NULL OR t.revoked_reason <> 'rotated') \
             AND NOT EXISTS (SELECT 1 FROM webhook_notices n \
             WHERE n.token_id = t.id AND n.threshold = $3) \
             ORDER BY t.expires_at LIMIT $4",
            vec![
                (now + threshold.from).into(),
                (now + threshold.to).into(),
                threshold.key.into(),
                SWEEP_BATCH.into(),
            ],
        )
        .await?;
    let ids: Vec<TokenId> = all(rows, |row| row.token_id("id"))?;
    let mut sent = 0;
    for id in ids {
        let inserted = tx
            .execute(
                "INSERT INTO webhook_notices (token_id, threshold, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (token_id, threshold) DO NOTHING",
                vec![(&id).into(), threshold.key.into(), now.into()],
            )
            .await?;
        if inserted == 0 {
            continue;
        }
        let Some(token) = token_view(tx, &id).await? else {
            continue;
        };
        let data = json!({
            "token": token,
            "account_id": token.account_id,
            "actor": "system",
            "threshold": threshold.key,
            "expires_at": token.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        });
        let key = order_key(Some(&id), Some(&token.account_id));
        enqueue(tx, threshold.event_type, &key, data, now).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Implements [`WebhookStore`] for a backend type by delegating to its
/// `sql: SqlStore<_>` field.
macro_rules! delegate_webhooks {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::WebhookStore for $store {
            async fn insert_webhook_endpoint(
                &self,
                endpoint: &$crate::store::WebhookEndpoint,
                audit: &$crate::store::AuditEvent,
            ) -> Result<(), $crate::store::StoreError> {
                self.sql.insert_webhook_endpoint(endpoint, audit).await
            }
            async fn webhook_endpoints(
                &self,
            ) -> Result<Vec<$crate::store::WebhookEndpoint>, $crate::store::StoreError> {
                self.sql.webhook_endpoints().await
            }
            async fn webhook_endpoint(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::WebhookEndpoint>, $crate::store::StoreError> {
                self.sql.webhook_endpoint(id).await
            }
            async fn delete_webhook_endpoint(
                &self,
                id: &str,
                audit: &$crate::store::AuditEvent,
            ) -> Result<bool, $crate::store::StoreError> {
                self.sql.delete_webhook_endpoint(id, audit).await
            }
            async fn rotate_webhook_secret(
                &self,
                id: &str,
                secret: &$crate::store::WebhookSecret,
                previous_until: time::OffsetDateTime,
                audit: &$crate::store::AuditEvent,
            ) -> Result<bool, $crate::store::StoreError> {
                self.sql
                    .rotate_webhook_secret(id, secret, previous_until, audit)
                    .await
            }
            async fn claim_webhook_deliveries(
                &self,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: u32,
            ) -> Result<Vec<$crate::store::ClaimedDelivery>, $crate::store::StoreError> {
                self.sql
                    .claim_webhook_deliveries(now, lease_until, limit)
                    .await
            }
            async fn record_webhook_attempts(
                &self,
                attempts: &[(
                    $crate::store::ClaimedDelivery,
                    $crate::store::WebhookAttempt,
                )],
            ) -> Result<(), $crate::store::StoreError> {
                self.sql.record_webhook_attempts(attempts).await
            }
            async fn webhook_attempts(
                &self,
                endpoint_id: &str,
                limit: u32,
            ) -> Result<Vec<$crate::store::WebhookAttempt>, $crate::store::StoreError> {
                self.sql.webhook_attempts(endpoint_id, limit).await
            }
            async fn webhook_delivery_counts(
                &self,
            ) -> Result<$crate::store::DeliveryCounts, $crate::store::StoreError> {
                self.sql.webhook_delivery_counts().await
            }
            async fn sweep_token_expiry(
                &self,
                now: time::OffsetDateTime,
            ) -> Result<u32, $crate::store::StoreError> {
                self.sql.sweep_token_expiry(now).await
            }
            async fn prune_webhooks(
                &self,
                before: time::OffsetDateTime,
            ) -> Result<u64, $crate::store::StoreError> {
                self.sql.prune_webhooks(before).await
            }
        }
    };
}
pub(crate) use delegate_webhooks;
