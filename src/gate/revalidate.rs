//! Revalidation of cached authentications: one re-read of a token's state,
//! used in the foreground (the plan changed: answer from fresh state) and in
//! the background (the TTL passed: keep serving while re-reading). Never
//! argon2: a token id's secret never changes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::TokenGate;
use super::cache::{CachedAuth, TokenDigest};
use super::verify::Verdict;
use crate::clock::monotonic_unix_ms;
use crate::response::Rejection;
use crate::store::StoreError;

/// What a re-read found.
enum Reread {
    /// Still usable: the fresh entry (already offered to the cache).
    Usable(Arc<CachedAuth>),
    /// Revoked, expired or gone: the entry was removed.
    Gone,
    /// The store did not answer.
    Failed(StoreError),
}

/// Re-reads `entry`'s token and replaces or removes the entry. A change
/// that raced the read makes the cache refuse the replacement; the next
/// request then revalidates again.
async fn reread(gate: &TokenGate, digest: TokenDigest, entry: &Arc<CachedAuth>) -> Reread {
    let inner = &gate.inner;
    let read_epoch = inner.cache.epoch();
    let id = entry.principal.token_id();
    let credential = gate
        .within_store_timeout(inner.store.find_credential(&id))
        .await;
    match credential {
        Ok(Some(credential))
            if credential.revoked_at.is_none()
                && !gate
                    .cached_auth(&credential)
                    .is_expired_at(inner.clock.now_unix_ms()) =>
        {
            let fresh = Arc::new(gate.cached_auth(&credential));
            fresh.last_seen_sec.store(
                entry.last_seen_sec.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            if !inner
                .cache
                .insert(digest, Arc::clone(&fresh), read_epoch, monotonic_unix_ms())
            {
                // A racing change: leave the entry marked or removed by it.
                entry.refreshing.store(false, Ordering::Release);
            }
            Reread::Usable(fresh)
        }
        Ok(_) => {
            inner.cache.remove(&digest, entry);
            inner.verifier.remember_bad(id, monotonic_unix_ms());
            Reread::Gone
        }
        Err(e) => Reread::Failed(e),
    }
}

/// The account's plan or the plan itself changed: re-read the token's
/// state before answering.
pub(super) async fn revalidate_now(
    gate: &TokenGate,
    digest: TokenDigest,
    entry: Arc<CachedAuth>,
) -> Verdict {
    match reread(gate, digest, &entry).await {
        // This request uses what it read, even if a racing change kept
        // it out of the cache.
        Reread::Usable(fresh) => Ok(fresh),
        Reread::Gone => Err(Rejection::InvalidToken),
        Reread::Failed(e) => {
            // The plan is known to have changed; answering from the old one
            // could let a downgraded account through.
            tracing::error!(error = %e, token_id = %entry.principal.token_id(), "store unavailable while revalidating a changed plan");
            Err(Rejection::Unavailable)
        }
    }
}

/// Past its TTL, an entry is re-read in the background, one refresh per
/// entry at a time, while requests keep using it.
pub(super) fn refresh_if_stale(
    gate: &TokenGate,
    digest: TokenDigest,
    entry: &Arc<CachedAuth>,
    now_ms: u64,
) {
    if entry.refresh_after_ms > now_ms || entry.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let gate = gate.clone();
    let entry = Arc::clone(entry);
    // A task, not the request's future: it finishes even if the client leaves.
    tokio::spawn(async move {
        if let Reread::Failed(e) = reread(&gate, digest, &entry).await {
            let inner = &gate.inner;
            let stale_ms =
                u64::try_from(inner.timing.stale_if_error.as_millis()).unwrap_or(u64::MAX);
            let deadline = entry.refresh_after_ms.saturating_add(stale_ms);
            let id = entry.principal.token_id();
            if monotonic_unix_ms() >= deadline {
                tracing::error!(error = %e, token_id = %id, "store unavailable past the stale-if-error limit; dropping the cached token");
                inner.cache.remove(&digest, &entry);
            } else {
                tracing::warn!(error = %e, token_id = %id, "store unavailable; serving the cached authentication");
            }
            entry.refreshing.store(false, Ordering::Release);
        }
    });
}
