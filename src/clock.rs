//! Wall-clock time that never steps: one `SystemTime` anchor plus a monotonic `Instant`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds, derived from a monotonic clock.
///
/// The wall clock is read once, at construction; after that, time advances
/// with `Instant`, so an NTP step or a manual clock change never moves a
/// rate-limit window or un-expires a cache entry.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// Anchors a clock at the current wall-clock time.
    pub fn new() -> Self {
        let anchor_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            anchor: Instant::now(),
            anchor_unix_ms,
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> u64 {
        self.anchor_unix_ms + self.anchor.elapsed().as_millis() as u64
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_unix_secs(&self) -> i64 {
        (self.now_unix_ms() / 1000) as i64
    }
}
