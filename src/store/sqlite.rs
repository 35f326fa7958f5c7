//! The default [`TokenStore`]: one SQLite file, WAL mode, via sqlx.
//!
//! Only what is particular to SQLite lives here: connection options, value
//! encoding (timestamps are fixed-width RFC 3339 text with milliseconds,
//! `2026-11-26T23:44:59.000Z`, so they sort and compare as text), and
//! `BEGIN IMMEDIATE` for write transactions, and noticing a database file
//! deleted or replaced while in use. The statements are in `sql/`.

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, Row as _, Sqlite, Transaction};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use super::driver::{Conn, Dialect, Driver, Row, Value, execute_with, fetch_with};
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
///
/// A database file deleted, or replaced by another one (renamed over it),
/// while the store has it open is noticed: open connections would go on
/// reading and writing the old file, which nobody will open again, so from
/// then on every write (before it commits) and [`ping`](crate::TokenGate::ping)
/// fail as unavailable, and one error line is logged. Reads, and with them
/// authentication, go on from the old file on the connections already open;
/// a connection the pool opens after a deletion fails rather than create a
/// new, empty database at the path. The check is one `stat` of the path,
/// compared with the (device, inode) seen at connect; Unix only.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    sql: SqlStore<SqliteDriver>,
}

#[derive(Debug, Clone)]
pub(crate) struct SqliteDriver {
    pool: SqlitePool,
    file: Option<Arc<DatabaseFile>>,
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
        // Connected: the file exists now.
        let file = if in_memory {
            None
        } else {
            // Every later connection opens this file or fails: one that
            // found the file deleted would otherwise create a new, empty
            // database at the path, and answer from it.
            let existing = (*pool.connect_options()).clone().create_if_missing(false);
            pool.set_connect_options(existing);
            DatabaseFile::of(pool.connect_options().get_filename())
        };
        Ok(Self::with_file(pool, file))
    }

    /// Wraps an existing pool (its connections should have foreign keys on).
    pub fn from_pool(pool: SqlitePool) -> Self {
        let file = DatabaseFile::of(pool.connect_options().get_filename());
        Self::with_file(pool, file)
    }

    fn with_file(pool: SqlitePool, file: Option<DatabaseFile>) -> Self {
        Self {
            sql: SqlStore {
                driver: SqliteDriver {
                    pool,
                    file: file.map(Arc::new),
                },
            },
        }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.sql.driver.pool
    }
}

crate::store::delegate::delegate_store!(SqliteStore);
crate::store::sql::delegate_webhooks!(SqliteStore);

#[async_trait]
impl TokenStore for SqliteStore {
    async fn migrate(&self) -> Result<usize, StoreError> {
        crate::store::delegate::run_migrations(&MIGRATOR, self.pool()).await
    }

    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let table_exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::unavailable)?;
        crate::store::delegate::pending_migrations(&MIGRATOR, self.pool(), table_exists).await
    }

    async fn close(&self) {
        self.pool().close().await;
    }
}

/// The database file as the store found it at connect.
#[derive(Debug)]
struct DatabaseFile {
    path: PathBuf,
    identity: FileIdentity,
    /// The change was logged already (once per store).
    reported: AtomicBool,
}

/// What tells two files apart: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    #[cfg(not(unix))]
    fn of(_path: &Path) -> io::Result<Self> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl DatabaseFile {
    /// The file at `path` (made absolute, so a later change of the working
    /// directory does not matter), or `None` if there is none to watch.
    fn of(path: &Path) -> Option<Self> {
        let path = std::path::absolute(path).ok()?;
        let identity = FileIdentity::of(&path).ok()?;
        Some(Self {
            path,
            identity,
            reported: AtomicBool::new(false),
        })
    }

    /// Fails if the path no longer names the file opened at connect.
    fn check(&self) -> Result<(), StoreError> {
        let problem = match FileIdentity::of(&self.path) {
            Ok(now) if now == self.identity => return Ok(()),
            Ok(_) => "was replaced by another file",
            Err(e) if e.kind() == io::ErrorKind::NotFound => "was deleted",
            // Cannot tell (permissions, I/O): SQLite reports what it cannot do.
            Err(_) => return Ok(()),
        };
        let message = format!(
            "the database file {} {problem} while in use: writes are refused, since they \
             would go to the old file; restore the file and restart the server",
            self.path.display()
        );
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::error!("{message}");
        }
        Err(StoreError::unavailable(io::Error::other(message)))
    }
}

fn check_file(file: Option<&Arc<DatabaseFile>>) -> Result<(), StoreError> {
    file.map_or(Ok(()), |file| file.check())
}

fn encode_time(t: OffsetDateTime) -> Result<String, StoreError> {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .map_err(|e| StoreError::Corrupt(format!("cannot store the time {t}: {e}")))
}

impl Dialect for Sqlite {
    fn bind<'q>(args: Vec<Value>) -> Result<SqliteArguments<'q>, StoreError> {
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

    /// Timestamps are fixed-width RFC 3339 text (see `encode_time`); the
    /// row reader parses them.
    fn read(row: &SqliteRow, i: usize, type_name: &str) -> Result<Value, StoreError> {
        Ok(match type_name {
            "INTEGER" | "BOOLEAN" => Value::Int(row.try_get(i).map_err(StoreError::unavailable)?),
            _ => Value::Text(row.try_get(i).map_err(StoreError::unavailable)?),
        })
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

#[async_trait]
impl Driver for SqliteDriver {
    async fn fetch(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        fetch_with(&self.pool, sql, args).await
    }

    async fn execute(&self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError> {
        // Only writes come here; each commits on its own.
        check_file(self.file.as_ref())?;
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
        Ok(Box::new(SqliteTx {
            tx,
            file: self.file.clone(),
        }))
    }

    fn check_database(&self) -> Result<(), StoreError> {
        check_file(self.file.as_ref())
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    file: Option<Arc<DatabaseFile>>,
}

#[async_trait]
impl Conn for SqliteTx {
    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError> {
        execute_with(&mut *self.tx, sql, args).await
    }

    async fn fetch(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        fetch_with(&mut *self.tx, sql, args).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        // Dropped uncommitted on failure: rolled back.
        check_file(self.file.as_ref())?;
        self.tx.commit().await.map_err(StoreError::unavailable)
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

    /// Counting pending migrations creates nothing: the CLI's read commands
    /// rely on it to refuse a database that was never migrated.
    #[tokio::test]
    async fn pending_migrations_are_counted_without_creating_anything() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let all = MIGRATOR.iter().count();
        assert!(all >= 2);
        assert_eq!(store.pending_migrations().await.unwrap(), all);
        let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tables, 0, "counting created something");
        assert_eq!(store.migrate().await.unwrap(), all);
        assert_eq!(store.pending_migrations().await.unwrap(), 0);
        // One migration forgotten: one pending.
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(store.pending_migrations().await.unwrap(), 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_deleted_or_replaced_file_fails_writes_and_ping_not_reads() {
        use crate::{AdminStore, CredentialStore, TokenStore};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        store.put_setting("k", "1").await.unwrap();
        // Two connections open before the file goes: the pending write holds
        // one and the read below gets the other. (A connection opened after
        // the deletion fails, see the next test; the pending write's
        // connection comes back only after its background rollback, so
        // without this the read raced it under load.)
        let (one, two) = (
            store.pool().acquire().await.unwrap(),
            store.pool().acquire().await.unwrap(),
        );
        drop((one, two));
        // A dropped connection goes back to the pool on a task: wait for both.
        for _ in 0..100_000 {
            if store.pool().num_idle() >= 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(store.pool().num_idle() >= 2, "two idle connections");
        let pending = store.begin_write().await.unwrap();

        std::fs::remove_file(&path).unwrap();
        let error = store.ping().await.unwrap_err();
        assert!(error.to_string().contains("was deleted"), "{error}");
        assert!(store.put_setting("k", "2").await.is_err());
        assert!(pending.commit().await.is_err(), "checked before commit");
        assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("1"));

        // Another file renamed over the path.
        std::fs::write(dir.path().join("other.db"), b"").unwrap();
        std::fs::rename(dir.path().join("other.db"), &path).unwrap();
        let error = store.ping().await.unwrap_err();
        assert!(error.to_string().contains("was replaced"), "{error}");
        assert!(store.begin_write().await.unwrap().commit().await.is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_connection_opened_after_the_file_was_deleted_creates_no_empty_database() {
        use crate::CredentialStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        crate::TokenStore::migrate(&store).await.unwrap();
        store.ping().await.unwrap();
        let open = store.pool().size();
        std::fs::remove_file(&path).unwrap();
        // One more connection than the pool has open: the last one is new.
        let mut held = Vec::new();
        let mut refused = None;
        for _ in 0..=open {
            match store.pool().acquire().await {
                Ok(connection) => held.push(connection),
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let refused = refused.expect("a connection opened after the deletion");
        assert!(refused.to_string().contains("unable to open"), "{refused}");
        assert!(!path.exists(), "an empty database was created at the path");
    }

    #[tokio::test]
    async fn an_in_memory_database_has_no_file_to_watch() {
        use crate::CredentialStore;
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.sql.driver.file.is_none());
        crate::TokenStore::migrate(&store).await.unwrap();
        store.ping().await.unwrap();
    }
}
