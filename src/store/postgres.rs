//! The [`TokenStore`] for several instances: PostgreSQL, via sqlx.
//!
//! Same tables, same semantics as [`SqliteStore`](super::SqliteStore), with
//! its own migrations (`migrations/postgres/`). Every transaction that appends
//! to the change feed first takes one transaction-scoped advisory lock: the
//! feed's sequence numbers are then assigned in commit order, so a gate
//! polling "after my cursor" can never skip a row that commits late (plain
//! `BIGSERIAL` order is not commit order). Only mutations take it; reads and
//! authentication never do.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;

use super::{
    Account, Change, Credential, NewToken, Plan, Rotated, Rotation, StoreError, TokenRecord,
    TokenStore, truncate_to_second,
};
use crate::token::TokenId;

/// The embedded PostgreSQL migrations (`migrations/postgres/`).
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const TOKEN_COLUMNS: &str =
    "id, account_id, name, hint, created_at, last_used_at, expires_at, revoked_at, revoked_reason";
/// Key of the advisory lock that orders the change feed ("tokengat" in ASCII).
const FEED_LOCK: i64 = 0x746f_6b65_6e67_6174;

/// A [`TokenStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn db<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::unavailable(e)
}

fn at(t: OffsetDateTime) -> OffsetDateTime {
    truncate_to_second(t).unwrap_or(t)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host/db`). Does not run
    /// migrations: call [`TokenStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(db)?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction that may append to the change feed.
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FEED_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(tx)
    }
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
    let id: String = row.try_get("id").map_err(db)?;
    Ok(TokenRecord {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))?,
        account_id: row.try_get("account_id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        hint: row.try_get("hint").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        last_used_at: row.try_get("last_used_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        revoked_at: row.try_get("revoked_at").map_err(db)?,
        revoked_reason: row.try_get("revoked_reason").map_err(db)?,
    })
}

fn plan_from_row(row: &PgRow) -> Result<Plan, StoreError> {
    let requests_per_hour: i64 = row.try_get("requests_per_hour").map_err(db)?;
    Ok(Plan {
        name: row.try_get("name").map_err(db)?,
        api_access: row.try_get("api_access").map_err(db)?,
        requests_per_hour: u32::try_from(requests_per_hour)
            .map_err(|_| StoreError::Corrupt("requests_per_hour out of range".into()))?,
    })
}

fn account_from_row(row: &PgRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get("id").map_err(db)?,
        plan: row.try_get("plan").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

async fn record_change(
    tx: &mut Transaction<'_, Postgres>,
    change: &Change,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO changes (kind, subject, at) VALUES ($1, $2, $3)")
        .bind(change.kind())
        .bind(change.subject())
        .bind(at(now))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn fetch_token(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    row.as_ref().map(token_from_row).transpose()
}

async fn insert_token_row(
    tx: &mut Transaction<'_, Postgres>,
    token: &NewToken,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, account_id, name, secret_hash, hint, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.id.to_string())
    .bind(&token.account_id)
    .bind(&token.name)
    .bind(&token.secret_hash)
    .bind(&token.hint)
    .bind(at(token.created_at))
    .bind(token.expires_at.map(at))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

async fn account_exists(tx: &mut Transaction<'_, Postgres>, id: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .is_some())
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        POSTGRES_MIGRATOR.run(&self.pool).await.map_err(db)
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A real table: `SELECT 1` would succeed on a destroyed database file.
        sqlx::query("SELECT 1 FROM plans LIMIT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db)
    }

    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        let rows =
            sqlx::query("SELECT name, api_access, requests_per_hour FROM plans ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter().map(plan_from_row).collect()
    }

    async fn get_plan(&self, name: &str) -> Result<Option<Plan>, StoreError> {
        let row =
            sqlx::query("SELECT name, api_access, requests_per_hour FROM plans WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.as_ref().map(plan_from_row).transpose()
    }

    async fn upsert_plan(&self, plan: &Plan, now: OffsetDateTime) -> Result<Plan, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO plans (name, api_access, requests_per_hour) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET api_access = EXCLUDED.api_access, \
             requests_per_hour = EXCLUDED.requests_per_hour",
        )
        .bind(&plan.name)
        .bind(plan.api_access)
        .bind(i64::from(plan.requests_per_hour))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        record_change(&mut tx, &Change::Plan(plan.name.clone()), now).await?;
        tx.commit().await.map_err(db)?;
        Ok(plan.clone())
    }

    async fn upsert_account(
        &self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(Account, bool), StoreError> {
        let mut tx = self.write_tx().await?;
        let plan_exists = sqlx::query("SELECT 1 FROM plans WHERE name = $1")
            .bind(plan)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !plan_exists {
            return Err(StoreError::UnknownPlan);
        }
        let previous: Option<String> =
            sqlx::query_scalar("SELECT plan FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let changed = previous.as_deref().is_some_and(|old| old != plan);
        match previous.as_deref() {
            None => {
                sqlx::query(
                    "INSERT INTO accounts (id, plan, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                )
                .bind(id)
                .bind(plan)
                .bind(at(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            Some(_) if changed => {
                sqlx::query("UPDATE accounts SET plan = $1, updated_at = $2 WHERE id = $3")
                    .bind(plan)
                    .bind(at(now))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                record_change(&mut tx, &Change::Account(id.to_owned()), now).await?;
            }
            Some(_) => {}
        }
        let row =
            sqlx::query("SELECT id, plan, created_at, updated_at FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let account = account_from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok((account, changed))
    }

    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row =
            sqlx::query("SELECT id, plan, created_at, updated_at FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn insert_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        if !account_exists(&mut tx, &token.account_id).await? {
            return Err(StoreError::UnknownAccount);
        }
        insert_token_row(&mut tx, token).await?;
        record_change(&mut tx, &Change::Created(token.id), token.created_at).await?;
        let record = fetch_token(&mut tx, &token.id.to_string())
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted token vanished".into()))?;
        tx.commit().await.map_err(db)?;
        Ok(record)
    }

    async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if !account_exists(&mut tx, account_id).await? {
            return Err(StoreError::UnknownAccount);
        }
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(account_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn get_token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(
        &self,
        id: &TokenId,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let id_text = id.to_string();
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(at(now))
        .bind(reason)
        .bind(&id_text)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if updated > 0 {
            record_change(&mut tx, &Change::Token(*id), now).await?;
        }
        let record = fetch_token(&mut tx, &id_text).await?;
        tx.commit().await.map_err(db)?;
        Ok(record)
    }

    async fn rotate_token(&self, rotation: &Rotation) -> Result<Rotated, StoreError> {
        let old_id = rotation.old_id.to_string();
        let mut tx = self.write_tx().await?;
        let old = fetch_token(&mut tx, &old_id)
            .await?
            .ok_or(StoreError::UnknownToken)?;
        if old.revoked_at.is_some() {
            return Err(StoreError::TokenRevoked);
        }
        if old.expires_at.is_some_and(|at| at <= rotation.now) {
            return Err(StoreError::TokenExpired);
        }
        // Rotated with a grace period: its successor is the one to rotate
        // (and its expiry is now the grace deadline, not its own).
        if old.revoked_reason.is_some() {
            return Err(StoreError::TokenAlreadyRotated);
        }
        if rotation.old_stops_at <= rotation.now {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1, revoked_reason = 'rotated' WHERE id = $2",
            )
            .bind(at(rotation.now))
            .bind(&old_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        } else {
            let stops_at = match old.expires_at {
                Some(existing) if existing < rotation.old_stops_at => existing,
                _ => rotation.old_stops_at,
            };
            sqlx::query(
                "UPDATE api_tokens SET expires_at = $1, revoked_reason = 'rotated' WHERE id = $2",
            )
            .bind(at(stops_at))
            .bind(&old_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let new = NewToken {
            id: rotation.new_id,
            account_id: old.account_id.clone(),
            name: old.name.clone(),
            secret_hash: rotation.new_secret_hash.clone(),
            hint: rotation.new_hint.clone(),
            created_at: rotation.now,
            // The successor keeps the old token's expiry unless told otherwise.
            expires_at: rotation.new_expires_at.or(old.expires_at),
        };
        insert_token_row(&mut tx, &new).await?;
        record_change(&mut tx, &Change::Created(new.id), rotation.now).await?;
        record_change(&mut tx, &Change::Token(rotation.old_id), rotation.now).await?;
        let old = fetch_token(&mut tx, &old_id)
            .await?
            .ok_or(StoreError::UnknownToken)?;
        let new = fetch_token(&mut tx, &new.id.to_string())
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted token vanished".into()))?;
        tx.commit().await.map_err(db)?;
        Ok(Rotated { old, new })
    }

    async fn live_token_ids(&self) -> Result<Vec<TokenId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM api_tokens WHERE revoked_at IS NULL")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError> {
        let row = sqlx::query(
            "SELECT t.account_id, t.secret_hash, t.expires_at, t.revoked_at, \
                    p.name, p.api_access, p.requests_per_hour \
             FROM api_tokens t \
             JOIN accounts a ON a.id = t.account_id \
             JOIN plans p ON p.name = a.plan \
             WHERE t.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credential {
            token_id: *id,
            account_id: row.try_get("account_id").map_err(db)?,
            secret_hash: row.try_get("secret_hash").map_err(db)?,
            expires_at: row.try_get("expires_at").map_err(db)?,
            revoked_at: row.try_get("revoked_at").map_err(db)?,
            plan: plan_from_row(&row)?,
        }))
    }

    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = uses.iter().map(|(id, _)| id.to_string()).collect();
        let times: Vec<OffsetDateTime> = uses.iter().map(|(_, t)| at(*t)).collect();
        // One statement for the whole batch; never moves a time backwards.
        sqlx::query(
            "UPDATE api_tokens AS t SET last_used_at = u.at \
             FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at) \
             WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db)
    }

    async fn changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Change)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq").map_err(db)?;
            let kind: String = row.try_get("kind").map_err(db)?;
            let subject: String = row.try_get("subject").map_err(db)?;
            changes.push((seq, Change::from_row(&kind, subject)));
        }
        Ok(changes)
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(at(before))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db)
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db)
    }
}
