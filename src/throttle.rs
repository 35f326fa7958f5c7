//! Abuse resistance on the slow path: a short negative cache for token ids that
//! cannot succeed, and a throttle on failed argon2 verifications.
//!
//! * A well-formed token with an unknown, revoked or expired id costs one
//!   indexed lookup, then nothing for `ttl` (the id is remembered).
//! * Guessed secrets for a known token id cost at most `max_failures` argon2
//!   verifications per `window` **per client address**; further uncached
//!   attempts from that address on that id are answered 429 at once. Token ids
//!   are public (they are in every list and log), so keying on the id alone
//!   would let anyone who saw one lock its owner out whenever the token is not
//!   cached (after a restart, on a new instance). The owner, from another
//!   address, keeps its own allowance.
//! * Across all addresses an id gets `PER_ID_CEILING × max_failures` failures
//!   per window, which bounds the CPU a distributed guesser can spend on one
//!   id; past that the id is throttled for everyone until the window ends.
//! * Without a client address (an embedder that does not provide
//!   `ConnectInfo`, or every client behind one reverse proxy) all attempts
//!   share one allowance per id: the per-id behaviour.
//! * The cached token of a client that already verified is never affected
//!   (the cache is consulted first).

use std::collections::HashMap;
use std::net::IpAddr;
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
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
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
        entries.insert(id, now_ms.saturating_add(self.ttl_ms));
    }

    pub(crate) fn sweep(&self, now_ms: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, &mut until| now_ms < until);
    }
}

/// How many times one address's allowance an id gets across all addresses.
const PER_ID_CEILING: u32 = 10;

/// Where an attempt came from, coarsened so that one client cannot mint
/// fresh allowances: an IPv6 client usually holds a whole /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Unknown,
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Source {
    pub(crate) fn of(address: Option<IpAddr>) -> Self {
        match address.map(|a| a.to_canonical()) {
            None => Source::Unknown,
            Some(IpAddr::V4(v4)) => Source::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Source::V6Prefix(prefix)
            }
        }
    }
}

/// One fixed window of counted failures.
#[derive(Clone, Copy)]
struct Window {
    started_ms: u64,
    count: u32,
}

impl Window {
    fn ends_ms(&self, window_ms: u64) -> u64 {
        self.started_ms.saturating_add(window_ms)
    }

    /// Seconds to wait if this window's `limit` is used up at `now_ms`.
    fn blocked_for(&self, limit: u32, window_ms: u64, now_ms: u64) -> Option<u64> {
        let ends = self.ends_ms(window_ms);
        (self.count >= limit && now_ms < ends).then(|| (ends - now_ms).div_ceil(1000).max(1))
    }
}

/// Failed verifications per (token id, client address) and per token id, in
/// fixed windows.
pub(crate) struct FailureThrottle {
    max_failures: u32,
    window_ms: u64,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    // Keys are chosen by clients: std's randomly keyed SipHash.
    by_source: HashMap<(TokenId, Source), Window>,
    by_id: HashMap<TokenId, Window>,
}

impl Failures {
    fn retain_live(&mut self, window_ms: u64, now_ms: u64) {
        self.by_source.retain(|_, w| now_ms < w.ends_ms(window_ms));
        self.by_id.retain(|_, w| now_ms < w.ends_ms(window_ms));
    }
}

impl FailureThrottle {
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1),
            failures: Mutex::default(),
        }
    }

    fn id_ceiling(&self, source: Source) -> u32 {
        match source {
            // Without addresses the id's allowance is the only one.
            Source::Unknown => self.max_failures,
            _ => self.max_failures.saturating_mul(PER_ID_CEILING),
        }
    }

    /// Seconds to wait if `source` (or everyone) has used up its attempts on
    /// `id`, without counting one.
    pub(crate) fn blocked_for(&self, id: &TokenId, source: Source, now_ms: u64) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let own = failures
            .by_source
            .get(&(*id, source))
            .and_then(|w| w.blocked_for(self.max_failures, self.window_ms, now_ms));
        let everyone = failures
            .by_id
            .get(id)
            .and_then(|w| w.blocked_for(self.id_ceiling(source), self.window_ms, now_ms));
        own.max(everyone)
    }

    /// Takes one verification attempt for `id` from `source`, counted as a
    /// failure until [`succeeded`](Self::succeeded) refunds it. Counting before
    /// the work means concurrent or abandoned attempts cannot slip past the
    /// limit. `Err(seconds to wait)` when the attempts are used up.
    pub(crate) fn try_begin(&self, id: TokenId, source: Source, now_ms: u64) -> Result<(), u64> {
        let window_ms = self.window_ms;
        let ceiling = self.id_ceiling(source);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.by_source.len() >= MAX_TRACKED
            && !failures.by_source.contains_key(&(id, source))
        {
            failures.retain_live(window_ms, now_ms);
            if failures.by_source.len() >= MAX_TRACKED {
                // Mostly live entries: an attack with many ids or addresses.
                // Forgetting them is safe: the argon2 semaphore still bounds the work.
                failures.by_source.clear();
                failures.by_id.clear();
            }
        }
        let fresh = Window {
            started_ms: now_ms,
            count: 0,
        };
        let mut own = *failures.by_source.get(&(id, source)).unwrap_or(&fresh);
        let mut everyone = *failures.by_id.get(&id).unwrap_or(&fresh);
        for window in [&mut own, &mut everyone] {
            if now_ms >= window.ends_ms(window_ms) {
                *window = fresh;
            }
        }
        let wait = own
            .blocked_for(self.max_failures, window_ms, now_ms)
            .max(everyone.blocked_for(ceiling, window_ms, now_ms));
        if let Some(wait) = wait {
            return Err(wait);
        }
        own.count += 1;
        everyone.count += 1;
        failures.by_source.insert((id, source), own);
        failures.by_id.insert(id, everyone);
        Ok(())
    }

    /// The attempt verified: it does not count against the id or the source.
    pub(crate) fn succeeded(&self, id: &TokenId, source: Source) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(window) = failures.by_source.get_mut(&(*id, source)) {
            window.count = window.count.saturating_sub(1);
        }
        if let Some(window) = failures.by_id.get_mut(id) {
            window.count = window.count.saturating_sub(1);
        }
    }

    pub(crate) fn sweep(&self, now_ms: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain_live(self.window_ms, now_ms);
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
        let from = Source::of(Some([192, 0, 2, 1].into()));
        for t in [0, 10, 20] {
            assert_eq!(throttle.try_begin(id, from, t), Ok(()));
        }
        assert_eq!(throttle.blocked_for(&id, from, 1_000), Some(59));
        assert_eq!(throttle.try_begin(id, from, 1_000), Err(59));
        assert_eq!(throttle.try_begin(id, from, 59_999), Err(1));
        assert_eq!(throttle.try_begin(id, from, 60_000), Ok(()));
        assert_eq!(throttle.try_begin(TokenId::random(), from, 1_000), Ok(()));
    }

    #[test]
    fn successful_attempts_are_refunded() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let id = TokenId::random();
        let from = Source::Unknown;
        for t in 0..10 {
            assert_eq!(throttle.try_begin(id, from, t), Ok(()));
            throttle.succeeded(&id, from);
        }
        assert_eq!(throttle.try_begin(id, from, 11), Ok(()));
        assert_eq!(throttle.try_begin(id, from, 12), Ok(()));
        assert!(throttle.try_begin(id, from, 13).is_err());
    }

    /// Someone who knows a token id cannot use up its owner's allowance.
    #[test]
    fn a_guesser_does_not_block_other_addresses() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let id = TokenId::random();
        let guesser = Source::of(Some([198, 51, 100, 7].into()));
        let owner = Source::of(Some([203, 0, 113, 9].into()));
        for t in 0..2 {
            assert_eq!(throttle.try_begin(id, guesser, t), Ok(()));
        }
        for t in 2..100 {
            assert!(throttle.try_begin(id, guesser, t).is_err());
        }
        assert_eq!(throttle.blocked_for(&id, owner, 100), None);
        assert_eq!(throttle.try_begin(id, owner, 100), Ok(()));
    }

    /// Many addresses together get `PER_ID_CEILING` allowances, then the id is
    /// throttled for everyone; without addresses there is one allowance.
    #[test]
    fn an_id_has_a_ceiling_across_addresses() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let id = TokenId::random();
        let mut admitted = 0;
        for host in 0..=255u8 {
            for _ in 0..3 {
                admitted += u32::from(
                    throttle
                        .try_begin(id, Source::of(Some([10, 0, 0, host].into())), 5)
                        .is_ok(),
                );
            }
        }
        assert_eq!(admitted, 2 * PER_ID_CEILING);
        let newcomer = Source::of(Some([10, 9, 9, 9].into()));
        assert_eq!(throttle.blocked_for(&id, newcomer, 1_000), Some(60));

        let other = TokenId::random();
        assert_eq!(throttle.try_begin(other, Source::Unknown, 0), Ok(()));
        assert_eq!(throttle.try_begin(other, Source::Unknown, 0), Ok(()));
        assert_eq!(throttle.try_begin(other, Source::Unknown, 0), Err(60));
    }

    /// An IPv6 client's whole /64 is one source; IPv4-mapped addresses are IPv4.
    #[test]
    fn sources_are_coarsened() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(Some(a)), Source::of(Some(b)));
        assert_ne!(Source::of(Some(a)), Source::of(Some(c)));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            Source::of(Some(mapped)),
            Source::of(Some([192, 0, 2, 1].into()))
        );
        assert_eq!(Source::of(None), Source::Unknown);
    }
}
