//! What one instance added to the shared windows in the last window, per
//! bucket, so that it can add it again when Redis forgets them.
//!
//! Redis may lose the windows: a restart without persistence, a failover to
//! a replica that lagged, a `FLUSHALL`. Each instance still knows what it
//! put there: the permits its leases were granted (counted in the bucket of
//! the lease's end, see [`lease`](super::lease)), minus the permits it gave
//! back, plus what its local fallback admitted while Redis was down. When a
//! new generation of the shared windows is detected (see `redis.rs`), every
//! instance adds its own counts into it, once; the new windows then count
//! everything the live instances admitted in the last window, and the limit
//! holds across the loss. Property-tested against an exact log with
//! resets, partial losses and crashes in `reseed_model.rs`.
//!
//! **Bounded like the windows.** Only buckets still in the window are kept
//! (at most `B + 2` per key); a key with none left is dropped.
//!
//! **Never too few.** A give-back lowers the record only once Redis has
//! confirmed it; an unconfirmed one stays counted, which can only make the
//! re-seeded window fuller than the truth, never emptier.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// One bucket of one key: permits counted, and how many of them Redis has
/// not seen yet (admitted by the local fallback while it was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    bucket: u64,
    count: u32,
    pending: u32,
}

/// Per-bucket counts to add to one key: `(bucket, count)`, oldest first.
pub(crate) type Seeds = Vec<(u64, u32)>;

/// This instance's counts in the shared windows, per key and bucket.
#[derive(Debug)]
pub(crate) struct Contributions<K, S = std::collections::hash_map::RandomState> {
    keys: HashMap<K, Vec<Counted>, S>,
}

impl<K, S: Default> Default for Contributions<K, S> {
    fn default() -> Self {
        Self {
            keys: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher> Contributions<K, S> {
    /// `permits` counted in `key`'s `bucket` (a grant).
    pub(crate) fn add(&mut self, key: &K, bucket: u64, permits: u32) {
        self.add_counted(key, bucket, permits, 0);
    }

    /// One admission by the local fallback, in `bucket`: counted, and
    /// pending until Redis has it ([`pending`](Self::pending)).
    pub(crate) fn add_pending(&mut self, key: &K, bucket: u64) {
        self.add_counted(key, bucket, 1, 1);
    }

    fn add_counted(&mut self, key: &K, bucket: u64, count: u32, pending: u32) {
        if count == 0 {
            return;
        }
        let buckets = match self.keys.get_mut(key) {
            Some(buckets) => buckets,
            None => self.keys.entry(key.clone()).or_default(),
        };
        match buckets.binary_search_by_key(&bucket, |c| c.bucket) {
            Ok(i) => {
                buckets[i].count = buckets[i].count.saturating_add(count);
                buckets[i].pending = buckets[i].pending.saturating_add(pending);
            }
            Err(i) => buckets.insert(
                i,
                Counted {
                    bucket,
                    count,
                    pending,
                },
            ),
        }
    }

    /// `permits` given back from `key`'s `bucket`, confirmed by Redis.
    pub(crate) fn remove(&mut self, key: &K, bucket: u64, permits: u32) {
        let Some(buckets) = self.keys.get_mut(key) else {
            return;
        };
        if let Ok(i) = buckets.binary_search_by_key(&bucket, |c| c.bucket) {
            let counted = &mut buckets[i];
            counted.count -= permits.min(counted.count);
            counted.pending = counted.pending.min(counted.count);
            if counted.count == 0 {
                buckets.remove(i);
            }
        }
        if buckets.is_empty() {
            self.keys.remove(key);
        }
    }

    /// Drops buckets before `first` (they left the window) and empty keys.
    pub(crate) fn forget_before(&mut self, first: u64) {
        self.keys.retain(|_, buckets| {
            buckets.retain(|c| c.bucket >= first);
            if buckets.capacity() > 2 * buckets.len() + 4 {
                buckets.shrink_to_fit();
            }
            !buckets.is_empty()
        });
    }

    /// Everything counted from bucket `first` on: what a re-seed adds.
    pub(crate) fn seeds(&self, first: u64) -> Vec<(K, Seeds)> {
        self.collect(first, |c| c.count)
    }

    /// What Redis has not seen yet, from bucket `first` on.
    pub(crate) fn pending(&self, first: u64) -> Vec<(K, Seeds)> {
        self.collect(first, |c| c.pending)
    }

    fn collect(&self, first: u64, count: impl Fn(&Counted) -> u32) -> Vec<(K, Seeds)> {
        self.keys
            .iter()
            .filter_map(|(key, buckets)| {
                let seeds: Seeds = buckets
                    .iter()
                    .filter(|c| c.bucket >= first && count(c) > 0)
                    .map(|c| (c.bucket, count(c)))
                    .collect();
                (!seeds.is_empty()).then(|| (key.clone(), seeds))
            })
            .collect()
    }

    /// Redis has the pending counts in `sent` now (a re-seed or a top-up
    /// included them): they stay counted, no longer pending.
    pub(crate) fn delivered(&mut self, sent: &[(K, Seeds)]) {
        for (key, seeds) in sent {
            let Some(buckets) = self.keys.get_mut(key) else {
                continue;
            };
            for &(bucket, n) in seeds {
                if let Ok(i) = buckets.binary_search_by_key(&bucket, |c| c.bucket) {
                    buckets[i].pending = buckets[i].pending.saturating_sub(n);
                }
            }
        }
    }

    /// Whether anything at all is counted (then the instance must watch for resets).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys with something counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Heap bytes held: table slots (key, vector, one control byte) and buckets.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(K, Vec<Counted>)>() + 1;
        self.keys.capacity() * slot
            + self
                .keys
                .values()
                .map(|b| b.capacity() * std::mem::size_of::<Counted>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Record = Contributions<&'static str>;

    fn sorted(mut seeds: Vec<(&'static str, Seeds)>) -> Vec<(&'static str, Seeds)> {
        seeds.sort();
        seeds
    }

    #[test]
    fn grants_add_and_confirmed_give_backs_remove_per_bucket() {
        let mut record = Record::default();
        assert!(record.is_empty());
        record.add(&"t", 10, 5);
        record.add(&"t", 12, 3);
        record.add(&"t", 10, 2);
        record.add(&"a", 12, 0);
        assert_eq!(record.len(), 1, "nothing counted: no key");
        record.remove(&"t", 10, 4);
        record.remove(&"t", 11, 9);
        record.remove(&"b", 11, 9);
        assert_eq!(record.seeds(0), vec![("t", vec![(10, 3), (12, 3)])]);
        record.remove(&"t", 12, 7);
        assert_eq!(
            record.seeds(0),
            vec![("t", vec![(10, 3)])],
            "never below zero"
        );
        record.remove(&"t", 10, 3);
        assert!(record.is_empty(), "an empty key goes");
    }

    #[test]
    fn only_buckets_still_in_the_window_are_kept_and_seeded() {
        let mut record = Record::default();
        record.add(&"t", 5, 1);
        record.add(&"t", 7, 2);
        record.add(&"u", 6, 4);
        assert_eq!(
            sorted(record.seeds(7)),
            vec![("t", vec![(7, 2)])],
            "u has nothing from bucket 7 on"
        );
        record.forget_before(7);
        assert_eq!(record.len(), 1);
        assert_eq!(record.seeds(0), vec![("t", vec![(7, 2)])]);
        record.forget_before(8);
        assert!(record.is_empty());
    }

    #[test]
    fn local_admissions_are_counted_and_pending_until_delivered() {
        let mut record = Record::default();
        record.add(&"t", 3, 10);
        record.add_pending(&"t", 3);
        record.add_pending(&"t", 4);
        record.add_pending(&"a", 4);
        assert_eq!(
            sorted(record.seeds(0)),
            vec![("a", vec![(4, 1)]), ("t", vec![(3, 11), (4, 1)])]
        );
        let pending = sorted(record.pending(0));
        assert_eq!(
            pending,
            vec![("a", vec![(4, 1)]), ("t", vec![(3, 1), (4, 1)])]
        );
        assert_eq!(record.pending(4).len(), 2);
        record.delivered(&pending[1..]);
        assert_eq!(record.pending(0), vec![("a", vec![(4, 1)])]);
        assert_eq!(
            sorted(record.seeds(0))[1],
            ("t", vec![(3, 11), (4, 1)]),
            "still counted"
        );
        // A give-back cannot leave more pending than counted.
        record.add_pending(&"u", 9);
        record.remove(&"u", 9, 1);
        assert!(record.pending(0).iter().all(|(k, _)| *k != "u"));
    }

    /// Bytes per active token of the record: one key, and its buckets.
    /// Steady traffic leases about once per 50 requests, so a busy token
    /// has a count in every bucket of the window (61); a quiet one in a few.
    #[test]
    fn bytes_per_active_token() {
        let tokens = 10_000u64;
        /// The shape of `redis_script::WindowKey` (a token id, or an account's).
        #[derive(Clone, PartialEq, Eq, Hash)]
        #[allow(dead_code)]
        enum Key {
            Token([u8; 16]),
            Account(Box<str>),
        }
        for (per_token, most) in [(1u64, 150usize), (61, 1_300)] {
            let mut record: Contributions<Key> = Contributions::default();
            for t in 0..tokens {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&t.to_le_bytes());
                let key = Key::Token(id);
                for bucket in 0..per_token {
                    record.add(&key, bucket, 3);
                }
            }
            let bytes = record.heap_bytes() / usize::try_from(tokens).unwrap();
            eprintln!("{per_token} buckets per token: {bytes} bytes per active token");
            assert!(
                bytes <= most,
                "{bytes} bytes per token with {per_token} buckets"
            );
        }
    }
}
