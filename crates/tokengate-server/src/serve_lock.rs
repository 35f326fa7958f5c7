//! One `serve` process per SQLite file.
//!
//! Two servers on one database each keep their own rate-limit windows and
//! caches, so limits and revocations stop holding. `serve` therefore holds
//! two exclusive OS locks for its whole life, both following the file, not
//! the name it was given:
//!
//! - on `<database>.lock` (e.g. `tokengate.db.lock`) next to the database's
//!   real path (symlinks followed, relative parts and `..` resolved), in
//!   which the holder writes its PID and address;
//! - on the database file itself (its inode), so a hard link, which has a
//!   path of its own, is refused too; the holder is then named by its PID,
//!   read from the kernel's lock table (`/proc/locks`).
//!
//! A second `serve` on the same file, by any name, is refused at once with one
//! line naming the file and the running server. The CLI never takes the locks,
//! so it keeps working next to a running server; SQLite's own locking still
//! orders their writes.
//!
//! Why `flock` (through `std::fs::File::try_lock`): SQLite locks the database
//! file with POSIX `fcntl` byte-range locks, which `flock` locks do not
//! interact with (Linux, the BSDs and macOS keep the two apart). What SQLite's
//! docs warn about is closing another descriptor of the database file, which
//! drops the process's `fcntl` locks: the serve lock keeps its descriptor
//! open until the server has closed its database pool. `flock` locks belong
//! to the open file description (so two opens in one process conflict too,
//! which the tests use), and are released by the kernel when the process
//! dies, however it dies: no stale PID file. The lock file is never deleted:
//! unlinking it while another process waits on it would let a third process
//! lock a new file of the same name.
//!
//! Limits: advisory only (a process that does not ask is not stopped);
//! `flock` on NFS is emulated with byte-range locks (still exclusive, but
//! don't share a SQLite file over NFS anyway); a copy of the file is another
//! file.

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
    /// The lock on the database file itself, once it exists.
    database: Option<File>,
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

/// The lock file of `database`: its real path (see [`real_path`]) with
/// `.lock` appended.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut path = real_path(database).into_os_string();
    path.push(".lock");
    PathBuf::from(path)
}

/// Most symbolic links followed to a file that does not exist yet (Linux's
/// own limit).
const MAX_LINKS: usize = 40;

/// The path `database` names, whatever it was called: symbolic links
/// followed, relative parts and `..` resolved. A file that does not exist
/// yet (a new database, or a dangling link to one) gets the real path of its
/// directory.
pub fn real_path(database: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(database) {
        return real;
    }
    let mut path = database.to_owned();
    for _ in 0..MAX_LINKS {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        path = match path.parent() {
            Some(parent) => parent.join(target),
            None => target,
        };
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return path;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::canonicalize(parent).map_or(path.clone(), |parent| parent.join(name))
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
        let mut lock = Self {
            file,
            path,
            database: None,
        };
        // The file itself first: the lock file of another name of it (a
        // hard link) must not get our description.
        match File::open(database) {
            Ok(file) => lock.hold_database(database, file)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServeLockError::Io {
                    lock: database.to_owned(),
                    source,
                });
            }
        }
        match lock.write_holder(None) {
            Ok(()) => Ok(lock),
            Err(source) => Err(ServeLockError::Io {
                lock: lock.path,
                source,
            }),
        }
    }

    /// Creates `database` empty if it does not exist yet (SQLite takes an
    /// empty file for an empty database) and locks the file itself, if
    /// [`acquire`](Self::acquire) could not because it did not exist.
    pub fn create_and_lock_database(&mut self, database: &Path) -> Result<(), ServeLockError> {
        if self.database.is_some() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(database)
            .map_err(|source| ServeLockError::Io {
                lock: database.to_owned(),
                source,
            })?;
        self.hold_database(database, file)
    }

    /// Locks the database file itself: another name of the same file (a hard
    /// link) gets past the lock file, not past this.
    fn hold_database(&mut self, database: &Path, file: File) -> Result<(), ServeLockError> {
        match file.try_lock() {
            Ok(()) => {
                self.database = Some(file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(ServeLockError::Held {
                database: database.to_owned(),
                holder: holder_of(&file),
                lock: self.path.clone(),
            }),
            Err(TryLockError::Error(source)) => Err(ServeLockError::Io {
                lock: database.to_owned(),
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

/// Who holds the `flock` lock on `file`, from the kernel's lock table: the
/// holder of a hard link to our database wrote its description into the lock
/// file of its own name, which we cannot find.
fn holder_of(file: &File) -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = file.metadata()
            && let Ok(table) = std::fs::read_to_string("/proc/locks")
            && let Some(pid) = flock_holder(&table, meta.dev(), meta.ino())
        {
            return format!("pid {pid}");
        }
    }
    let _ = file;
    "pid unknown".to_owned()
}

/// The PID holding a `FLOCK` lock on the file `(dev, ino)` in a
/// `/proc/locks` table (`1: FLOCK  ADVISORY  WRITE 4242 08:02:1234 0 EOF`,
/// the device's major and minor numbers in hex).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn flock_holder(table: &str, dev: u64, ino: u64) -> Option<u32> {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed as `1: -> FLOCK ...`: not holders.
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut file = fields.get(5)?.split(':');
        let same_file = u64::from_str_radix(file.next()?, 16).ok()? == major
            && u64::from_str_radix(file.next()?, 16).ok()? == minor
            && file.next()?.parse::<u64>().ok()? == ino;
        same_file.then(|| fields.get(4)?.parse().ok()).flatten()
    })
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
    fn another_name_of_the_same_file_is_refused() {
        let dir = tempdir();
        let database = dir.join("tokengate.db");
        std::fs::write(&database, b"").unwrap();
        let _first = ServeLock::acquire(&database).unwrap();
        std::os::unix::fs::symlink(&database, dir.join("symlink.db")).unwrap();
        std::fs::hard_link(&database, dir.join("hard.db")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        for other in [
            dir.join("symlink.db"),
            dir.join("hard.db"),
            dir.join("sub/../tokengate.db"),
        ] {
            let error = ServeLock::acquire(&other).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&format!("pid {}", std::process::id())),
                "{other:?}: {message}"
            );
            assert!(
                message.contains(&format!("already serving {}", other.display())),
                "{message}"
            );
        }
    }

    #[test]
    fn a_new_database_is_locked_once_created() {
        let dir = tempdir();
        let database = dir.join("new.db");
        let mut first = ServeLock::acquire(&database).unwrap();
        assert!(!database.exists());
        first.create_and_lock_database(&database).unwrap();
        assert_eq!(std::fs::metadata(&database).unwrap().len(), 0);
        std::fs::hard_link(&database, dir.join("hard.db")).unwrap();
        assert!(matches!(
            ServeLock::acquire(&dir.join("hard.db")),
            Err(ServeLockError::Held { .. })
        ));
        // A dangling symlink to a database not created yet names the same lock file.
        let other = dir.join("later.db");
        std::os::unix::fs::symlink(&other, dir.join("dangling.db")).unwrap();
        assert_eq!(lock_path(&dir.join("dangling.db")), lock_path(&other));
    }

    #[test]
    fn the_holder_is_found_in_the_kernel_lock_table() {
        let dev = (8 << 8) | 2; // 08:02
        let table = "1: POSIX  ADVISORY  WRITE 11 08:02:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 08:02:77 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 99 08:02:77 0 EOF\n";
        assert_eq!(flock_holder(table, dev, 77), Some(4242));
        assert_eq!(flock_holder(table, dev, 78), None);
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
