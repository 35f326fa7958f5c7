//! [`AdminStore`] over any driver: the administration's reads (plans,
//! accounts, tokens, the audit log, usage, settings), pruning, and the
//! start of a write transaction.
//!
//! This module owns those statements; it must not hold a business rule
//! (what an operator may do is `manage`'s) nor dialect-specific SQL (how a
//! transaction starts is the driver's). Writes go through [`SqlTx`].

use async_trait::async_trait;
use time::OffsetDateTime;

use super::columns::{
    ACCOUNT_COLUMNS, AUDIT_COLUMNS, PLAN_COLUMNS, TOKEN_COLUMNS, account_from_row, all,
    audit_from_row, first, placeholders, plan_from_row, token_from_row,
};
use super::write::SqlTx;
use super::{SqlStore, USAGE_BATCH};
use crate::store::driver::{Driver, Value};
use crate::store::{
    Account, AdminStore, AuditEvent, AuditQuery, Plan, StoreError, TokenRecord, UsageHour, WriteTx,
};
use crate::token::TokenId;

#[async_trait]
impl<D: Driver> AdminStore for SqlStore<D> {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(SqlTx(self.driver.begin_write().await?)))
    }

    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM plans ORDER BY name");
        all(self.driver.fetch(&sql, vec![]).await?, plan_from_row)
    }

    async fn get_plan(&self, name: &str) -> Result<Option<Plan>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE name = $1");
        first(
            self.driver.fetch(&sql, vec![name.into()]).await?,
            plan_from_row,
        )
    }

    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        first(
            self.driver.fetch(&sql, vec![id.into()]).await?,
            account_from_row,
        )
    }

    async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE account_id = $1 ORDER BY created_at, id"
        );
        all(
            self.driver.fetch(&sql, vec![account_id.into()]).await?,
            token_from_row,
        )
    }

    async fn get_token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        first(
            self.driver.fetch(&sql, vec![id.into()]).await?,
            token_from_row,
        )
    }

    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.driver
            .execute("DELETE FROM changes WHERE at < $1", vec![before.into()])
            .await
    }

    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut conditions = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let mut bind = |condition: &str, value: Value| {
            args.push(value);
            conditions.push(format!("{condition} ${}", args.len()));
        };
        if let Some(account) = &query.account_id {
            bind("account_id =", account.as_str().into());
        }
        if let Some(token) = &query.token_id {
            bind("token_id =", token.into());
        }
        if let Some(action) = &query.action {
            bind("action =", action.as_str().into());
        }
        if let Some(before) = query.before {
            bind("id <", before.into());
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        args.push(i64::from(query.limit).into());
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events {filter} ORDER BY id DESC LIMIT ${}",
            args.len()
        );
        all(self.driver.fetch(&sql, args).await?, audit_from_row)
    }

    async fn prune_audit(&self, before: OffsetDateTime, max: u32) -> Result<u64, StoreError> {
        self.driver
            .execute(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2)",
                vec![before.into(), i64::from(max).into()],
            )
            .await
    }

    async fn usage_series(
        &self,
        token_id: &TokenId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageHour>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT hour, admitted, limited FROM token_usage \
                 WHERE token_id = $1 AND hour >= $2 ORDER BY hour",
                vec![token_id.into(), since.into()],
            )
            .await?;
        all(rows, |row| {
            Ok(UsageHour {
                hour: row.time("hour")?,
                admitted: u64::try_from(row.int("admitted")?).unwrap_or(0),
                limited: u64::try_from(row.int("limited")?).unwrap_or(0),
            })
        })
    }

    async fn usage_totals(
        &self,
        token_ids: &[TokenId],
        since: OffsetDateTime,
    ) -> Result<Vec<(TokenId, u64)>, StoreError> {
        let mut totals = Vec::new();
        for batch in token_ids.chunks(USAGE_BATCH) {
            let sql = format!(
                "SELECT token_id, SUM(admitted) AS admitted FROM token_usage \
                 WHERE hour >= $1 AND token_id IN ({}) GROUP BY token_id",
                placeholders(2, batch.len())
            );
            let mut args = vec![Value::from(since)];
            args.extend(batch.iter().map(Value::from));
            let rows = self.driver.fetch(&sql, args).await?;
            totals.extend(all(rows, |row| {
                Ok((
                    row.token_id("token_id")?,
                    u64::try_from(row.int("admitted")?).unwrap_or(0),
                ))
            })?);
        }
        Ok(totals)
    }

    async fn prune_usage(&self, before: OffsetDateTime, max: u32) -> Result<u64, StoreError> {
        self.driver
            .execute(
                "DELETE FROM token_usage WHERE (token_id, hour) IN \
                 (SELECT token_id, hour FROM token_usage WHERE hour < $1 LIMIT $2)",
                vec![before.into(), i64::from(max).into()],
            )
            .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT value FROM settings WHERE key = $1",
                vec![key.into()],
            )
            .await?;
        first(rows, |row| row.text("value"))
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.driver
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![key.into(), value.into()],
            )
            .await
            .map(drop)
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let written = self
            .driver
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                vec![key.into(), value.into()],
            )
            .await?;
        Ok(written == 1)
    }
}
