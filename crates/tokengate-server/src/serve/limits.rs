//! The open-file limit and the default connection cap derived from it.

use std::io;

/// File descriptors kept free for everything that is not a client
/// connection: the listener, the runtime (epoll, eventfd, signal pipe), the
/// database pool (SQLite: up to 8 connections, each with the db, `-wal` and
/// `-shm` files; PostgreSQL: 16 sockets), Redis, log files, the connection
/// accepted while the server is at the cap and waiting for a slot, and slack.
pub const RESERVED_FILES: u64 = 256;

/// The default cap never goes above this, whatever the file limit: an idle
/// HTTP/1.1 connection costs a task, hyper's buffers and kernel socket
/// buffers (~13 KB measured), so the cap of a 1M-file limit would be ~13 GB.
pub const MAX_CONNECTIONS_CEILING: usize = 16_384;

/// Smallest cap [`default_max_connections`] returns.
pub const MIN_CONNECTIONS: usize = 16;

/// Soft limit the server asks for; a hard limit of "unlimited" must not be
/// copied into the soft limit (Linux refuses anything above `fs.nr_open`).
const SOFT_LIMIT_TARGET: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` toward the hard limit and returns the soft
/// limit now in force. Raising the soft limit needs no privilege; this is what
/// Go's runtime does at start too. On platforms without the limit it returns
/// a large number.
pub fn raise_open_file_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(SOFT_LIMIT_TARGET)
}

/// The default `MAX_CONNECTIONS` for a process whose soft open-file limit is
/// `open_file_limit`: the limit minus [`RESERVED_FILES`], at most
/// [`MAX_CONNECTIONS_CEILING`], at least [`MIN_CONNECTIONS`].
pub fn default_max_connections(open_file_limit: u64) -> usize {
    let available = open_file_limit.saturating_sub(RESERVED_FILES);
    usize::try_from(available)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS_CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_the_process_and_is_bounded() {
        assert_eq!(default_max_connections(1024), 768);
        assert_eq!(default_max_connections(10_000), 9_744);
        assert_eq!(default_max_connections(1 << 20), MAX_CONNECTIONS_CEILING);
        assert_eq!(default_max_connections(100), MIN_CONNECTIONS);
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let soft = raise_open_file_limit().unwrap();
        let (now_soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, now_soft);
        assert_eq!(soft, hard.min(SOFT_LIMIT_TARGET));
    }
}
