//! The sliding-window arithmetic: pure functions of (state, limit, now).
//!
//! The window `W` (one hour) is split into `B` buckets of width `g = W / B`
//! (default 60 buckets of one minute). A token's state is a ring of `B + 1`
//! counters and their running sum. At time `t`, in bucket `b = t / g`, the
//! ring counts buckets `b - B ..= b`, which always contains every request of
//! the last `W` (the oldest counted bucket starts at most `W + g` ago). A
//! request is admitted iff `sum < limit`, and only admitted requests count.
//!
//! Two properties follow, and are property-tested against an exact sliding log:
//!
//! * **never too many**: at most `limit` requests are admitted in any rolling `W`;
//! * **at most one bucket late**: a request is rejected only if `limit`
//!   requests were admitted in the last `W + g`. Sustained traffic therefore
//!   gets at least `B / (B + 1)` (98.4 %) of an exact log's admissions.
//!
//! State is `4 × (B + 1) + 24` bytes per token (268 bytes at `B = 60`; about
//! 360 with the map entry, measured by `cargo bench --bench memory`),
//! against 4 bytes per request (40 KB per Enterprise token) for an exact log.

/// One hour, in milliseconds.
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// Bucket layout of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowConfig {
    window_ms: u64,
    buckets: u32,
}

impl Default for WindowConfig {
    /// One hour in 60 buckets of one minute.
    fn default() -> Self {
        Self {
            window_ms: HOUR_MS,
            buckets: 60,
        }
    }
}

/// A window that cannot be split evenly into buckets.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the window ({window_ms} ms) must split into 1..=3600 buckets of whole milliseconds")]
pub(crate) struct InvalidWindow {
    window_ms: u64,
}

impl WindowConfig {
    /// A window of `window_ms` split into `buckets` equal buckets.
    #[cfg(test)]
    pub(crate) fn new(window_ms: u64, buckets: u32) -> Result<Self, InvalidWindow> {
        if buckets == 0
            || buckets > 3600
            || window_ms == 0
            || !window_ms.is_multiple_of(u64::from(buckets))
        {
            return Err(InvalidWindow { window_ms });
        }
        Ok(Self { window_ms, buckets })
    }

    /// The window length in milliseconds.
    #[cfg(test)]
    pub(crate) fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The number of buckets `B` in a window.
    #[cfg(any(test, feature = "redis"))]
    pub(crate) fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The bucket width `g` in milliseconds.
    pub(crate) fn bucket_ms(&self) -> u64 {
        self.window_ms / u64::from(self.buckets)
    }

    fn ring_len(&self) -> u64 {
        u64::from(self.buckets) + 1
    }
}

/// The outcome of one rate-limit check, with everything the headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Requests per window (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in the window after this one (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Unix time in ms at which `remaining` next grows.
    pub reset_at_ms: u64,
    /// Unix time in ms of the check.
    pub now_ms: u64,
    /// The window length in seconds (for `RateLimit-Policy`).
    pub window_secs: u64,
}

impl Decision {
    /// `X-RateLimit-Reset`: the Unix second (rounded up) at which `remaining` next grows.
    pub fn reset_unix_secs(&self) -> u64 {
        self.reset_at_ms.div_ceil(1000)
    }

    /// Seconds until the reset: `max(1, ceil(reset - now))`. `Retry-After` on a 429.
    pub fn retry_after_secs(&self) -> u64 {
        let reset_ms = self.reset_unix_secs() * 1000;
        reset_ms.saturating_sub(self.now_ms).div_ceil(1000).max(1)
    }

    /// Seconds until the reset, possibly 0 (the `t` of the IETF `RateLimit` field).
    pub fn reset_in_secs(&self) -> u64 {
        (self.reset_unix_secs() * 1000)
            .saturating_sub(self.now_ms)
            .div_ceil(1000)
    }
}

/// One token's window: a ring of `B + 1` bucket counters and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowState {
    /// Absolute number (`t / g`) of the newest bucket the ring has advanced to.
    newest: u64,
    /// Absolute number of the oldest non-empty counted bucket (valid when `sum > 0`).
    oldest: u64,
    sum: u32,
    counts: Box<[u32]>,
}

impl WindowState {
    /// An empty window for the given layout.
    pub(crate) fn new(config: &WindowConfig) -> Self {
        Self {
            newest: 0,
            oldest: 0,
            sum: 0,
            counts: vec![0; config.ring_len() as usize].into_boxed_slice(),
        }
    }

    /// Requests counted in the ring (as of the last check).
    #[cfg(test)]
    pub(crate) fn counted(&self) -> u32 {
        self.sum
    }

    /// Checks one request at `now_ms` against `limit`; counts it if admitted.
    pub(crate) fn check(&mut self, config: &WindowConfig, limit: u32, now_ms: u64) -> Decision {
        self.advance_to(config, now_ms);
        let allowed = self.has_room(limit);
        if allowed {
            self.count_one(config);
        }
        self.decision(config, limit, now_ms, allowed)
    }

    /// Moves the ring to the bucket of `now_ms`, dropping what left the range.
    pub(crate) fn advance_to(&mut self, config: &WindowConfig, now_ms: u64) {
        self.advance(config, now_ms / config.bucket_ms());
    }

    /// Whether one more request fits under `limit` (after [`advance_to`](Self::advance_to)).
    pub(crate) fn has_room(&self, limit: u32) -> bool {
        self.sum < limit
    }

    /// Counts one admitted request in the current bucket.
    pub(crate) fn count_one(&mut self, config: &WindowConfig) {
        if self.sum == 0 {
            self.oldest = self.newest;
        }
        let slot = (self.newest % config.ring_len()) as usize;
        self.counts[slot] += 1;
        self.sum += 1;
    }

    /// What the headers say about this window after a check at `now_ms`.
    pub(crate) fn decision(
        &self,
        config: &WindowConfig,
        limit: u32,
        now_ms: u64,
        allowed: bool,
    ) -> Decision {
        let reset_at_ms = match self.bucket_that_frees_capacity(config, limit) {
            // That bucket leaves the ring B + 1 buckets after it began.
            Some(bucket) => (bucket + config.ring_len()) * config.bucket_ms(),
            // A limit of 0 never frees up: say "a window from now".
            None => now_ms + config.window_ms,
        };
        Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(self.sum),
            reset_at_ms,
            now_ms,
            window_secs: config.window_ms / 1000,
        }
    }

    /// The bucket whose departure makes `Remaining` grow: the oldest non-empty
    /// one while under the limit; when at or over it (e.g. after the plan's
    /// limit was lowered), the one that brings the count back under it.
    fn bucket_that_frees_capacity(&self, config: &WindowConfig, limit: u32) -> Option<u64> {
        if self.sum == 0 || limit == 0 {
            return None;
        }
        if self.sum < limit {
            return Some(self.oldest);
        }
        let ring = config.ring_len();
        let mut leaving = 0;
        for bucket in self.oldest..=self.newest {
            leaving += self.counts[(bucket % ring) as usize];
            if self.sum - leaving < limit {
                return Some(bucket);
            }
        }
        None
    }

    /// Whether the window is empty at `now_ms` (its state can be dropped).
    pub(crate) fn is_idle(&self, config: &WindowConfig, now_ms: u64) -> bool {
        let bucket = now_ms / config.bucket_ms();
        self.sum == 0 || bucket >= self.newest + config.ring_len()
    }

    /// The non-empty counted buckets, oldest first, as (absolute bucket
    /// number, count): what [`restore`](Self::restore) needs to rebuild it.
    pub(crate) fn export(&self, config: &WindowConfig) -> Vec<(u64, u32)> {
        if self.sum == 0 {
            return Vec::new();
        }
        let ring = config.ring_len();
        (self.oldest..=self.newest)
            .map(|bucket| (bucket, self.counts[(bucket % ring) as usize]))
            .filter(|&(_, count)| count > 0)
            .collect()
    }

    /// A window holding `buckets` (as exported). Buckets that do not fit in
    /// one ring behind the newest are dropped, as the ring would have.
    pub(crate) fn restore(config: &WindowConfig, buckets: &[(u64, u32)]) -> Self {
        let mut state = Self::new(config);
        let Some(newest) = buckets.iter().map(|&(bucket, _)| bucket).max() else {
            return state;
        };
        let ring = config.ring_len();
        let first = (newest + 1).saturating_sub(ring);
        state.newest = newest;
        state.oldest = newest;
        for &(bucket, count) in buckets {
            if bucket < first || count == 0 {
                continue;
            }
            let slot = &mut state.counts[(bucket % ring) as usize];
            let added = count.min(u32::MAX - state.sum);
            *slot = slot.saturating_add(added);
            state.sum += added;
            state.oldest = state.oldest.min(bucket);
        }
        state
    }

    /// Moves the ring forward to `bucket`, dropping buckets that left the range.
    /// A clock that steps back is treated as standing still.
    fn advance(&mut self, config: &WindowConfig, bucket: u64) {
        if bucket <= self.newest {
            return;
        }
        let ring = config.ring_len();
        if bucket - self.newest >= ring || self.sum == 0 {
            self.counts.fill(0);
            self.sum = 0;
        } else {
            for b in self.newest + 1..=bucket {
                let slot = (b % ring) as usize;
                self.sum -= self.counts[slot];
                self.counts[slot] = 0;
            }
        }
        self.newest = bucket;
        // The oldest bucket only moves forward; find the next non-empty one when
        // it leaves. At most once per bucket width, so amortised O(1).
        let first = (bucket + 1).saturating_sub(ring);
        if self.sum > 0 && self.oldest < first {
            self.oldest = (first..=bucket)
                .find(|b| self.counts[(b % ring) as usize] > 0)
                .unwrap_or(bucket);
        }
    }
}

/// One request against a token's window and, when the plan sets one, its
/// account's: admitted only if both have room, and then counted in both; a
/// request refused by either window consumes neither. The decision is the
/// one the headers show ([`binding`]).
pub(crate) fn check_both(
    config: &WindowConfig,
    token: (&mut WindowState, u32),
    account: Option<(&mut WindowState, u32)>,
    now_ms: u64,
) -> Decision {
    let (token_window, token_limit) = token;
    let Some((account_window, account_limit)) = account else {
        return token_window.check(config, token_limit, now_ms);
    };
    token_window.advance_to(config, now_ms);
    account_window.advance_to(config, now_ms);
    let allowed = token_window.has_room(token_limit) && account_window.has_room(account_limit);
    if allowed {
        token_window.count_one(config);
        account_window.count_one(config);
    }
    binding(
        token_window.decision(config, token_limit, now_ms, allowed),
        account_window.decision(config, account_limit, now_ms, allowed),
    )
}

/// Which of two windows' decisions the headers describe: when admitted, the
/// one with fewer requests remaining (the token's on a tie); when refused,
/// the window that refused, and if both did, the one that frees up last,
/// so that a client waiting as told is admitted.
pub(crate) fn binding(token: Decision, account: Decision) -> Decision {
    // A window refuses exactly when it has no request left.
    let refused = |d: &Decision| d.remaining == 0;
    if token.allowed {
        return if account.remaining < token.remaining {
            account
        } else {
            token
        };
    }
    match (refused(&token), refused(&account)) {
        (true, true) if account.reset_at_ms > token.reset_at_ms => account,
        (false, true) => account,
        _ => token,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    const MIN: u64 = 60_000;

    fn hour() -> WindowConfig {
        WindowConfig::default()
    }

    #[test]
    fn admits_exactly_the_limit_then_rejects() {
        let config = hour();
        let mut state = WindowState::new(&config);
        let t0 = 1_800_000_000_000;
        for i in 0..1000 {
            let d = state.check(&config, 1000, t0 + i);
            assert!(d.allowed);
            assert_eq!(d.remaining, 999 - i as u32);
        }
        let rejected = state.check(&config, 1000, t0 + 1000);
        assert!(!rejected.allowed);
        assert_eq!(rejected.remaining, 0);
        assert_eq!(state.counted(), 1000, "rejections do not count");
        // Everything sits in the bucket of t0; it leaves the ring 61 buckets later.
        let expected_reset_ms = (t0 / MIN + 61) * MIN;
        assert_eq!(rejected.reset_at_ms, expected_reset_ms);
        assert_eq!(rejected.reset_unix_secs(), expected_reset_ms / 1000);
        assert_eq!(
            rejected.retry_after_secs(),
            (expected_reset_ms - (t0 + 1000)).div_ceil(1000)
        );
    }

    #[test]
    fn capacity_returns_when_the_oldest_bucket_leaves() {
        let config = hour();
        let mut state = WindowState::new(&config);
        let t0 = 10 * HOUR_MS;
        assert!(state.check(&config, 2, t0).allowed);
        assert!(state.check(&config, 2, t0 + 30 * MIN).allowed);
        let blocked = state.check(&config, 2, t0 + 40 * MIN);
        assert!(!blocked.allowed);
        assert_eq!(blocked.reset_at_ms, t0 + 61 * MIN);
        assert!(!state.check(&config, 2, t0 + 61 * MIN - 1).allowed);
        let freed = state.check(&config, 2, t0 + 61 * MIN);
        assert!(freed.allowed);
        assert_eq!(freed.remaining, 0);
        // The next growth is when the t0 + 30 min request leaves.
        assert_eq!(freed.reset_at_ms, t0 + 91 * MIN);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let config = hour();
        let mut state = WindowState::new(&config);
        let t0 = 10 * HOUR_MS;
        assert!(state.check(&config, 1, t0).allowed);
        let d = state.check(&config, 1, t0 + 61 * MIN - 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs(), 1);
    }

    #[test]
    fn after_a_downgrade_reset_is_when_the_count_falls_under_the_new_limit() {
        let config = hour();
        let mut state = WindowState::new(&config);
        let t0 = 10 * HOUR_MS;
        // 3 requests in each of the first three minutes under a limit of 100.
        for minute in 0..3 {
            for _ in 0..3 {
                assert!(state.check(&config, 100, t0 + minute * MIN).allowed);
            }
        }
        // The limit drops to 4: 9 counted, so 6 must leave (two buckets).
        let d = state.check(&config, 4, t0 + 3 * MIN);
        assert!(!d.allowed);
        assert_eq!(d.reset_at_ms, t0 + (1 + 61) * MIN);
        // At that moment a request is admitted again.
        assert!(!state.check(&config, 4, t0 + 62 * MIN - 1).allowed);
        assert!(state.check(&config, 4, t0 + 62 * MIN).allowed);
    }

    #[test]
    fn zero_limit_never_admits_and_says_to_wait_a_window() {
        let config = hour();
        let mut state = WindowState::new(&config);
        let d = state.check(&config, 0, 5 * HOUR_MS);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs(), 3600);
    }

    #[test]
    fn lowering_the_limit_applies_at_once() {
        let config = hour();
        let mut state = WindowState::new(&config);
        for i in 0..10 {
            assert!(state.check(&config, 100, HOUR_MS + i).allowed);
        }
        let d = state.check(&config, 5, HOUR_MS + 20);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn idle_after_a_full_ring() {
        let config = hour();
        let mut state = WindowState::new(&config);
        assert!(state.is_idle(&config, HOUR_MS));
        state.check(&config, 10, HOUR_MS);
        assert!(!state.is_idle(&config, HOUR_MS + 60 * MIN));
        assert!(state.is_idle(&config, HOUR_MS + 61 * MIN));
    }

    #[test]
    fn clock_stepping_back_does_not_free_capacity() {
        let config = hour();
        let mut state = WindowState::new(&config);
        assert!(state.check(&config, 1, 10 * HOUR_MS).allowed);
        assert!(!state.check(&config, 1, 9 * HOUR_MS).allowed);
    }

    /// A window rebuilt from its export answers exactly like the original.
    #[test]
    fn export_and_restore_round_trip() {
        let config = hour();
        let mut original = WindowState::new(&config);
        for (i, minute) in [3u64, 3, 10, 40, 62, 62, 62, 90].iter().enumerate() {
            original.check(&config, 7 + i as u32 % 2, minute * MIN);
        }
        let exported = original.export(&config);
        assert!(exported.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            exported.iter().map(|&(_, c)| c).sum::<u32>(),
            original.counted()
        );
        let mut restored = WindowState::restore(&config, &exported);
        for minute in [90u64, 95, 100, 105, 121, 150] {
            let now = minute * MIN;
            assert_eq!(
                restored.check(&config, 7, now),
                original.check(&config, 7, now)
            );
        }
        // Buckets older than a ring behind the newest are dropped.
        let restored = WindowState::restore(&config, &[(1, 5), (100, 2)]);
        assert_eq!(restored.counted(), 2);
        assert_eq!(WindowState::restore(&config, &[]).counted(), 0);
    }

    #[test]
    fn invalid_layouts_are_refused() {
        assert!(WindowConfig::new(HOUR_MS, 0).is_err());
        assert!(WindowConfig::new(HOUR_MS, 7).is_err());
        assert!(WindowConfig::new(0, 1).is_err());
        assert!(WindowConfig::new(HOUR_MS, 60).is_ok());
    }

    #[test]
    fn decisions_and_configs_report_the_layout() {
        let config = WindowConfig::new(2 * HOUR_MS, 120).unwrap();
        assert_eq!(config.window_ms(), 2 * HOUR_MS);
        assert_eq!(config.buckets(), 120);
        assert_eq!(config.bucket_ms(), MIN);
        let d = WindowState::new(&config).check(&config, 5, 10 * HOUR_MS);
        assert_eq!((d.limit, d.now_ms, d.window_secs), (5, 10 * HOUR_MS, 7200));
    }

    /// The limit drops to exactly what is left when the oldest bucket leaves:
    /// that is not under the limit yet, so the reset is one bucket later.
    #[test]
    fn after_a_downgrade_to_a_bucket_boundary_reset_waits_for_the_next_bucket() {
        let config = hour();
        let mut state = WindowState::new(&config);
        let t0 = 10 * HOUR_MS;
        for minute in 0..3 {
            for _ in 0..3 {
                assert!(state.check(&config, 100, t0 + minute * MIN).allowed);
            }
        }
        // 9 counted; the first bucket's 3 leave at t0 + 61 min, leaving 6: not under 6.
        let d = state.check(&config, 6, t0 + 3 * MIN);
        assert!(!d.allowed);
        assert_eq!(d.reset_at_ms, t0 + (1 + 61) * MIN);
        assert!(!state.clone().check(&config, 6, t0 + 61 * MIN).allowed);
        assert!(state.check(&config, 6, t0 + 62 * MIN).allowed);
    }

    #[test]
    fn an_empty_window_frees_no_bucket() {
        let config = hour();
        let mut state = WindowState::new(&config);
        assert_eq!(state.bucket_that_frees_capacity(&config, 5), None);
        assert!(state.check(&config, 5, HOUR_MS).allowed);
        // Two hours later everything has left; a limit of 0 admits nothing.
        state.check(&config, 0, 3 * HOUR_MS);
        assert_eq!(state.counted(), 0);
        assert_eq!(state.bucket_that_frees_capacity(&config, 5), None);
    }

    /// Counts saturate at `u32::MAX` on restore: the older bucket adds nothing,
    /// so only the newest one's departure frees capacity.
    #[test]
    fn a_saturated_restore_resets_when_a_counted_bucket_leaves() {
        let config = hour();
        let mut state = WindowState::restore(&config, &[(100, u32::MAX), (90, 5)]);
        assert_eq!(state.counted(), u32::MAX);
        assert_eq!(state.export(&config), vec![(100, u32::MAX)]);
        let d = state.check(&config, u32::MAX, 100 * MIN);
        assert!(!d.allowed);
        assert_eq!(d.reset_at_ms, (100 + 61) * MIN);
    }

    /// A ring holds buckets `newest - B ..= newest`: the first of them is kept.
    #[test]
    fn restore_keeps_exactly_one_ring_behind_the_newest() {
        let config = hour();
        let state = WindowState::restore(&config, &[(39, 4), (40, 2), (100, 1)]);
        assert_eq!(state.counted(), 3);
        assert_eq!(state.export(&config), vec![(40, 2), (100, 1)]);
    }

    /// After an idle gap longer than the ring, `advance` clears the ring at
    /// once instead of walking every bucket of the gap (here about 10^15).
    #[test]
    fn a_long_idle_gap_is_skipped_in_constant_time() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // One-millisecond buckets.
            let config = WindowConfig::new(60, 60).unwrap();
            let mut state = WindowState::new(&config);
            assert!(state.check(&config, 1, 1).allowed);
            let d = state.check(&config, 1, 1 << 50);
            let _ = done.send((d.allowed, state.counted()));
        });
        let outcome = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a check after a long idle gap took over 10 s: the gap was walked");
        assert_eq!(outcome, (true, 1));
    }

    /// The exact reference: a log of admission times.
    struct SlidingLog {
        window_ms: u64,
        admitted: VecDeque<u64>,
    }

    impl SlidingLog {
        fn check(&mut self, limit: u32, now: u64) -> bool {
            while self
                .admitted
                .front()
                .is_some_and(|&t| t + self.window_ms <= now)
            {
                self.admitted.pop_front();
            }
            let allowed = self.admitted.len() < limit as usize;
            if allowed {
                self.admitted.push_back(now);
            }
            allowed
        }
    }

    fn count_in(times: &[u64], from_exclusive: u64, to_inclusive: u64) -> usize {
        times
            .iter()
            .filter(|&&t| t > from_exclusive && t <= to_inclusive)
            .count()
    }

    fn schedule(gaps: &[u64], start: u64) -> Vec<u64> {
        gaps.iter()
            .scan(start, |t, gap| {
                *t += gap;
                Some(*t)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Never too many in any rolling window; rejects only when the last W + g is full.
        #[test]
        fn never_exceeds_and_is_at_most_one_bucket_late(
            limit in 1u32..40,
            buckets in prop::sample::select(vec![1u32, 2, 4, 6, 10, 60]),
            gaps in prop::collection::vec(0u64..400_000, 1..600),
            start in HOUR_MS..10 * HOUR_MS,
        ) {
            let config = WindowConfig::new(HOUR_MS, buckets).unwrap();
            let mut state = WindowState::new(&config);
            let mut admitted = Vec::new();
            for t in schedule(&gaps, start) {
                let d = state.check(&config, limit, t);
                if d.allowed {
                    admitted.push(t);
                    // Every rolling window ending now holds at most `limit`.
                    prop_assert!(count_in(&admitted, t.saturating_sub(HOUR_MS), t) <= limit as usize);
                } else {
                    let late = HOUR_MS + config.bucket_ms();
                    prop_assert!(count_in(&admitted, t.saturating_sub(late), t) >= limit as usize);
                    prop_assert!(d.reset_at_ms > t);
                }
                prop_assert_eq!(d.remaining, limit - state.counted().min(limit));
            }
        }

        /// `reset_at_ms` is exactly when `Remaining` next grows (so a rejected
        /// client that waits until then is admitted, and not a millisecond
        /// earlier), also when the limit was just lowered to a bucket boundary:
        /// to what stays counted after the oldest k non-empty buckets leave.
        #[test]
        fn reset_is_exactly_when_remaining_grows(
            buckets in prop::sample::select(vec![1u32, 2, 4, 6, 10, 60]),
            steps in prop::collection::vec(
                (0u64..3 * MIN, 1u32..40, any::<bool>(), any::<prop::sample::Index>()),
                1..300,
            ),
            start in HOUR_MS..10 * HOUR_MS,
        ) {
            let config = WindowConfig::new(HOUR_MS, buckets).unwrap();
            let mut state = WindowState::new(&config);
            // What is counted at `t` if nothing more is admitted (limit 0 admits nothing).
            let counted_at = |state: &WindowState, t: u64| {
                let mut probe = state.clone();
                probe.check(&config, 0, t);
                probe.counted()
            };
            let mut t = start;
            for (gap, random_limit, at_boundary, k) in steps {
                t += gap;
                let mut limit = random_limit;
                if at_boundary {
                    let mut probe = state.clone();
                    probe.check(&config, 0, t);
                    let exported = probe.export(&config);
                    if exported.len() > 1 {
                        let k = 1 + k.index(exported.len() - 1);
                        limit = exported[k..].iter().map(|&(_, count)| count).sum();
                    }
                }
                let d = state.check(&config, limit, t);
                prop_assert!(d.reset_at_ms > t);
                let remaining_at = |t: u64| limit.saturating_sub(counted_at(&state, t));
                prop_assert_eq!(remaining_at(d.reset_at_ms - 1), d.remaining);
                prop_assert!(remaining_at(d.reset_at_ms) > d.remaining);
            }
        }

        /// Sustained random traffic: at least 98 % of an exact log's admissions.
        ///
        /// The run lasts until the log has admitted 5,000 requests, whatever the
        /// limit. A fixed 300 hours gave a limit of 1 only ~220 admissions, too
        /// few for the ratio: it fell to 97.6 % for 0.7 % of seeds (so about one
        /// `cargo test` in 80 failed). At 5,000 the worst of 7,200 seeds was 98.8 %.
        #[test]
        fn admits_at_least_98_percent_of_an_exact_log(
            limit in 1u32..40,
            demand_factor in 2u64..6,
            seed in any::<u64>(),
        ) {
            let config = WindowConfig::default();
            let mut state = WindowState::new(&config);
            let mut log = SlidingLog { window_ms: HOUR_MS, admitted: VecDeque::new() };
            // Random gaps averaging HOUR / (demand_factor * limit): the limiter is the bottleneck.
            let mean_gap = HOUR_MS / (demand_factor * u64::from(limit));
            let mut rng = seed | 1;
            let mut t = HOUR_MS;
            let (mut ours, mut exact) = (0u64, 0u64);
            while exact < 5_000 {
                // xorshift64: deterministic for a given seed, so failures reproduce.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                t += rng % (2 * mean_gap) + 1;
                ours += u64::from(state.check(&config, limit, t).allowed);
                exact += u64::from(log.check(limit, t));
            }
            prop_assert!(ours * 100 >= exact * 98, "ours {} exact {}", ours, exact);
        }
    }
}
