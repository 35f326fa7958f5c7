//! [`CredentialStore`] over any driver: the statements authentication runs
//! (the credential lookup, the change feed, batched last-use and usage
//! writes, the readiness ping).
//!
//! These statements run on every uncached request or in the background
//! flushes, so each is one indexed statement or one per batch. This module
//! must not hold a business rule (whether a credential is valid is the
//! gate's) nor dialect-specific SQL (that is the driver's).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::columns::{all, first, placeholders, plan_from_row, scopes_from_column};
use super::{LAST_USED_BATCH, SqlStore, USAGE_BATCH};
use crate::store::driver::{Driver, Value};
use crate::store::{Change, Credential, CredentialStore, FeedEntry, StoreError, UsageDelta};
use crate::token::TokenId;

#[async_trait]
impl<D: Driver> CredentialStore for SqlStore<D> {
    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT t.account_id, t.secret_hash, t.secret_tag, t.expires_at, t.revoked_at, \
                        t.scopes, p.name, p.api_access, p.requests_per_hour, \
                        p.account_requests_per_hour, p.max_tokens, t.window_id \
                 FROM api_tokens t \
                 JOIN accounts a ON a.id = t.account_id \
                 JOIN plans p ON p.name = a.plan \
                 WHERE t.id = $1",
                vec![id.into()],
            )
            .await?;
        first(rows, |row| {
            Ok(Credential {
                token_id: *id,
                account_id: row.text("account_id")?,
                secret_hash: row.text("secret_hash")?,
                secret_tag: row.opt_u32("secret_tag")?,
                expires_at: row.opt_time("expires_at")?,
                revoked_at: row.opt_time("revoked_at")?,
                scopes: scopes_from_column(&row.text("scopes")?),
                plan: plan_from_row(row)?,
                window_id: row
                    .opt_text("window_id")?
                    .map(|id| {
                        id.parse()
                            .map_err(|_| StoreError::Corrupt(format!("bad window id {id:?}")))
                    })
                    .transpose()?,
            })
        })
    }

    async fn live_tokens(&self) -> Result<Vec<(TokenId, Option<u32>)>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT id, secret_tag FROM api_tokens WHERE revoked_at IS NULL",
                vec![],
            )
            .await?;
        // An unreadable id cannot authenticate anyway.
        Ok(rows
            .iter()
            .filter_map(|row| Some((row.token_id("id").ok()?, row.opt_u32("secret_tag").ok()?)))
            .collect())
    }

    async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<FeedEntry>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT c.seq, c.kind, c.subject, t.secret_tag FROM changes c \
                 LEFT JOIN api_tokens t ON c.kind = 'created' AND t.id = c.subject \
                 WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
                vec![after.into(), i64::from(limit).into()],
            )
            .await?;
        all(rows, |row| {
            Ok(FeedEntry {
                seq: row.int("seq")?,
                change: Change::from_row(&row.text("kind")?, row.text("subject")?),
                secret_tag: row.opt_u32("secret_tag")?,
            })
        })
    }

    async fn backfill_secret_tag(&self, id: &TokenId, tag: u32) -> Result<(), StoreError> {
        self.driver
            .execute(
                "UPDATE api_tokens SET secret_tag = $1 WHERE id = $2 AND secret_tag IS NULL",
                vec![i64::from(tag).into(), id.into()],
            )
            .await
            .map(drop)
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT COALESCE(MAX(seq), 0) AS latest FROM changes",
                vec![],
            )
            .await?;
        first(rows, |row| row.int("latest")).map(Option::unwrap_or_default)
    }

    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        // One statement per batch; a time never moves backwards.
        for batch in uses.chunks(LAST_USED_BATCH) {
            let placeholders: Vec<String> = (0..batch.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "UPDATE api_tokens SET last_used_at = v.column2 \
                 FROM (VALUES {}) AS v \
                 WHERE api_tokens.id = v.column1 \
                 AND (api_tokens.last_used_at IS NULL OR api_tokens.last_used_at < v.column2)",
                placeholders.join(", ")
            );
            let args = batch
                .iter()
                .flat_map(|(id, at)| [Value::from(id), Value::from(*at)])
                .collect();
            self.driver.execute(&sql, args).await?;
        }
        Ok(())
    }

    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<(), StoreError> {
        // Instances add their counts: the stored rows are totals. One
        // transaction with the webhook notice below: a failed flush is
        // retried whole, so it neither counts twice nor loses the notice.
        let mut tx = self.driver.begin_write().await?;
        for batch in deltas.chunks(USAGE_BATCH) {
            let rows: Vec<String> = (0..batch.len())
                .map(|i| format!("({})", placeholders(4 * i + 1, 4)))
                .collect();
            let sql = format!(
                "INSERT INTO token_usage (token_id, hour, admitted, limited) VALUES {} \
                 ON CONFLICT (token_id, hour) DO UPDATE SET \
                 admitted = token_usage.admitted + excluded.admitted, \
                 limited = token_usage.limited + excluded.limited",
                rows.join(", ")
            );
            let args = batch
                .iter()
                .flat_map(|delta| {
                    [
                        Value::from(&delta.token_id),
                        Value::from(delta.hour),
                        Value::from(i64::try_from(delta.admitted).unwrap_or(i64::MAX)),
                        Value::from(i64::try_from(delta.limited).unwrap_or(i64::MAX)),
                    ]
                })
                .collect();
            tx.execute(&sql, args).await?;
        }
        // The first refused request of an hour, for webhooks.
        let now = time::OffsetDateTime::now_utc();
        super::outbox::enqueue_limit_reached(tx.as_mut(), deltas, now).await?;
        tx.commit().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.driver.check_database()?;
        // A real table: `SELECT 1` would succeed on a destroyed database file.
        self.driver
            .fetch("SELECT 1 FROM plans LIMIT 1", vec![])
            .await
            .map(drop)
    }
}
