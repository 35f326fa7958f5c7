//! The default [`TokenStore`]: one SQLite file, WAL mode, via sqlx.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Account, Change, Credential, NewToken, Plan, Rotated, Rotation, StoreError, TokenRecord,
    TokenStore, truncate_to_second,
};
use crate::token::TokenId;

/// The embedded SQLite migrations (`migrations/`).
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const TOKEN_COLUMNS: &str =
    "id, account_id, name, hint, created_at, last_used_at, expires_at, revoked_at, revoked_reason";

/// A [`TokenStore`] on one SQLite database file.
///
/// Connections use WAL journaling (readers never block the writer), foreign
/// keys, a 5 s busy timeout and `synchronous = FULL`, so a committed token
/// survives a power cut, not only a crash: a `201` means the row is on disk.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://tokengate.db`
    /// or `sqlite::memory:`. Does not run migrations: call [`TokenStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // An in-memory database exists per connection: keep exactly one, forever.
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (its connections should have foreign keys on).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`: taking the write lock
    /// up front means a read-then-write transaction waits for the busy timeout
    /// instead of failing when another connection commits first.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

fn ts(t: OffsetDateTime) -> String {
    // Callers validate times (manage.rs); formatting a UTC time in years
    // 0..=9999 as RFC 3339 cannot fail.
    truncate_to_second(t)
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| String::from("9999-12-31T23:59:59Z"))
}

fn parse_ts(text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp {text:?}")))
}

fn parse_opt_ts(text: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    text.as_deref().map(parse_ts).transpose()
}

fn db<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::unavailable(e)
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    let id: String = row.try_get("id").map_err(db)?;
    Ok(TokenRecord {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))?,
        account_id: row.try_get("account_id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        hint: row.try_get("hint").map_err(db)?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at").map_err(db)?)?,
        last_used_at: parse_opt_ts(row.try_get("last_used_at").map_err(db)?)?,
        expires_at: parse_opt_ts(row.try_get("expires_at").map_err(db)?)?,
        revoked_at: parse_opt_ts(row.try_get("revoked_at").map_err(db)?)?,
        revoked_reason: row.try_get("revoked_reason").map_err(db)?,
    })
}

fn plan_from_row(row: &SqliteRow) -> Result<Plan, StoreError> {
    let requests_per_hour: i64 = row.try_get("requests_per_hour").map_err(db)?;
    Ok(Plan {
        name: row.try_get("name").map_err(db)?,
        api_access: row.try_get("api_access").map_err(db)?,
        requests_per_hour: u32::try_from(requests_per_hour)
            .map_err(|_| StoreError::Corrupt("requests_per_hour out of range".into()))?,
    })
}

fn account_from_row(row: &SqliteRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get("id").map_err(db)?,
        plan: row.try_get("plan").map_err(db)?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at").map_err(db)?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at").map_err(db)?)?,
    })
}

async fn record_change(
    tx: &mut Transaction<'_, Sqlite>,
    change: &Change,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO changes (kind, subject, at) VALUES (?, ?, ?)")
        .bind(change.kind())
        .bind(change.subject())
        .bind(ts(now))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn fetch_token(
    tx: &mut Transaction<'_, Sqlite>,
    id: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    row.as_ref().map(token_from_row).transpose()
}

async fn insert_token_row(
    tx: &mut Transaction<'_, Sqlite>,
    token: &NewToken,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, account_id, name, secret_hash, hint, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(token.id.to_string())
    .bind(&token.account_id)
    .bind(&token.name)
    .bind(&token.secret_hash)
    .bind(&token.hint)
    .bind(ts(token.created_at))
    .bind(token.expires_at.map(ts))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        SQLITE_MIGRATOR.run(&self.pool).await.map_err(db)
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
            sqlx::query("SELECT name, api_access, requests_per_hour FROM plans WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.as_ref().map(plan_from_row).transpose()
    }

    async fn upsert_plan(&self, plan: &Plan, now: OffsetDateTime) -> Result<Plan, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO plans (name, api_access, requests_per_hour) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET api_access = excluded.api_access, \
             requests_per_hour = excluded.requests_per_hour",
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
        let plan_exists = sqlx::query("SELECT 1 FROM plans WHERE name = ?")
            .bind(plan)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !plan_exists {
            return Err(StoreError::UnknownPlan);
        }
        let previous: Option<String> = sqlx::query_scalar("SELECT plan FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let now_text = ts(now);
        let changed = previous.as_deref().is_some_and(|old| old != plan);
        match previous.as_deref() {
            None => {
                sqlx::query(
                    "INSERT INTO accounts (id, plan, created_at, updated_at) VALUES (?, ?, ?, ?)",
                )
                .bind(id)
                .bind(plan)
                .bind(&now_text)
                .bind(&now_text)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            Some(old) if old != plan => {
                sqlx::query("UPDATE accounts SET plan = ?, updated_at = ? WHERE id = ?")
                    .bind(plan)
                    .bind(&now_text)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                record_change(&mut tx, &Change::Account(id.to_owned()), now).await?;
            }
            Some(_) => {}
        }
        let row = sqlx::query("SELECT id, plan, created_at, updated_at FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let account = account_from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok((account, changed))
    }

    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT id, plan, created_at, updated_at FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn insert_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        let account_exists = sqlx::query("SELECT 1 FROM accounts WHERE id = ?")
            .bind(&token.account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !account_exists {
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
        let account_exists = sqlx::query("SELECT 1 FROM accounts WHERE id = ?")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !account_exists {
            return Err(StoreError::UnknownAccount);
        }
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE account_id = ? ORDER BY created_at, id"
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
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"
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
            "UPDATE api_tokens SET revoked_at = ?, revoked_reason = ? \
             WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(ts(now))
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
                "UPDATE api_tokens SET revoked_at = ?, revoked_reason = 'rotated' WHERE id = ?",
            )
            .bind(ts(rotation.now))
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
                "UPDATE api_tokens SET expires_at = ?, revoked_reason = 'rotated' WHERE id = ?",
            )
            .bind(ts(stops_at))
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
             WHERE t.id = ?",
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
            expires_at: parse_opt_ts(row.try_get("expires_at").map_err(db)?)?,
            revoked_at: parse_opt_ts(row.try_get("revoked_at").map_err(db)?)?,
            plan: plan_from_row(&row)?,
        }))
    }

    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = ?1 \
                 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
            )
            .bind(ts(*at))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Change)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
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
        sqlx::query("DELETE FROM changes WHERE at < ?")
            .bind(ts(before))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db)
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db)
    }
}
