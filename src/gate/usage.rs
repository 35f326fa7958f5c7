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

/// Usage counts taken from the limiter but not yet written (kept across a
/// failed flush).
#[derive(Default)]
pub(super) struct PendingUsage {
    pending: Mutex<HashMap<TokenId, Tally, RandomIdState>>,
}

impl PendingUsage {
    /// Writes `taken` (and whatever an earlier flush left) to the hour of
    /// `now`. Counts stay pending until written: a failed flush, or one cut
    /// short by dropping this future (the store timeout, shutdown), leaves
    /// them for the next try. (A write that committed just as it was cut is
    /// counted again: at least once, never lost.)
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
        let hour = crate::clock::hour_of(now);
        let deltas: Vec<UsageDelta> = batch
            .iter()
            .map(|(token, tally)| UsageDelta {
                token_id: *token,
                hour,
                admitted: tally.admitted,
                limited: tally.limited,
            })
            .collect();
        let mut unwritten = Unwritten {
            into: self,
            batch: Some(batch),
        };
        store.record_usage(&deltas).await?;
        unwritten.batch = None;
        Ok(deltas.len())
    }

    fn restore(&self, batch: HashMap<TokenId, Tally, RandomIdState>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (token, tally) in batch {
            let slot = pending.entry(token).or_default();
            slot.admitted += tally.admitted;
            slot.limited += tally.limited;
        }
    }
}

/// A batch being written: put back if the write fails or is dropped.
struct Unwritten<'a> {
    into: &'a PendingUsage,
    batch: Option<HashMap<TokenId, Tally, RandomIdState>>,
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.into.restore(batch);
        }
    }
}
