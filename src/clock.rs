//! Wall-clock time that never steps and costs one atomic load to read.
//!
//! The wall clock is read once, when the first [`Clock`] is made; after that,
//! time advances with the monotonic `Instant`, so an NTP step or a manual
//! clock change never moves a rate-limit window or un-expires a cache entry.
//!
//! Reading `Instant::now()` costs about 28 ns here (a vDSO call), and the
//! request path needs the time twice: that would be most of the limiter's
//! cost. So one background thread ("tokengate-clock") publishes the current
//! millisecond into an atomic every millisecond, and readers load it (about
//! 1 ns). The price is a resolution of about a millisecond, against one-minute
//! buckets and one-second headers, and one thread waking 1,000 times a second
//! (well under 1% of a core).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static NOW_MS: AtomicU64 = AtomicU64::new(0);
static TICKING: AtomicBool = AtomicBool::new(false);
static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
static START: Once = Once::new();
const TICK: Duration = Duration::from_millis(1);

/// Monotonic Unix milliseconds, computed (about 28 ns).
fn precise_now_ms() -> u64 {
    let (anchor, anchor_unix_ms) = ANCHOR.get_or_init(|| {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (Instant::now(), unix_ms)
    });
    anchor_unix_ms + anchor.elapsed().as_millis() as u64
}

fn start_ticker() {
    START.call_once(|| {
        NOW_MS.store(precise_now_ms(), Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("tokengate-clock".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TICK);
                    NOW_MS.fetch_max(precise_now_ms(), Ordering::AcqRel);
                }
            });
        match spawned {
            Ok(_) => TICKING.store(true, Ordering::Release),
            // Readers compute the time themselves: slower, equally correct.
            Err(e) => eprintln!("tokengate: no clock thread ({e}); reading the clock directly"),
        }
    });
}

/// Unix time in milliseconds: monotonic, millisecond resolution, one atomic load.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    _started: (),
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A handle to the process clock (starting its thread on first use).
    pub fn new() -> Self {
        start_ticker();
        Self { _started: () }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_unix_ms(&self) -> u64 {
        if TICKING.load(Ordering::Relaxed) {
            NOW_MS.load(Ordering::Acquire)
        } else {
            precise_now_ms()
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_unix_secs(&self) -> i64 {
        (self.now_unix_ms() / 1000) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_with_real_time_and_never_backwards() {
        let clock = Clock::new();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = clock.now_unix_ms();
        assert!(first.abs_diff(wall) < 1000, "{first} vs {wall}");
        std::thread::sleep(Duration::from_millis(50));
        let second = clock.now_unix_ms();
        assert!(second >= first + 40, "{first} -> {second}");
        assert!(second <= first + 1000);
    }
}
