//! Last use and usage: the request path notes `(token id, second)` in
//! memory, at most once per token per second, and the limiter counts each
//! token's admitted and refused requests as it decides; the maintenance task
//! writes both every `last_used_flush_interval` (10 s), and shutdown writes
//! the rest. The hot path never writes to the database.
//!
//! Usage counts are added to the hour in which they are flushed (so a
//! request at 10:59:58 may count in the 11:00 hour), and instances add
//! theirs to the same rows: the stored numbers are totals.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

use crate::limit::Tally;
use crate::store::{CredentialStore, StoreError, UsageDelta};
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

    /// Writes pending times; on failure they are kept for the next try.
    pub(super) async fn flush(&self, store: &dyn CredentialStore) -> Result<usize, StoreError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
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
        match store.record_last_used(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut current = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (id, secs) in pending {
                    let slot = current.entry(id).or_insert(secs);
                    *slot = (*slot).max(secs);
                }
                Err(e)
            }
        }
    }
}

/// Usage counts taken from the limiter but not yet written (kept across a
/// failed flush).
#[derive(Default)]
pub(super) struct PendingUsage {
    pending: Mutex<HashMap<TokenId, Tally, RandomIdState>>,
}

impl PendingUsage {
    /// Writes `taken` (and whatever a failed flush left) to the hour of `now`.
    pub(super) async fn flush(
        &self,
        taken: Vec<(TokenId, Tally)>,
        now: OffsetDateTime,
        store: &dyn CredentialStore,
    ) -> Result<usize, StoreError> {
        let mut batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (token, tally) in taken {
            let slot = batch.entry(token).or_default();
            slot.admitted += tally.admitted;
            slot.limited += tally.limited;
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let hour = crate::manage::hour_of(now);
        let deltas: Vec<UsageDelta> = batch
            .iter()
            .map(|(token, tally)| UsageDelta {
                token_id: *token,
                hour,
                admitted: tally.admitted,
                limited: tally.limited,
            })
            .collect();
        match store.record_usage(&deltas).await {
            Ok(()) => Ok(deltas.len()),
            Err(e) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (token, tally) in batch {
                    let slot = pending.entry(token).or_default();
                    slot.admitted += tally.admitted;
                    slot.limited += tally.limited;
                }
                Err(e)
            }
        }
    }
}
