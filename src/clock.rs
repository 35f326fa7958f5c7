//! Two clocks, for two jobs.
//!
//! * [`WallClock`] answers "what time is it": token expiry, stored
//!   timestamps, `last_used_at`. It reads `SystemTime::now()` on every call
//!   (about 20 ns), so when the host's clock is stepped (a VM that booted
//!   before NTP), expiry decisions move with it and every instance agrees
//!   with the database. Tests can shift it (`test-util`): in process with
//!   `TokenGate::step_wall_clock`, and in a server process and its CLI
//!   through the file named by `TOKENGATE_TEST_CLOCK_FILE` (milliseconds to
//!   add, read at every call). Neither exists without `test-util`.
//! * [`monotonic_unix_ms`] measures rate-limit windows: Unix milliseconds
//!   anchored once per process and advanced by `Instant`, so a clock step
//!   never frees or steals window capacity.
//!
//! Nothing here starts a thread or a task.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// The wall clock, plus an offset that only tests move.
#[derive(Debug, Clone, Default)]
pub(crate) struct WallClock {
    offset_ms: Arc<AtomicI64>,
}

impl WallClock {
    /// Milliseconds since the Unix epoch.
    pub(crate) fn now_unix_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        #[cfg(feature = "test-util")]
        let real = real.saturating_add(file_offset_ms());
        real.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Now, as a UTC date-time with millisecond precision.
    pub(crate) fn now(&self) -> OffsetDateTime {
        let ms = i128::from(self.now_unix_ms());
        OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Moves this clock (and its clones) by `delta_ms`, as a stepped host clock would.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn step(&self, delta_ms: i64) {
        self.offset_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }
}

/// The offset in the file named by `TOKENGATE_TEST_CLOCK_FILE` (0 when it is
/// unset, missing or not a number): how tests step the wall clock of another
/// process (a server binary built for `cargo test`, and its CLI).
#[cfg(feature = "test-util")]
fn file_offset_ms() -> i64 {
    static PATH: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| std::env::var_os("TOKENGATE_TEST_CLOCK_FILE").map(Into::into))
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Monotonic Unix milliseconds for rate-limit windows: the wall clock read
/// once per process, then advanced by `Instant`.
pub(crate) fn monotonic_unix_ms() -> u64 {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    let (anchor, anchor_unix_ms) = ANCHOR.get_or_init(|| {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (Instant::now(), unix_ms)
    });
    anchor_unix_ms + u64::try_from(anchor.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The start of the hour `t` falls in.
pub(crate) fn hour_of(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_time(time::Time::from_hms(t.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn monotonic_time_follows_real_time() {
        let wall = WallClock::default();
        let first = monotonic_unix_ms();
        assert!(first.abs_diff(u64::try_from(wall.now_unix_ms()).unwrap()) < 1000);
        std::thread::sleep(Duration::from_millis(50));
        let second = monotonic_unix_ms();
        assert!(second >= first + 40, "{first} -> {second}");
    }

    #[test]
    fn a_stepped_wall_clock_moves_its_clones() {
        let wall = WallClock::default();
        let clone = wall.clone();
        let before = clone.now_unix_ms();
        wall.step(3_600_000);
        let after = clone.now_unix_ms();
        assert!((3_600_000..3_601_000).contains(&(after - before)));
        assert_eq!(clone.now().unix_timestamp(), after / 1000);
    }
}
