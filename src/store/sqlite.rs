//! The default [`TokenStore`]: one SQLite file, WAL mode, via sqlx.
//!
//! Only what is particular to SQLite lives here: connection options, value
//! encoding (timestamps are fixed-width RFC 3339 text with milliseconds,
//! `2026-11-26T23:44:59.000Z`, so they sort and compare as text), and
//! `BEGIN IMMEDIATE` for write transactions. The statements are in `sql.rs`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, Column, Row as _, Sqlite, Transaction, TypeInfo, ValueRef};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use super::driver::{Conn, Driver, Row, Value};
use super::sql::SqlStore;
use super::{StoreError, TokenStore};

/// The embedded SQLite migrations (`migrations/`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `2026-11-26T23:44:59.000Z`: 24 characters, always.
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A [`TokenStore`] on one SQLite database file.
///
/// Connections use WAL journaling (readers never block the writer), foreign
/// keys, a 5 s busy timeout and `synchronous = FULL`, so a committed token
/// survives a power cut, not only a crash: a `201` means the row is on disk.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    sql: SqlStore<SqliteDriver>,
}

#[derive(Debug, Clone)]
pub(crate) struct SqliteDriver {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://tokengate.db`
    /// or `sqlite::memory:`. Does not run migrations: call [`TokenStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, true).await
    }

    /// Opens the database at `url` only if it exists already (for tools that
    /// must not create a stray empty database).
    pub async fn connect_existing(url: &str) -> Result<Self, StoreError> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::unavailable)?
            .create_if_missing(create)
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
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (its connections should have foreign keys on).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            sql: SqlStore {
                driver: SqliteDriver { pool },
            },
        }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.sql.driver.pool
    }
}

crate::store::delegate::delegate_store!(SqliteStore);

#[async_trait]
impl TokenStore for SqliteStore {
    async fn migrate(&self) -> Result<usize, StoreError> {
        crate::store::delegate::run_migrations(&MIGRATOR, self.pool()).await
    }

    async fn close(&self) {
        self.pool().close().await;
    }
}

fn bind(args: Vec<Value>) -> Result<SqliteArguments<'static>, StoreError> {
    let mut bound = SqliteArguments::default();
    for value in args {
        let added = match value {
            Value::Null | Value::NullTime | Value::NullInt => bound.add(None::<String>),
            Value::Bool(b) => bound.add(b),
            Value::Int(n) => bound.add(n),
            Value::Text(text) => bound.add(text),
            Value::Time(t) => bound.add(encode_time(t)?),
        };
        added.map_err(|e| StoreError::Corrupt(format!("cannot bind a value: {e}")))?;
    }
    Ok(bound)
}

fn encode_time(t: OffsetDateTime) -> Result<String, StoreError> {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .map_err(|e| StoreError::Corrupt(format!("cannot store the time {t}: {e}")))
}

fn decode(row: &SqliteRow) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.columns().len());
    for column in row.columns() {
        let i = column.ordinal();
        let raw = row.try_get_raw(i).map_err(StoreError::unavailable)?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => {
                    Value::Int(row.try_get(i).map_err(StoreError::unavailable)?)
                }
                _ => Value::Text(row.try_get(i).map_err(StoreError::unavailable)?),
            }
        };
        values.push(value);
    }
    Ok(Row(values))
}

async fn fetch_with<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    sql: &'e str,
    args: Vec<Value>,
) -> Result<Vec<Row>, StoreError> {
    let rows = sqlx::query_with(sql, bind(args)?)
        .fetch_all(executor)
        .await
        .map_err(StoreError::unavailable)?;
    rows.iter().map(decode).collect()
}

async fn execute_with<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    sql: &'e str,
    args: Vec<Value>,
) -> Result<u64, StoreError> {
    sqlx::query_with(sql, bind(args)?)
        .execute(executor)
        .await
        .map(|done| done.rows_affected())
        .map_err(StoreError::unavailable)
}

#[async_trait]
impl Driver for SqliteDriver {
    async fn fetch(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        fetch_with(&self.pool, sql, args).await
    }

    async fn execute(&self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError> {
        execute_with(&self.pool, sql, args).await
    }

    async fn begin_write(&self) -> Result<Box<dyn Conn>, StoreError> {
        // Taking the write lock up front: a read-then-write transaction waits
        // for the busy timeout instead of failing when another commits first.
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::unavailable)?;
        Ok(Box::new(SqliteTx(tx)))
    }
}

struct SqliteTx(Transaction<'static, Sqlite>);

#[async_trait]
impl Conn for SqliteTx {
    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError> {
        execute_with(&mut *self.0, sql, args).await
    }

    async fn fetch(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        fetch_with(&mut *self.0, sql, args).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.0.commit().await.map_err(StoreError::unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_sort_as_text() {
        let a = encode_time(time::macros::datetime!(2026-01-02 03:04:05 UTC)).unwrap();
        let b = encode_time(time::macros::datetime!(2026-01-02 03:04:05.5 UTC)).unwrap();
        let c = encode_time(time::macros::datetime!(2026-01-02 05:04:05 +02:00)).unwrap();
        assert_eq!(a, "2026-01-02T03:04:05.000Z");
        assert_eq!(b, "2026-01-02T03:04:05.500Z");
        assert_eq!(c, a);
        assert!(a < b);
    }

    /// A database made by the first release keeps working: its tokens get
    /// every scope and no secret tag (checked by argon2 until first use),
    /// and its timestamps gain milliseconds without changing.
    #[tokio::test]
    async fn the_first_releases_database_is_migrated_in_place() {
        use crate::store::{AdminStore, CredentialStore};

        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first-release");
        std::fs::create_dir(&first).unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/20261126000001_initial.sql"
            ),
            first.join("20261126000001_initial.sql"),
        )
        .unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(first.as_path())
            .await
            .unwrap()
            .run(store.pool())
            .await
            .unwrap();
        for statement in [
            "INSERT INTO accounts VALUES ('acct', 'pro', '2026-11-26T10:00:00Z', '2026-11-26T10:00:00Z')",
            "INSERT INTO api_tokens (id, account_id, name, secret_hash, hint, created_at, expires_at) \
             VALUES ('AAAAAAAAAAAAAAAAAAAA', 'acct', 'old', '$argon2id$x', 'abcd', \
             '2026-11-26T10:00:01Z', '2030-01-01T00:00:00Z')",
            "INSERT INTO changes (kind, subject, at) VALUES ('created', 'AAAAAAAAAAAAAAAAAAAA', '2026-11-26T10:00:01Z')",
        ] {
            sqlx::query(statement).execute(store.pool()).await.unwrap();
        }
        assert!(store.migrate().await.unwrap() >= 2);

        let id = "AAAAAAAAAAAAAAAAAAAA".parse().unwrap();
        let credential = store.find_credential(&id).await.unwrap().unwrap();
        assert_eq!(credential.scopes, ["*"]);
        assert_eq!(credential.secret_tag, None);
        assert_eq!(credential.plan.account_requests_per_hour, None);
        assert_eq!(credential.plan.max_tokens, None);
        let token = store.get_token(&id).await.unwrap().unwrap();
        assert_eq!(
            token.created_at,
            time::macros::datetime!(2026-11-26 10:00:01 UTC)
        );
        assert_eq!(
            token.expires_at,
            Some(time::macros::datetime!(2030-01-01 0:00 UTC))
        );
        let stored: String = sqlx::query_scalar("SELECT created_at FROM api_tokens")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(stored, "2026-11-26T10:00:01.000Z");
        assert_eq!(store.latest_change().await.unwrap(), 1);
    }
}
