//! Abuse resistance on the slow path: a short negative cache for token ids that
//! cannot succeed, and a per-id throttle on failed argon2 verifications.
//!
//! * A well-formed token with an unknown, revoked or expired id costs one
//!   indexed lookup, then nothing for `ttl` (the id is remembered).
//! * A leaked token id with guessed secrets costs at most `max_failures`
//!   argon2 verifications per `window`; further uncached attempts on that id
//!   are answered 429 at once. The owner's cached token is never affected
//!   (the cache is consulted first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::token::TokenId;

/// Bound on remembered ids; beyond it the oldest-expiring entries are dropped.
const MAX_TRACKED: usize = 100_000;

/// Ids known not to authenticate, for a short time.
pub(crate) struct NegativeCache {
    ttl_ms: u64,
    capacity: usize,
    // Keys can be chosen by an attacker (any well-formed token), so this map
    // keeps std's randomly keyed SipHash.
    entries: Mutex<HashMap<TokenId, u64>>,
}

impl NegativeCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as u64,
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    pub(crate) fn contains(&self, id: &TokenId, now_ms: u64) -> bool {
        if self.ttl_ms == 0 {
            return false;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(id).is_some_and(|&until| now_ms < until)
    }

    pub(crate) fn insert(&self, id: TokenId, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, &mut until| now_ms < until);
            if entries.len() * 4 >= self.capacity * 3 {
                // Still mostly live entries: an attack with many ids. Forgetting
                // them costs one lookup each, which is what they cost anyway,
                // and clearing (not trimming) keeps this scan rare.
                entries.clear();
            }
        }
        entries.insert(id, now_ms + self.ttl_ms);
    }

    pub(crate) fn sweep(&self, now_ms: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, &mut until| now_ms < until);
    }
}

/// Failed verifications per token id, in fixed windows.
pub(crate) struct FailureThrottle {
    max_failures: u32,
    window_ms: u64,
    failures: Mutex<HashMap<TokenId, (u64, u32)>>,
}

impl FailureThrottle {
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window_ms: (window.as_millis() as u64).max(1),
            failures: Mutex::default(),
        }
    }

    /// Seconds to wait if `id` has used up its attempts, without counting one.
    pub(crate) fn blocked_for(&self, id: &TokenId, now_ms: u64) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let &(started, count) = failures.get(id)?;
        let ends = started + self.window_ms;
        (count >= self.max_failures && now_ms < ends).then(|| (ends - now_ms).div_ceil(1000).max(1))
    }

    /// Takes one verification attempt for `id`, counted as a failure until
    /// [`succeeded`](Self::succeeded) refunds it. Counting before the work means
    /// concurrent or abandoned attempts cannot slip past the limit.
    /// `Err(seconds to wait)` when the attempts are used up.
    pub(crate) fn try_begin(&self, id: TokenId, now_ms: u64) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&id) {
            let window = self.window_ms;
            failures.retain(|_, (started, _)| now_ms < *started + window);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let slot = failures.entry(id).or_insert((now_ms, 0));
        let ends = slot.0 + self.window_ms;
        if now_ms >= ends {
            *slot = (now_ms, 0);
        } else if slot.1 >= self.max_failures {
            return Err((ends - now_ms).div_ceil(1000).max(1));
        }
        slot.1 += 1;
        Ok(())
    }

    /// The attempt verified: it does not count against the id.
    pub(crate) fn succeeded(&self, id: &TokenId) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = failures.get_mut(id) {
            slot.1 = slot.1.saturating_sub(1);
        }
    }

    pub(crate) fn sweep(&self, now_ms: u64) {
        let window = self.window_ms;
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, (started, _)| now_ms < *started + window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_entries_expire() {
        let cache = NegativeCache::new(Duration::from_secs(30), 10);
        let id = TokenId::random();
        cache.insert(id, 1_000);
        assert!(cache.contains(&id, 30_999));
        assert!(!cache.contains(&id, 31_000));
    }

    #[test]
    fn negative_cache_is_bounded() {
        let cache = NegativeCache::new(Duration::from_secs(30), 10);
        for _ in 0..1000 {
            cache.insert(TokenId::random(), 0);
        }
        assert!(cache.entries.lock().unwrap().len() <= 10);
    }

    #[test]
    fn throttle_blocks_after_the_limit_until_the_window_ends() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let id = TokenId::random();
        for t in [0, 10, 20] {
            assert_eq!(throttle.try_begin(id, t), Ok(()));
        }
        assert_eq!(throttle.try_begin(id, 1_000), Err(59));
        assert_eq!(throttle.try_begin(id, 59_999), Err(1));
        assert_eq!(throttle.try_begin(id, 60_000), Ok(()));
        assert_eq!(throttle.try_begin(TokenId::random(), 1_000), Ok(()));
    }

    #[test]
    fn successful_attempts_are_refunded() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let id = TokenId::random();
        for t in 0..10 {
            assert_eq!(throttle.try_begin(id, t), Ok(()));
            throttle.succeeded(&id);
        }
        assert_eq!(throttle.try_begin(id, 11), Ok(()));
        assert_eq!(throttle.try_begin(id, 12), Ok(()));
        assert!(throttle.try_begin(id, 13).is_err());
    }
}
