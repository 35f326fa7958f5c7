//! The [`TokenStore`] for several instances: PostgreSQL, via sqlx.
//!
//! Same tables, same statements (`sql/`) and semantics as
//! [`SqliteStore`](super::SqliteStore), with its own migrations
//! (`migrations/postgres/`). What is particular to PostgreSQL: timestamps
//! are `TIMESTAMPTZ`, and every write transaction first takes one
//! transaction-scoped advisory lock, so the change feed's sequence numbers
//! are assigned in commit order and a gate polling "after my cursor" never
//! skips a row that commits late (plain `BIGSERIAL` order is not commit
//! order). Reads and authentication never take it.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::{Arguments, Postgres, Row as _, Transaction};
use time::OffsetDateTime;

use super::driver::{Conn, Dialect, Driver, Row, Value, execute_with, fetch_with};
use super::sql::SqlStore;
use super::{StoreError, TokenStore};

/// The embedded PostgreSQL migrations (`migrations/postgres/`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Key of the advisory lock that orders the change feed ("tokengat" in ASCII).
const FEED_LOCK: i64 = 0x746f_6b65_6e67_6174;

/// A [`TokenStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    sql: SqlStore<PostgresDriver>,
}

#[derive(Debug, Clone)]
pub(crate) struct PostgresDriver {
    pool: PgPool,
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
            .map_err(StoreError::unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            sql: SqlStore {
                driver: PostgresDriver { pool },
            },
        }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.sql.driver.pool
    }
}

crate::store::delegate::delegate_store!(PostgresStore);
crate::store::sql::delegate_webhooks!(PostgresStore);

#[async_trait]
impl TokenStore for PostgresStore {
    async fn migrate(&self) -> Result<usize, StoreError> {
        crate::store::delegate::run_migrations(&MIGRATOR, self.pool()).await
    }

    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        // `to_regclass` resolves the name on the search path, as sqlx does.
        let table_exists: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(self.pool())
                .await
                .map_err(StoreError::unavailable)?;
        crate::store::delegate::pending_migrations(&MIGRATOR, self.pool(), table_exists).await
    }

    async fn close(&self) {
        self.pool().close().await;
    }
}

impl Dialect for Postgres {
    fn bind<'q>(args: Vec<Value>) -> Result<Self::Arguments<'q>, StoreError> {
        let mut bound = PgArguments::default();
        for value in args {
            let added = match value {
                Value::Null => bound.add(None::<String>),
                Value::NullTime => bound.add(None::<OffsetDateTime>),
                Value::NullInt => bound.add(None::<i64>),
                Value::Bool(b) => bound.add(b),
                Value::Int(n) => bound.add(n),
                Value::Text(text) => bound.add(text),
                Value::Time(t) => bound.add(t),
            };
            added.map_err(|e| StoreError::Corrupt(format!("cannot bind a value: {e}")))?;
        }
        Ok(bound)
    }

    /// Timestamps are `TIMESTAMPTZ`; integers `INT8`, or `INT4` from
    /// some aggregates.
    fn read(row: &PgRow, i: usize, type_name: &str) -> Result<Value, StoreError> {
        let get = |e| StoreError::unavailable(e);
        Ok(match type_name {
            "BOOL" => Value::Bool(row.try_get(i).map_err(get)?),
            "INT8" => Value::Int(row.try_get(i).map_err(get)?),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i).map_err(get)?)),
            "TIMESTAMPTZ" => Value::Time(row.try_get::<OffsetDateTime, _>(i).map_err(get)?),
            _ => Value::Text(row.try_get(i).map_err(get)?),
        })
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

#[async_trait]
impl Driver for PostgresDriver {
    async fn fetch(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        fetch_with(&self.pool, sql, args).await
    }

    async fn execute(&self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError> {
        execute_with(&self.pool, sql, args).await
    }

    async fn begin_write(&self) -> Result<Box<dyn Conn>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::unavailable)?;
        execute_with(
            &mut *tx,
            "SELECT pg_advisory_xact_lock($1)",
            vec![FEED_LOCK.into()],
        )
        .await?;
        Ok(Box::new(PostgresTx(tx)))
    }
}

struct PostgresTx(Transaction<'static, Postgres>);

#[async_trait]
impl Conn for PostgresTx {
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
