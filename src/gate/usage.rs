//! Last-use tracking: the request path notes `(token id, second)` in memory,
//! at most once per token per second; the maintenance task writes the batch
//! every `last_used_flush_interval`, and shutdown writes the rest. The hot
//! path never writes to the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

use crate::store::{CredentialStore, StoreError};
use crate::token::{RandomIdState, TokenId};

/// Pending last-use times, by token.
#[derive(Default)]
pub(super) struct LastUse {
    pending: Mutex<HashMap<TokenId, i64, RandomIdState>>,
}

impl LastUse {
    /// Notes a use of `id` at `now_secs`. `last_seen` is the token's cached
    /// "last second noted", so a hot token takes the lock once a second.
    pub(super) fn note(&self, id: TokenId, now_secs: i64, last_seen: &AtomicI64) {
        // Load before swapping: a read keeps the cache line shared between cores.
        if last_seen.load(Ordering::Relaxed) != now_secs
            && last_seen.swap(now_secs, Ordering::Relaxed) != now_secs
        {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, now_secs);
        }
    }

    /// Writes pending times. They stay pending until written: a failed
    /// flush, or one cut short (a timeout, shutdown) by dropping this future,
    /// leaves them for the next try.
    pub(super) async fn flush(&self, store: &dyn CredentialStore) -> Result<usize, StoreError> {
        let pending: Vec<(TokenId, i64)> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, secs)| (*id, *secs))
            .collect();
        if pending.is_empty() {
            return Ok(0);
        }
        let batch: Vec<_> = pending
            .iter()
            .filter_map(|(id, secs)| {
                OffsetDateTime::from_unix_timestamp(*secs)
                    .ok()
                    .map(|at| (*id, at))
            })
            .collect();
        store.record_last_used(&batch).await?;
        // Forget what was written, unless a later use was noted meanwhile.
        let mut current = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (id, secs) in &pending {
            if current.get(id) == Some(secs) {
                current.remove(id);
            }
        }
        Ok(batch.len())
    }
}
