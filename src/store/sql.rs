//! The SQL of both built-in backends, written once.
//!
//! Every statement here runs unchanged on SQLite and PostgreSQL (numbered
//! `$n` parameters, `ON CONFLICT`, `UPDATE ... FROM (VALUES ...)`). What the
//! two databases do differently sits behind [`Driver`]: how values are
//! encoded (SQLite keeps timestamps as fixed-width RFC 3339 text,
//! PostgreSQL as `TIMESTAMPTZ`), how a write transaction starts (SQLite's
//! `BEGIN IMMEDIATE`, PostgreSQL's feed lock), and the migrations.
//! [`SqlStore`] implements the store traits on top of any driver; this
//! module must not contain a business rule (those are in `manage.rs`).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::driver::{Conn, Driver, Row, Value};
use super::{
    Account, AdminStore, AuditEvent, AuditQuery, Change, Credential, CredentialStore, FeedEntry,
    NewToken, Plan, StoreError, TokenRecord, TokenUpdate, UsageDelta, UsageHour, WriteTx,
};
use crate::token::TokenId;

/// The store traits, implemented once over any [`Driver`].
#[derive(Debug, Clone)]
pub(crate) struct SqlStore<D> {
    pub(crate) driver: D,
}

const TOKEN_COLUMNS: &str = "id, account_id, name, hint, created_at, last_used_at, expires_at, \
                             revoked_at, revoked_reason, replaced_by, scopes";
const PLAN_COLUMNS: &str =
    "name, api_access, requests_per_hour, account_requests_per_hour, max_tokens";
const ACCOUNT_COLUMNS: &str = "id, plan, created_at, updated_at";
/// Rows per `UPDATE ... FROM (VALUES ...)` of last-use times.
const LAST_USED_BATCH: usize = 400;
/// Rows per multi-row `INSERT` of usage counts.
const USAGE_BATCH: usize = 200;
const AUDIT_COLUMNS: &str =
    "id, at, action, actor, account_id, token_id, source_ip, request_id, details";

fn audit_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
    let details = row.text(8)?;
    Ok(AuditEvent {
        id: row.int(0)?,
        at: row.time(1)?,
        action: row.text(2)?,
        actor: row.text(3)?,
        account_id: row.opt_text(4)?,
        token_id: row
            .opt_text(5)?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))
            })
            .transpose()?,
        source_ip: row.opt_text(6)?,
        request_id: row.opt_text(7)?,
        details: serde_json::from_str(&details)
            .map_err(|_| StoreError::Corrupt("audit details are not JSON".into()))?,
    })
}

/// `$n, $n+1, ...` placeholders for `count` values starting at `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.token_id(0)?,
        account_id: row.text(1)?,
        name: row.text(2)?,
        hint: row.text(3)?,
        created_at: row.time(4)?,
        last_used_at: row.opt_time(5)?,
        expires_at: row.opt_time(6)?,
        revoked_at: row.opt_time(7)?,
        revoked_reason: row.opt_text(8)?,
        replaced_by: row
            .opt_text(9)?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))
            })
            .transpose()?,
        scopes: scopes_from_column(&row.text(10)?),
    })
}

/// Scopes are stored as names separated by single spaces (`*` for every scope).
fn scopes_column(scopes: &[String]) -> String {
    scopes.join(" ")
}

fn scopes_from_column(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a plan from columns `at..at + 5`.
fn plan_from_row(row: &Row, at: usize) -> Result<Plan, StoreError> {
    Ok(Plan {
        name: row.text(at)?,
        api_access: row.bool(at + 1)?,
        requests_per_hour: row.u32(at + 2)?,
        account_requests_per_hour: row.opt_u32(at + 3)?,
        max_tokens: row.opt_u32(at + 4)?,
    })
}

fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.text(0)?,
        plan: row.text(1)?,
        created_at: row.time(2)?,
        updated_at: row.time(3)?,
    })
}

fn first<T>(
    rows: Vec<Row>,
    read: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    rows.first().map(read).transpose()
}

fn all<T>(
    rows: Vec<Row>,
    read: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}

#[async_trait]
impl<D: Driver> CredentialStore for SqlStore<D> {
    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError> {
        let rows = self
            .driver
            .fetch(
                "SELECT t.account_id, t.secret_hash, t.secret_tag, t.expires_at, t.revoked_at, \
                        t.scopes, p.name, p.api_access, p.requests_per_hour, \
                        p.account_requests_per_hour, p.max_tokens \
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
                account_id: row.text(0)?,
                secret_hash: row.text(1)?,
                secret_tag: row.opt_u32(2)?,
                expires_at: row.opt_time(3)?,
                revoked_at: row.opt_time(4)?,
                scopes: scopes_from_column(&row.text(5)?),
                plan: plan_from_row(row, 6)?,
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
            .filter_map(|row| Some((row.token_id(0).ok()?, row.opt_u32(1).ok()?)))
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
                seq: row.int(0)?,
                change: Change::from_row(&row.text(1)?, row.text(2)?),
                secret_tag: row.opt_u32(3)?,
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
            .fetch("SELECT COALESCE(MAX(seq), 0) FROM changes", vec![])
            .await?;
        first(rows, |row| row.int(0)).map(Option::unwrap_or_default)
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
        // Instances add their counts: the stored rows are totals.
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
            self.driver.execute(&sql, args).await?;
        }
        Ok(())
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

#[async_trait]
impl<D: Driver> AdminStore for SqlStore<D> {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(SqlTx(self.driver.begin_write().await?)))
    }

    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM plans ORDER BY name");
        all(self.driver.fetch(&sql, vec![]).await?, |row| {
            plan_from_row(row, 0)
        })
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
                hour: row.time(0)?,
                admitted: row.int(1)?.max(0) as u64,
                limited: row.int(2)?.max(0) as u64,
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
                "SELECT token_id, SUM(admitted) FROM token_usage \
                 WHERE hour >= $1 AND token_id IN ({}) GROUP BY token_id",
                placeholders(2, batch.len())
            );
            let mut args = vec![Value::from(since)];
            args.extend(batch.iter().map(Value::from));
            let rows = self.driver.fetch(&sql, args).await?;
            totals.extend(all(rows, |row| {
                Ok((row.token_id(0)?, row.int(1)?.max(0) as u64))
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
        first(rows, |row| row.text(0))
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

/// A write transaction over any driver.
struct SqlTx(Box<dyn Conn>);

#[async_trait]
impl WriteTx for SqlTx {
    async fn plan(&mut self, name: &str) -> Result<Option<Plan>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE name = $1");
        first(self.0.fetch(&sql, vec![name.into()]).await?, |row| {
            plan_from_row(row, 0)
        })
    }

    async fn upsert_plan(&mut self, plan: &Plan) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO plans \
                 (name, api_access, requests_per_hour, account_requests_per_hour, max_tokens) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET api_access = excluded.api_access, \
                 requests_per_hour = excluded.requests_per_hour, \
                 account_requests_per_hour = excluded.account_requests_per_hour, \
                 max_tokens = excluded.max_tokens",
                vec![
                    plan.name.as_str().into(),
                    plan.api_access.into(),
                    i64::from(plan.requests_per_hour).into(),
                    plan.account_requests_per_hour.map(i64::from).into(),
                    plan.max_tokens.map(i64::from).into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn account(&mut self, id: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        first(self.0.fetch(&sql, vec![id.into()]).await?, account_from_row)
    }

    async fn insert_account(&mut self, account: &Account) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO accounts (id, plan, created_at, updated_at) VALUES ($1, $2, $3, $4)",
                vec![
                    account.id.as_str().into(),
                    account.plan.as_str().into(),
                    account.created_at.into(),
                    account.updated_at.into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn set_account_plan(
        &mut self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0
            .execute(
                "UPDATE accounts SET plan = $1, updated_at = $2 WHERE id = $3",
                vec![plan.into(), now.into(), id.into()],
            )
            .await
            .map(drop)
    }

    async fn token(&mut self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        first(self.0.fetch(&sql, vec![id.into()]).await?, token_from_row)
    }

    async fn insert_token(&mut self, token: &NewToken) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO api_tokens \
                 (id, account_id, name, secret_hash, secret_tag, hint, created_at, expires_at, \
                 scopes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    (&token.id).into(),
                    token.account_id.as_str().into(),
                    token.name.as_str().into(),
                    token.secret_hash.as_str().into(),
                    i64::from(token.secret_tag).into(),
                    token.hint.as_str().into(),
                    token.created_at.into(),
                    token.expires_at.into(),
                    scopes_column(&token.scopes).into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn count_live_tokens(
        &mut self,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let rows = self
            .0
            .fetch(
                "SELECT COUNT(*) FROM api_tokens WHERE account_id = $1 AND revoked_at IS NULL \
                 AND revoked_reason IS NULL AND (expires_at IS NULL OR expires_at > $2)",
                vec![account_id.into(), now.into()],
            )
            .await?;
        first(rows, |row| row.u32(0)).map(Option::unwrap_or_default)
    }

    async fn update_token(
        &mut self,
        id: &TokenId,
        update: TokenUpdate<'_>,
    ) -> Result<(), StoreError> {
        self.0
            .execute(
                "UPDATE api_tokens SET expires_at = $1, revoked_at = $2, revoked_reason = $3, \
                 replaced_by = $4 WHERE id = $5",
                vec![
                    update.expires_at.into(),
                    update.revoked_at.into(),
                    update.revoked_reason.into(),
                    update.replaced_by.as_ref().map(TokenId::to_string).into(),
                    id.into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn record_change(
        &mut self,
        change: &Change,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO changes (kind, subject, at) VALUES ($1, $2, $3)",
                vec![change.kind().into(), change.subject().into(), at.into()],
            )
            .await
            .map(drop)
    }

    async fn record_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO audit_events \
                 (at, action, actor, account_id, token_id, source_ip, request_id, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vec![
                    event.at.into(),
                    event.action.as_str().into(),
                    event.actor.as_str().into(),
                    event.account_id.clone().into(),
                    event.token_id.as_ref().map(TokenId::to_string).into(),
                    event.source_ip.clone().into(),
                    event.request_id.clone().into(),
                    event.details.to_string().into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.0.commit().await
    }
}
