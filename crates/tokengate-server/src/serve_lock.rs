//! One `serve` process per SQLite file.
//!
//! Two servers on one database each keep their own rate-limit windows and
//! caches, so limits and revocations stop holding. `serve` therefore holds
//! an exclusive OS lock on `<database>.lock` (e.g. `tokengate.db.lock`)
//! for its whole life; a second `serve` on the same file is refused with one
//! line naming the file and the running server (its PID and address, which
//! the holder writes into the lock file). The CLI never takes the lock, so
//! it keeps working next to a running server; SQLite's own locking still
//! orders their writes.
//!
//! Why a separate file and `flock` (through `std::fs::File::try_lock`):
//! SQLite locks the database file itself with POSIX `fcntl` locks, which are
//! per process and released when *any* descriptor of that file in the
//! process is closed; a second lock on the database file would interfere
//! with SQLite's (SQLite's docs warn against opening the database file
//! outside SQLite for exactly this reason). `flock` locks on another file
//! are independent of SQLite, belong to the open file description (so two
//! opens in one process conflict too, which the tests use), and are released
//! by the kernel when the process dies, however it dies: no stale PID file.
//! The lock file is never deleted: unlinking it while another process waits
//! on it would let a third process lock a new file of the same name.
//!
//! Limits: advisory only (a process that does not ask is not stopped);
//! `flock` on NFS is emulated with byte-range locks (still exclusive, but
//! don't share a SQLite file over NFS anyway); deleting the lock file while a
//! server runs lets a second one start.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Longest holder description read back from a lock file.
const MAX_HOLDER_LEN: usize = 200;

/// The exclusive lock of one `serve` process on its database; released when
/// dropped (or when the process exits).
#[derive(Debug)]
pub struct ServeLock {
    file: File,
    path: PathBuf,
}

/// Why [`ServeLock::acquire`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    /// Another process holds the lock.
    #[error(
        "another tokengate server is already serving {database} ({holder}); stop it first, or use another DATABASE_URL (lock file: {lock})",
        database = .database.display(), lock = .lock.display()
    )]
    Held {
        /// The database file.
        database: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// What the holder wrote into the lock file, e.g.
        /// `pid 4242, listening on 127.0.0.1:8080`, or `pid unknown`.
        holder: String,
    },
    /// The lock file could not be created, read, locked or written.
    #[error("cannot lock {lock}: {source}", lock = .lock.display())]
    Io {
        /// The lock file.
        lock: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The lock file of `database`: the same path with `.lock` appended.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl ServeLock {
    /// Takes the lock of `database` (without waiting) and records this
    /// process's PID in it.
    pub fn acquire(database: &Path) -> Result<Self, ServeLockError> {
        let path = lock_path(database);
        let io_error = |source| ServeLockError::Io {
            lock: path.clone(),
            source,
        };
        // Not truncated on open: the holder's description must survive a
        // refused attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ServeLockError::Held {
                    database: database.to_owned(),
                    holder: read_holder(&mut file),
                    lock: path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let mut lock = Self { file, path };
        match lock.write_holder(None) {
            Ok(()) => Ok(lock),
            Err(source) => Err(ServeLockError::Io {
                lock: lock.path,
                source,
            }),
        }
    }

    /// Adds the server's address to the description in the lock file, once
    /// it listens.
    pub fn record_address(&mut self, address: SocketAddr) -> io::Result<()> {
        self.write_holder(Some(address))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_holder(&mut self, address: Option<SocketAddr>) -> io::Result<()> {
        let mut line = format!("pid {}", std::process::id());
        if let Some(address) = address {
            let _ = write!(line, ", listening on {address}");
        }
        line.push('\n');
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }
}

/// The holder's description, on one line of printable characters.
fn read_holder(file: &mut File) -> String {
    let mut bytes = Vec::new();
    let read = file
        .take(MAX_HOLDER_LEN as u64)
        .read_to_end(&mut bytes)
        .is_ok();
    let text: String = String::from_utf8_lossy(&bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if read && !text.trim().is_empty() {
        text.trim().to_owned()
    } else {
        "pid unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_in_the_same_process_is_refused_with_the_holder() {
        let dir = tempdir();
        let database = dir.join("tokengate.db");
        let mut first = ServeLock::acquire(&database).unwrap();
        first
            .record_address("127.0.0.1:8080".parse().unwrap())
            .unwrap();
        let error = ServeLock::acquire(&database).unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            format!(
                "another tokengate server is already serving {} (pid {}, listening on 127.0.0.1:8080); stop it first, or use another DATABASE_URL (lock file: {}.lock)",
                database.display(),
                std::process::id(),
                database.display()
            )
        );
        assert!(!message.contains('\n'));
        drop(first);
        let again = ServeLock::acquire(&database).unwrap();
        assert_eq!(again.path(), lock_path(&database));
    }

    #[test]
    fn other_files_are_not_locked() {
        let dir = tempdir();
        let _a = ServeLock::acquire(&dir.join("a.db")).unwrap();
        let _b = ServeLock::acquire(&dir.join("b.db")).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_lock_file() {
        let dir = tempdir();
        let error = ServeLock::acquire(&dir.join("missing/tokengate.db")).unwrap_err();
        assert!(matches!(error, ServeLockError::Io { .. }));
        assert!(
            error.to_string().contains("missing/tokengate.db.lock"),
            "{error}"
        );
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "serve-lock-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
