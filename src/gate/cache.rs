//! The verified-token cache: `SHA-256(token)` → the authenticated principal.
//!
//! argon2id makes verifying a token cost ~27 ms; the cache makes a repeat
//! visit cost one SHA-256 and one map lookup. The key is a 256-bit
//! cryptographic digest of the whole token, never the plaintext and never a
//! short hash (a collision would be a login).
//!
//! * **Bounded**: a fixed number of entries; when a shard is full, expired
//!   entries go first, then arbitrary ones (keys are uniformly random digests).
//! * **TTL**: after `ttl` an entry is revalidated against the store in the
//!   background (one indexed lookup, no argon2: a token id's secret never
//!   changes), while requests keep being served from it.
//! * **Invalidation**: revoking or rotating a token removes its entries.
//!   Moving an account to another plan or editing a plan marks the affected
//!   entries: their next request re-reads the token's state from the store
//!   before it is answered. The secret stays verified, so a plan edit that
//!   touches 100,000 tokens costs 100,000 lookups, not 100,000 argon2 runs.
//! * **No stale re-insertion**: a lookup that started before an invalidation
//!   cannot insert what it read if the invalidation concerns it (a short log
//!   of recent invalidations is checked under the shard lock).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest as _, Sha256};

use crate::principal::Principal;
use crate::store::Change;

const SHARDS: usize = 16;
/// Invalidations remembered for racing inserts; older readers just do not insert.
const LOG_LEN: usize = 1024;

/// SHA-256 of a whole token: the cache key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(super) fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    fn shard(&self) -> usize {
        self.0[31] as usize % SHARDS
    }
}

impl std::hash::Hash for TokenDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The digest is uniformly random, and only verified tokens are inserted,
        // so its first bytes are a hash an attacker cannot steer.
        state.write(&self.0);
    }
}

type DigestState = std::hash::BuildHasherDefault<crate::token::RandomIdHasher>;
type Shard = RwLock<HashMap<TokenDigest, Arc<CachedAuth>, DigestState>>;

/// What a verified token grants, as cached.
pub(super) struct CachedAuth {
    pub(super) principal: Principal,
    pub(super) api_access: bool,
    /// Wall-clock Unix ms at which the token expires, if it does.
    pub(super) expires_at_ms: Option<i64>,
    /// Monotonic Unix ms after which the entry is revalidated against the store.
    pub(super) refresh_after_ms: u64,
    /// A background revalidation is running.
    pub(super) refreshing: AtomicBool,
    /// The account's plan or the plan changed: re-read before answering.
    pub(super) must_revalidate: AtomicBool,
    /// Unix second of the last use, so last-use is recorded at most once a second.
    pub(super) last_seen_sec: AtomicI64,
}

impl CachedAuth {
    pub(super) fn is_expired_at(&self, now_wall_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_wall_ms >= at)
    }

    fn concerned_by(&self, change: &Change) -> bool {
        match change {
            Change::Created(_) => false,
            Change::Token(id) => self.principal.token_id() == *id,
            Change::Account(id) => self.principal.account_id() == id,
            Change::Plan(name) => self.principal.plan() == name,
            Change::Everything => true,
        }
    }
}

pub(super) struct VerifiedCache {
    shards: Box<[Shard]>,
    capacity_per_shard: usize,
    epoch: AtomicU64,
    log: Mutex<VecDeque<(u64, Change)>>,
}

impl VerifiedCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
            log: Mutex::new(VecDeque::with_capacity(LOG_LEN)),
        }
    }

    pub(super) fn get(&self, digest: &TokenDigest) -> Option<Arc<CachedAuth>> {
        self.with(digest, Arc::clone)
    }

    /// Runs `f` on the entry under the shard's read lock, without cloning the
    /// `Arc` (which would bounce its count between cores on a hot token).
    pub(super) fn with<R>(
        &self,
        digest: &TokenDigest,
        f: impl FnOnce(&Arc<CachedAuth>) -> R,
    ) -> Option<R> {
        let shard = self.shards[digest.shard()]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        shard.get(digest).map(f)
    }

    /// The current invalidation epoch: read it before reading the store, and
    /// pass it to [`insert`](Self::insert).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Inserts an entry read from the store at `read_epoch`, unless an
    /// invalidation since then concerns it. Returns whether it was inserted.
    pub(super) fn insert(
        &self,
        digest: TokenDigest,
        entry: Arc<CachedAuth>,
        read_epoch: u64,
        now_ms: u64,
    ) -> bool {
        let mut shard = self.shards[digest.shard()]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Under the shard lock: an invalidation either is in the log already,
        // or will take this lock after us and see the entry.
        if self.epoch.load(Ordering::Acquire) != read_epoch
            && self.invalidated_since(read_epoch, &entry)
        {
            return false;
        }
        if shard.len() >= self.capacity_per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, e| e.refresh_after_ms > now_ms);
            if shard.len() >= self.capacity_per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(digest, entry);
        true
    }

    fn invalidated_since(&self, read_epoch: u64, entry: &CachedAuth) -> bool {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        match log.front() {
            // The log no longer reaches back to the read: assume the worst.
            Some(&(oldest, _)) if oldest > read_epoch + 1 => true,
            _ => log
                .iter()
                .any(|(epoch, change)| *epoch > read_epoch && entry.concerned_by(change)),
        }
    }

    /// Removes `digest` if it still maps to `entry`.
    pub(super) fn remove(&self, digest: &TokenDigest, entry: &Arc<CachedAuth>) {
        let mut shard = self.shards[digest.shard()]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.get(digest).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            shard.remove(digest);
        }
    }

    /// Applies changes in one pass: revoked or rotated tokens leave the cache,
    /// entries of changed accounts and plans must revalidate. Returns how many
    /// entries were affected.
    pub(super) fn invalidate(&self, changes: &[Change]) -> usize {
        if changes.is_empty() {
            return 0;
        }
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            for change in changes {
                let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                if log.len() == LOG_LEN {
                    log.pop_front();
                }
                log.push_back((epoch, change.clone()));
            }
        }
        let mut affected = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, entry| {
                let mut keep = true;
                for change in changes {
                    if !entry.concerned_by(change) {
                        continue;
                    }
                    affected += 1;
                    match change {
                        Change::Token(_) | Change::Everything => keep = false,
                        Change::Created(_) => {}
                        Change::Account(_) | Change::Plan(_) => {
                            entry.must_revalidate.store(true, Ordering::Release);
                        }
                    }
                }
                keep
            });
        }
        affected
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenId;

    fn entry(account: &str, plan: &str) -> Arc<CachedAuth> {
        Arc::new(CachedAuth {
            principal: Principal::of(&crate::store::Credential {
                token_id: TokenId::random(),
                account_id: account.into(),
                secret_hash: String::new(),
                secret_tag: None,
                expires_at: None,
                revoked_at: None,
                scopes: vec!["*".into()],
                plan: crate::store::Plan::new(plan, true, 10),
                window_id: None,
            }),
            api_access: true,
            expires_at_ms: None,
            refresh_after_ms: u64::MAX,
            refreshing: AtomicBool::new(false),
            must_revalidate: AtomicBool::new(false),
            last_seen_sec: AtomicI64::new(0),
        })
    }

    #[test]
    fn plan_and_account_changes_mark_and_token_changes_remove() {
        let cache = VerifiedCache::new(100);
        let a = entry("acct_a", "pro");
        let b = entry("acct_b", "enterprise");
        let (da, db) = (TokenDigest::of("a"), TokenDigest::of("b"));
        assert!(cache.insert(da, a.clone(), cache.epoch(), 0));
        assert!(cache.insert(db, b.clone(), cache.epoch(), 0));
        assert_eq!(cache.invalidate(&[Change::Plan("pro".into())]), 1);
        assert!(
            cache
                .get(&da)
                .unwrap()
                .must_revalidate
                .load(Ordering::Acquire)
        );
        assert!(
            !cache
                .get(&db)
                .unwrap()
                .must_revalidate
                .load(Ordering::Acquire)
        );
        assert_eq!(
            cache.invalidate(&[Change::Token(b.principal.token_id())]),
            1
        );
        assert!(cache.get(&db).is_none());
        assert_eq!(cache.invalidate(&[Change::Everything]), 1);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_read_overtaken_by_a_relevant_invalidation_is_not_inserted() {
        let cache = VerifiedCache::new(100);
        let read_epoch = cache.epoch();
        cache.invalidate(&[Change::Account("acct_a".into())]);
        assert!(!cache.insert(TokenDigest::of("a"), entry("acct_a", "pro"), read_epoch, 0));
        // An unrelated invalidation does not stop other entries from warming.
        assert!(cache.insert(TokenDigest::of("b"), entry("acct_b", "pro"), read_epoch, 0));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_read_older_than_the_log_is_not_inserted() {
        let cache = VerifiedCache::new(100);
        let read_epoch = cache.epoch();
        let changes: Vec<_> = (0..LOG_LEN + 5)
            .map(|i| Change::Account(format!("other_{i}")))
            .collect();
        cache.invalidate(&changes);
        assert!(!cache.insert(TokenDigest::of("a"), entry("acct_a", "pro"), read_epoch, 0));
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let cache = VerifiedCache::new(32);
        for i in 0..1000 {
            cache.insert(
                TokenDigest::of(&i.to_string()),
                entry("a", "pro"),
                cache.epoch(),
                0,
            );
        }
        assert!(cache.len() <= 32, "{}", cache.len());
    }
}
