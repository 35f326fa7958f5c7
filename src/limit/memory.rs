//! The in-process [`RateLimitStore`]: one window per token in a sharded map.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::window::{Decision, WindowConfig, WindowState};
use super::{LimitError, RateLimitStore};
use crate::clock::monotonic_unix_ms;
use crate::token::{RandomIdState, TokenId};

const SHARDS: usize = 32;

/// First word of a saved snapshot (and its format version).
const SNAPSHOT_HEADER: &str = "tokengate-windows v1";

type Shard = Mutex<HashMap<TokenId, WindowState, RandomIdState>>;

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
        }
    }

    /// Checks one request for `token` now.
    pub(crate) fn check_now(&self, token: &TokenId, limit: u32) -> Decision {
        self.check_at(token, limit, monotonic_unix_ms())
    }

    /// Checks one request for `token` at `now_ms` (Unix milliseconds).
    pub(crate) fn check_at(&self, token: &TokenId, limit: u32, now_ms: u64) -> Decision {
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        shard
            .entry(*token)
            .or_insert_with(|| WindowState::new(&self.config))
            .check(&self.config, limit, now_ms)
    }

    /// Number of tokens with state.
    pub(crate) fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Drops the state of tokens idle at `now_ms`; returns how many were dropped.
    pub(crate) fn evict_idle_at(&self, now_ms: u64) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, state| !state.is_idle(&self.config, now_ms));
            dropped += before - shard.len();
            if shard.capacity() > 64 && shard.capacity() > 4 * shard.len() {
                shard.shrink_to_fit();
            }
        }
        dropped
    }

    /// Every window that is not idle at `now_ms`, as text that
    /// [`restore_snapshot`](Self::restore_snapshot) reads back: a header line
    /// `tokengate-windows v1 <bucket ms>`, then one line per token,
    /// `<token id> <bucket>:<count> ...` (absolute bucket numbers, so the
    /// windows move on while the process is down).
    pub(crate) fn snapshot_at(&self, now_ms: u64) -> String {
        let mut text = format!("{SNAPSHOT_HEADER} {}\n", self.config.bucket_ms());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (token, state) in shard.iter() {
                if state.is_idle(&self.config, now_ms) {
                    continue;
                }
                text.push_str(&token.to_string());
                for (bucket, count) in state.export(&self.config) {
                    text.push_str(&format!(" {bucket}:{count}"));
                }
                text.push('\n');
            }
        }
        text
    }

    /// Loads windows saved by [`snapshot_at`](Self::snapshot_at), adding to
    /// any a token already has (so a restore can only make the limiter
    /// stricter). Returns how many tokens were restored; unreadable lines, a
    /// different bucket width and windows already idle at `now_ms` are skipped.
    pub(crate) fn restore_snapshot(&self, text: &str, now_ms: u64) -> usize {
        let mut lines = text.lines();
        let header = format!("{SNAPSHOT_HEADER} {}", self.config.bucket_ms());
        if lines.next() != Some(header.as_str()) {
            return 0;
        }
        let mut restored = 0;
        for line in lines {
            let mut fields = line.split(' ');
            let Some(Ok(token)) = fields.next().map(str::parse::<TokenId>) else {
                continue;
            };
            let buckets: Option<Vec<(u64, u32)>> = fields
                .map(|field| {
                    let (bucket, count) = field.split_once(':')?;
                    Some((bucket.parse().ok()?, count.parse().ok()?))
                })
                .collect();
            let Some(mut buckets) = buckets else {
                continue;
            };
            let saved = WindowState::restore(&self.config, &buckets);
            if saved.is_idle(&self.config, now_ms) {
                continue;
            }
            let mut shard = self.shard(&token).lock().unwrap_or_else(|e| e.into_inner());
            let state = match shard.get(&token) {
                Some(current) => {
                    buckets.extend(current.export(&self.config));
                    WindowState::restore(&self.config, &buckets)
                }
                None => saved,
            };
            shard.insert(token, state);
            restored += 1;
        }
        restored
    }

    fn shard(&self, token: &TokenId) -> &Shard {
        // Byte 8 is random and independent of the bytes the map hashes.
        &self.shards[token.as_bytes()[8] as usize % SHARDS]
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimiter {
    async fn check(&self, token: &TokenId, limit: u32) -> Result<Decision, LimitError> {
        Ok(self.check_now(token, limit))
    }

    fn tracked_tokens(&self) -> Option<usize> {
        Some(self.tracked())
    }

    fn evict_idle(&self) {
        self.evict_idle_at(monotonic_unix_ms());
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

    #[test]
    fn idle_tokens_are_evicted() {
        let limiter = MemoryRateLimiter::default();
        for _ in 0..100 {
            limiter.check_at(&TokenId::random(), 10, HOUR_MS);
        }
        let active = TokenId::random();
        limiter.check_at(&active, 10, HOUR_MS + 30 * 60_000);
        assert_eq!(limiter.evict_idle_at(HOUR_MS + 30 * 60_000), 0);
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
}
