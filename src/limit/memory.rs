//! The in-process [`RateLimitStore`]: one window per token in a sharded map.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::window::{Decision, WindowConfig, WindowState, check_both};
use crate::token::{RandomIdState, TokenId};

const SHARDS: usize = 32;

/// First word of a saved snapshot (and its format version).
const SNAPSHOT_HEADER: &str = "tokengate-windows v1";
/// The key prefix of an account's window in a snapshot.
const ACCOUNT_KEY: &str = "account:";

type Shard = Mutex<HashMap<TokenId, TokenEntry, RandomIdState>>;

/// A token's window, and what it counted since the last usage flush.
///
/// A window is keyed by the id of the token that opened it; a token rotated
/// from it shares it (one window per rotation lineage, so a rotation never
/// grants extra requests), and its usage is tallied in `shared_usage`.
struct TokenEntry {
    window: WindowState,
    usage: Tally,
    shared_usage: Vec<(TokenId, Tally)>,
}

impl TokenEntry {
    fn new(config: &WindowConfig) -> Self {
        Self {
            window: WindowState::new(config),
            usage: Tally::default(),
            shared_usage: Vec::new(),
        }
    }

    /// Counts a request of `token` (the window's own, or one sharing it).
    fn count(&mut self, window: &TokenId, token: &TokenId, allowed: bool) {
        if token == window {
            return self.usage.count(allowed);
        }
        match self.shared_usage.iter_mut().find(|(id, _)| id == token) {
            Some((_, tally)) => tally.count(allowed),
            None => {
                let mut tally = Tally::default();
                tally.count(allowed);
                self.shared_usage.push((*token, tally));
            }
        }
    }

    fn has_usage(&self) -> bool {
        !self.usage.is_empty() || !self.shared_usage.is_empty()
    }
}

/// Requests admitted and refused by the limit, not yet flushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) admitted: u64,
    pub(crate) limited: u64,
}

impl Tally {
    pub(crate) fn count(&mut self, allowed: bool) {
        if allowed {
            self.admitted += 1;
        } else {
            self.limited += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.admitted == 0 && self.limited == 0
    }
}
// Account ids come from the database, but they are the host's strings: keep
// std's keyed SipHash for them.
type AccountShard = Mutex<HashMap<Box<str>, WindowState>>;

/// Sliding windows for one process, in 32 mutex-guarded shards.
///
/// A check locks one shard for a few dozen nanoseconds and never across an
/// `.await`, so checks on one token are atomic. State exists only for
/// authenticated token ids (tokengate minted them from `OsRng`, so they also
/// serve as their own hash) and is dropped once idle for a full window:
/// memory is bounded by the number of tokens active in the last hour.
pub(crate) struct MemoryRateLimiter {
    config: WindowConfig,
    shards: Box<[Shard]>,
    accounts: Box<[AccountShard]>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("config", &self.config)
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new(WindowConfig::default())
    }
}

impl MemoryRateLimiter {
    /// An empty limiter with the given window layout.
    pub(crate) fn new(config: WindowConfig) -> Self {
        Self {
            config,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            accounts: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Checks one request for `token` now.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn check_now(&self, token: &TokenId, limit: u32) -> Decision {
        self.check_at(token, limit, crate::clock::monotonic_unix_ms())
    }

    /// Checks one request for `token` at `now_ms` (Unix milliseconds).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn check_at(&self, token: &TokenId, limit: u32, now_ms: u64) -> Decision {
        self.check_both_at(token, token, limit, None, now_ms)
    }

    /// Checks one request of `token` in `window` (its own id, or the window
    /// it shares with the token it was rotated from) against `limit` and, with
    /// `Some((account, ceiling))`, against the account's shared ceiling too:
    /// admitted only if both windows have room, counted in both or neither.
    /// Both locks are held together, always the token's first, so the pair
    /// is atomic against every other check.
    pub(crate) fn check_both_at(
        &self,
        window: &TokenId,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
        now_ms: u64,
    ) -> Decision {
        let config = &self.config;
        let mut tokens = self.shard(window).lock().unwrap_or_else(|e| e.into_inner());
        let entry = tokens
            .entry(*window)
            .or_insert_with(|| TokenEntry::new(config));
        let Some((account, ceiling)) = account else {
            let decision = entry.window.check(config, limit, now_ms);
            entry.count(window, token, decision.allowed);
            return decision;
        };
        let mut accounts = self
            .account_shard(account)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let account_window = match accounts.get_mut(account) {
            Some(window) => window,
            None => accounts
                .entry(account.into())
                .or_insert_with(|| WindowState::new(config)),
        };
        let decision = check_both(
            config,
            (&mut entry.window, limit),
            Some((account_window, ceiling)),
            now_ms,
        );
        entry.count(window, token, decision.allowed);
        decision
    }

    /// Takes the requests counted per token since the last call.
    pub(crate) fn take_usage(&self) -> Vec<(TokenId, Tally)> {
        let mut taken = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (token, entry) in shard.iter_mut() {
                if !entry.usage.is_empty() {
                    taken.push((*token, std::mem::take(&mut entry.usage)));
                }
                taken.append(&mut entry.shared_usage);
            }
        }
        taken
    }

    /// Number of tokens with state (accounts not counted).
    pub(crate) fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Drops the state of tokens and accounts idle at `now_ms` (a token's
    /// uncounted usage is kept until flushed); returns how many windows were
    /// dropped.
    pub(crate) fn evict_idle_at(&self, now_ms: u64) -> usize {
        fn evict<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
            shards: &[Mutex<HashMap<K, V, S>>],
            idle: impl Fn(&V) -> bool,
        ) -> usize {
            let mut dropped = 0;
            for shard in shards {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                let before = shard.len();
                shard.retain(|_, value| !idle(value));
                dropped += before - shard.len();
                if shard.capacity() > 64 && shard.capacity() > 4 * shard.len() {
                    shard.shrink_to_fit();
                }
            }
            dropped
        }
        let config = &self.config;
        evict(&self.shards, |entry: &TokenEntry| {
            !entry.has_usage() && entry.window.is_idle(config, now_ms)
        }) + evict(&self.accounts, |window: &WindowState| {
            window.is_idle(config, now_ms)
        })
    }

    /// Every window that is not idle at `now_ms`, as text that
    /// [`restore_snapshot`](Self::restore_snapshot) reads back: a header line
    /// `tokengate-windows v1 <bucket ms>`, then one line per window,
    /// `<key> <bucket>:<count> ...` (absolute bucket numbers, so the windows
    /// move on while the process is down). A key is a token id, or
    /// `account:` and the base64url of an account id.
    pub(crate) fn snapshot_at(&self, now_ms: u64) -> String {
        let mut text = format!("{SNAPSHOT_HEADER} {}\n", self.config.bucket_ms());
        let mut line = |key: String, state: &WindowState| {
            if state.is_idle(&self.config, now_ms) {
                return;
            }
            text.push_str(&key);
            for (bucket, count) in state.export(&self.config) {
                text.push_str(&format!(" {bucket}:{count}"));
            }
            text.push('\n');
        };
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (token, entry) in shard.iter() {
                line(token.to_string(), &entry.window);
            }
        }
        for shard in self.accounts.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (account, state) in shard.iter() {
                line(
                    format!(
                        "{ACCOUNT_KEY}{}",
                        URL_SAFE_NO_PAD.encode(account.as_bytes())
                    ),
                    state,
                );
            }
        }
        text
    }

    /// Loads windows saved by [`snapshot_at`](Self::snapshot_at), adding to
    /// any a token or account already has (so a restore can only make the
    /// limiter stricter). Returns how many windows were restored; unreadable
    /// lines, a different bucket width and windows already idle at `now_ms`
    /// are skipped.
    pub(crate) fn restore_snapshot(&self, text: &str, now_ms: u64) -> usize {
        let mut lines = text.lines();
        let header = format!("{SNAPSHOT_HEADER} {}", self.config.bucket_ms());
        if lines.next() != Some(header.as_str()) {
            return 0;
        }
        let mut restored = 0;
        for line in lines {
            let mut fields = line.split(' ');
            let Some(key) = fields.next() else {
                continue;
            };
            let buckets: Option<Vec<(u64, u32)>> = fields
                .map(|field| {
                    let (bucket, count) = field.split_once(':')?;
                    Some((bucket.parse().ok()?, count.parse().ok()?))
                })
                .collect();
            let Some(buckets) = buckets else {
                continue;
            };
            if WindowState::restore(&self.config, &buckets).is_idle(&self.config, now_ms) {
                continue;
            }
            let merged = |current: Option<&WindowState>| {
                let mut all = buckets.clone();
                all.extend(current.map(|c| c.export(&self.config)).unwrap_or_default());
                WindowState::restore(&self.config, &all)
            };
            if let Some(encoded) = key.strip_prefix(ACCOUNT_KEY) {
                let Some(account) = URL_SAFE_NO_PAD
                    .decode(encoded)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                else {
                    continue;
                };
                let mut shard = self
                    .account_shard(&account)
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let state = merged(shard.get(account.as_str()));
                shard.insert(account.into(), state);
            } else {
                let Ok(token) = key.parse::<TokenId>() else {
                    continue;
                };
                let mut shard = self.shard(&token).lock().unwrap_or_else(|e| e.into_inner());
                let window = merged(shard.get(&token).map(|entry| &entry.window));
                let entry = shard
                    .entry(token)
                    .or_insert_with(|| TokenEntry::new(&self.config));
                entry.window = window;
            }
            restored += 1;
        }
        restored
    }

    fn account_shard(&self, account: &str) -> &AccountShard {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let hash = SEED.get_or_init(Default::default).hash_one(account);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a hash: whichever bits remain pick the shard"
        )]
        &self.accounts[hash as usize % SHARDS]
    }

    fn shard(&self, token: &TokenId) -> &Shard {
        // Byte 8 is random and independent of the bytes the map hashes.
        &self.shards[token.as_bytes()[8] as usize % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limit::window::HOUR_MS;

    #[test]
    fn tokens_have_independent_windows() {
        let limiter = MemoryRateLimiter::default();
        let (a, b) = (TokenId::random(), TokenId::random());
        assert!(limiter.check_at(&a, 1, HOUR_MS).allowed);
        assert!(!limiter.check_at(&a, 1, HOUR_MS).allowed);
        assert!(limiter.check_at(&b, 1, HOUR_MS).allowed);
        assert_eq!(limiter.tracked(), 2);
    }

    /// Saved at shutdown and restored at start, every window keeps counting:
    /// a restart does not hand out a fresh hour.
    #[test]
    fn snapshots_restore_every_active_window() {
        let limiter = MemoryRateLimiter::default();
        let (busy, idle) = (TokenId::random(), TokenId::random());
        for _ in 0..3 {
            limiter.check_at(&busy, 3, HOUR_MS + 10 * 60_000);
        }
        limiter.check_at(&idle, 3, 0);
        let now = HOUR_MS + 20 * 60_000;
        let text = limiter.snapshot_at(now);
        assert_eq!(text.lines().count(), 2, "{text}");

        let restarted = MemoryRateLimiter::default();
        assert_eq!(restarted.restore_snapshot(&text, now + 1000), 1);
        let decision = restarted.check_at(&busy, 3, now + 1000);
        assert!(!decision.allowed);
        assert_eq!(
            decision.reset_at_ms,
            limiter.check_at(&busy, 3, now + 1000).reset_at_ms
        );
        // Restoring again adds: never more lenient.
        let other = MemoryRateLimiter::default();
        other.check_at(&busy, 10, now);
        other.restore_snapshot(&text, now);
        assert_eq!(other.check_at(&busy, 10, now).remaining, 5);
        // Another layout, or garbage, restores nothing.
        let minutes = MemoryRateLimiter::new(WindowConfig::new(HOUR_MS, 120).unwrap());
        assert_eq!(minutes.restore_snapshot(&text, now), 0);
        assert_eq!(restarted.restore_snapshot("garbage\nmore", now), 0);
        let broken = text.replace(':', "-");
        assert_eq!(
            MemoryRateLimiter::default().restore_snapshot(&broken, now),
            0
        );
    }

    /// A token rotated from another counts in its window; usage stays per token.
    #[test]
    fn a_shared_window_counts_both_tokens_and_tallies_each() {
        let limiter = MemoryRateLimiter::default();
        let (old, new) = (TokenId::random(), TokenId::random());
        let now = 1_800_000_000_000;
        for _ in 0..6 {
            assert!(limiter.check_both_at(&old, &old, 10, None, now).allowed);
        }
        for _ in 0..4 {
            assert!(limiter.check_both_at(&old, &new, 10, None, now).allowed);
        }
        assert!(!limiter.check_both_at(&old, &new, 10, None, now).allowed);
        assert!(!limiter.check_both_at(&old, &old, 10, None, now).allowed);
        assert_eq!(limiter.tracked(), 1);
        let mut usage = limiter.take_usage();
        usage.sort_by_key(|(_, tally)| tally.admitted);
        let tally = |admitted, limited| Tally { admitted, limited };
        assert_eq!(usage, [(new, tally(4, 1)), (old, tally(6, 1))]);
        assert!(limiter.take_usage().is_empty());
    }

    #[test]
    fn idle_tokens_are_evicted() {
        let limiter = MemoryRateLimiter::default();
        for _ in 0..100 {
            limiter.check_at(&TokenId::random(), 10, HOUR_MS);
        }
        let active = TokenId::random();
        limiter.check_at(&active, 10, HOUR_MS + 30 * 60_000);
        assert_eq!(limiter.evict_idle_at(HOUR_MS + 30 * 60_000), 0);
        // Usage not yet flushed keeps a window; flushed, it goes.
        assert_eq!(limiter.evict_idle_at(HOUR_MS + 61 * 60_000), 0);
        assert_eq!(limiter.take_usage().len(), 101);
        assert_eq!(limiter.evict_idle_at(HOUR_MS + 61 * 60_000), 100);
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn racing_threads_admit_exactly_the_remaining_capacity() {
        let limiter = Arc::new(MemoryRateLimiter::default());
        let token = TokenId::random();
        let now = 5 * HOUR_MS;
        // Use 300 of 1000 first, so 700 remain.
        for _ in 0..300 {
            assert!(limiter.check_at(&token, 1000, now).allowed);
        }
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    (0..250)
                        .filter(|_| limiter.check_at(&token, 1000, now).allowed)
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 700);
    }

    /// Two tokens of one account race: token limit 10, account ceiling 15,
    /// 40 requests at once → exactly 15 admitted, neither token over 10.
    #[test]
    fn the_account_ceiling_is_exact_under_concurrency() {
        let limiter = Arc::new(MemoryRateLimiter::default());
        let tokens = [TokenId::random(), TokenId::random()];
        let now = 7 * HOUR_MS;
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let limiter = Arc::clone(&limiter);
                let token = tokens[i % 2];
                std::thread::spawn(move || {
                    let decision =
                        limiter.check_both_at(&token, &token, 10, Some(("acct", 15)), now);
                    (i % 2, decision.allowed)
                })
            })
            .collect();
        let mut admitted = [0, 0];
        for thread in threads {
            let (which, allowed) = thread.join().unwrap();
            admitted[which] += usize::from(allowed);
        }
        assert_eq!(admitted[0] + admitted[1], 15, "{admitted:?}");
        assert!(admitted.iter().all(|&n| n <= 10), "{admitted:?}");
        // The account's window also survives a restart.
        let restarted = MemoryRateLimiter::default();
        restarted.restore_snapshot(&limiter.snapshot_at(now), now);
        let id = TokenId::random();
        assert!(
            !restarted
                .check_both_at(&id, &id, 10, Some(("acct", 15)), now)
                .allowed
        );
        assert!(
            restarted
                .check_both_at(&id, &id, 10, Some(("other acct", 15)), now)
                .allowed
        );
    }
}
