//! The verified-token cache: `SHA-256(token)` → the authenticated principal.
//!
//! argon2id makes verifying a token cost ~27 ms; the cache makes a repeat
//! visit cost one SHA-256 and one map lookup. The key is a 256-bit
//! cryptographic digest of the whole token, never the plaintext and never a
//! short hash (a collision would be a login).
//!
//! * **Bounded**: a fixed number of entries; when a shard is full, expired
//!   entries go first, then arbitrary ones (keys are uniformly random digests).
//! * **TTL**: after `ttl` an entry is revalidated against the store (one indexed
//!   lookup, no argon2: the secret of a token id never changes), while the
//!   other requests keep being served from it.
//! * **Invalidation**: revoking or rotating a token, moving an account to
//!   another plan and editing a plan remove the affected entries at once.
//!   An epoch counter stops a lookup that started before an invalidation from
//!   re-inserting what it read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sha2::{Digest as _, Sha256};

use crate::extract::Principal;
use crate::store::Change;

const SHARDS: usize = 16;

/// SHA-256 of a whole token: the cache key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(token: &str) -> Self {
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

/// What a verified token grants, as cached.
pub(crate) struct CachedAuth {
    pub(crate) principal: Principal,
    pub(crate) api_access: bool,
    /// Unix seconds at which the token expires, if it does.
    pub(crate) expires_at: Option<i64>,
    /// Unix ms after which the entry is revalidated against the store.
    pub(crate) refresh_after_ms: u64,
    /// One request at a time revalidates; the others keep using the entry.
    pub(crate) refreshing: AtomicBool,
    /// Unix second of the last use, so last-use is recorded at most once a second.
    pub(crate) last_seen_sec: AtomicU64,
}

impl CachedAuth {
    pub(crate) fn is_expired_at(&self, now_secs: i64) -> bool {
        self.expires_at.is_some_and(|at| now_secs >= at)
    }
}

pub(crate) struct VerifiedCache {
    shards: Box<[RwLock<HashMap<TokenDigest, Arc<CachedAuth>, DigestState>>]>,
    capacity_per_shard: usize,
    epoch: AtomicU64,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, digest: &TokenDigest) -> Option<Arc<CachedAuth>> {
        let shard = self.shards[digest.shard()]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        shard.get(digest).cloned()
    }

    /// The current invalidation epoch; pass it back to [`insert`](Self::insert).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Inserts an entry read from the store at `epoch`, unless an invalidation
    /// happened since (then the entry may be stale and is dropped).
    pub(crate) fn insert(
        &self,
        digest: TokenDigest,
        entry: Arc<CachedAuth>,
        epoch: u64,
        now_ms: u64,
    ) {
        let mut shard = self.shards[digest.shard()]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Checked under the shard lock, and invalidation bumps the epoch before
        // taking shard locks: either we see the new epoch, or it sees our entry.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if shard.len() >= self.capacity_per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, e| e.refresh_after_ms > now_ms);
            if shard.len() >= self.capacity_per_shard {
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(digest, entry);
    }

    pub(crate) fn remove(&self, digest: &TokenDigest) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.shards[digest.shard()]
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(digest);
    }

    /// Removes every entry a change may have made stale; returns how many.
    pub(crate) fn invalidate(&self, change: &Change) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let stale = |entry: &CachedAuth| match change {
            Change::Token(id) => entry.principal.token_id() == *id,
            Change::Account(id) => entry.principal.account_id() == id,
            Change::Plan(name) => entry.principal.plan() == name,
        };
        self.retain(|entry| !stale(entry))
    }

    /// Empties the cache.
    pub(crate) fn clear(&self) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.retain(|_| false)
    }

    fn retain(&self, keep: impl Fn(&CachedAuth) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, entry| keep(entry));
            removed += before - shard.len();
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
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
            principal: Principal::new(TokenId::random(), account.into(), plan.into(), 10),
            api_access: true,
            expires_at: None,
            refresh_after_ms: u64::MAX,
            refreshing: AtomicBool::new(false),
            last_seen_sec: AtomicU64::new(0),
        })
    }

    #[test]
    fn invalidation_removes_only_matching_entries() {
        let cache = VerifiedCache::new(100);
        let a = entry("acct_a", "pro");
        let b = entry("acct_b", "enterprise");
        let (da, db) = (TokenDigest::of("a"), TokenDigest::of("b"));
        cache.insert(da, a.clone(), cache.epoch(), 0);
        cache.insert(db, b.clone(), cache.epoch(), 0);
        assert_eq!(cache.invalidate(&Change::Plan("pro".into())), 1);
        assert!(cache.get(&da).is_none());
        assert!(cache.get(&db).is_some());
        assert_eq!(cache.invalidate(&Change::Token(b.principal.token_id())), 1);
        assert!(cache.get(&db).is_none());
    }

    #[test]
    fn insert_after_an_invalidation_is_dropped() {
        let cache = VerifiedCache::new(100);
        let epoch = cache.epoch();
        cache.invalidate(&Change::Account("acct_a".into()));
        cache.insert(TokenDigest::of("a"), entry("acct_a", "pro"), epoch, 0);
        assert_eq!(cache.len(), 0);
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
