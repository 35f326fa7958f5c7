//! The change feed: how a gate learns what other processes did, and which
//! token ids exist at all.
//!
//! Every mutation that matters to authentication appends a row to the store's
//! `changes` table in its own transaction: a token created, revoked or rotated,
//! an account moved to another plan, a plan edited. A gate reads the rows after
//! its cursor and applies them:
//!
//! * revocations and plan changes invalidate the verified-token cache;
//! * creations add the id to an in-memory set of **known token ids**, loaded
//!   in full when the feed starts.
//!
//! The known-id set is what makes a flood of well-formed tokens with made-up
//! ids free: an id that is not in the set cannot authenticate, so it is
//! answered from memory instead of with one database lookup per request. The
//! only tokens missing from the set are those created by another process
//! since the last poll; so before answering "unknown", a request waits for a
//! poll that *started after it arrived*. A token's creation commits before its
//! plaintext is shown to anyone, so such a poll always sees it. Polls on
//! behalf of waiting requests are coalesced: one is in flight at a time, and
//! it answers every request that arrived before it started. A flood of unknown
//! ids therefore costs one small indexed query at a time (an empty range scan
//! of `changes`), however large the flood, instead of one lookup per request.
//! (`tokengate_feed_polls_total` counts them.)
//!
//! Polls also run every `change_poll_interval` (250 ms) from
//! [`TokenGate::spawn_maintenance`], which bounds how stale another process's
//! revocation can be in this process's cache.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::gate::TokenGate;
use crate::store::Change;
use crate::token::{RandomIdState, TokenId};

/// Rows read per query when catching up.
const PAGE: u32 = 1000;
/// A gate that could not read the feed for this long empties its cache
/// rather than trust it (changes are kept in the store for a day).
const CACHE_DISTRUST_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Polled {
    /// Number of the latest finished poll.
    seq: u64,
    /// Whether it succeeded.
    ok: bool,
}

/// The feed's state inside a gate.
pub(crate) struct Feed {
    cursor: AtomicI64,
    last_ok_ms: AtomicU64,
    started: AtomicU64,
    wanted: AtomicU64,
    running: AtomicBool,
    polled: watch::Sender<Polled>,
    known: RwLock<HashSet<TokenId, RandomIdState>>,
    known_ready: AtomicBool,
    healthy: AtomicBool,
}

impl Feed {
    pub(crate) fn new(now_ms: u64) -> Self {
        Self {
            cursor: AtomicI64::new(-1),
            last_ok_ms: AtomicU64::new(now_ms),
            started: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            running: AtomicBool::new(false),
            polled: watch::Sender::new(Polled { seq: 0, ok: true }),
            known: RwLock::default(),
            known_ready: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
        }
    }

    /// `Some(false)` if the id certainly does not exist as of the last poll,
    /// `None` if the set is not loaded yet (ask the store).
    pub(crate) fn is_known(&self, id: &TokenId) -> Option<bool> {
        if !self.known_ready.load(Ordering::Acquire) {
            return None;
        }
        Some(
            self.known
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id),
        )
    }

    /// Records a token this process just created.
    pub(crate) fn learn(&self, id: TokenId) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }
}

impl TokenGate {
    /// Reads the change feed now and applies it (a poll that starts after
    /// this call). Returns whether the poll succeeded.
    pub async fn poll_changes(&self) -> bool {
        self.sync_feed().await
    }

    /// Waits for a poll of the change feed that started after this call.
    pub(crate) async fn sync_feed(&self) -> bool {
        let feed = &self.inner.feed;
        let needed = feed.started.load(Ordering::SeqCst) + 1;
        feed.wanted.fetch_max(needed, Ordering::SeqCst);
        let mut polled = feed.polled.subscribe();
        self.ensure_poller();
        loop {
            let latest = *polled.borrow_and_update();
            if latest.seq >= needed {
                return latest.ok;
            }
            if polled.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Runs the poller task unless it runs already. It polls while any
    /// request waits for a newer poll than the last, then stops.
    fn ensure_poller(&self) {
        let feed = &self.inner.feed;
        if feed.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let gate = self.clone();
        // A task of its own: a waiting request that goes away cannot stop it.
        tokio::spawn(async move {
            let _unwind = PollerGuard(gate.clone());
            let feed = &gate.inner.feed;
            loop {
                if feed.wanted.load(Ordering::SeqCst) <= feed.polled.borrow().seq {
                    feed.running.store(false, Ordering::SeqCst);
                    // A request may have asked between the check and the store.
                    let asked = feed.wanted.load(Ordering::SeqCst) > feed.polled.borrow().seq;
                    if asked && !feed.running.swap(true, Ordering::SeqCst) {
                        continue;
                    }
                    return;
                }
                gate.inner.metrics.feed_polls.inc();
                let seq = feed.started.fetch_add(1, Ordering::SeqCst) + 1;
                let ok = gate.poll_once().await;
                feed.polled.send_replace(Polled { seq, ok });
            }
        });
    }

    /// One poll: on the first, load the known ids; then apply new changes.
    ///
    /// (A panic in here, i.e. in a store implementation, is caught by
    /// [`PollerGuard`]: waiters get a failed poll and the next request
    /// starts a new poller.)
    async fn poll_once(&self) -> bool {
        let inner = &self.inner;
        let feed = &inner.feed;
        let store = &inner.store;
        let now_ms = inner.clock.now_unix_ms();
        let mut cursor = feed.cursor.load(Ordering::Acquire);
        let result = async {
            if cursor < 0 {
                // The cursor first, then the ids: a token created in between
                // is in both, which is harmless; none is in neither.
                let latest = self.within_store_timeout(store.latest_change()).await?;
                let ids = self.within_store_timeout(store.live_token_ids()).await?;
                {
                    let mut known = feed.known.write().unwrap_or_else(|e| e.into_inner());
                    known.extend(ids);
                }
                feed.known_ready.store(true, Ordering::Release);
                feed.cursor.store(latest, Ordering::Release);
                cursor = latest;
                // Anything cached before the cursor existed may predate a
                // change we will never read.
                self.invalidate(&Change::Everything);
            }
            loop {
                let changes = self
                    .within_store_timeout(store.changes_after(cursor, PAGE))
                    .await?;
                let Some(&(last, _)) = changes.last() else {
                    break;
                };
                let full_page = changes.len() as u32 == PAGE;
                let mut invalidations = Vec::new();
                {
                    let mut known = feed.known.write().unwrap_or_else(|e| e.into_inner());
                    for (_, change) in changes {
                        match change {
                            Change::Created(id) => {
                                known.insert(id);
                            }
                            other => invalidations.push(other),
                        }
                    }
                }
                self.invalidate_all(&invalidations);
                feed.cursor.store(last, Ordering::Release);
                cursor = last;
                if !full_page {
                    break;
                }
            }
            Ok::<_, crate::store::StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                feed.last_ok_ms.store(now_ms, Ordering::Release);
                if !feed.healthy.swap(true, Ordering::AcqRel) {
                    tracing::warn!("change feed reachable again");
                }
                true
            }
            Err(e) => {
                let last_ok = feed.last_ok_ms.load(Ordering::Acquire);
                if now_ms.saturating_sub(last_ok) > CACHE_DISTRUST_AFTER.as_millis() as u64
                    && (inner.cache.len() > 0 || feed.cursor.load(Ordering::Acquire) >= 0)
                {
                    tracing::error!(error = %e, "change feed unreachable for an hour; cache emptied");
                    self.invalidate(&Change::Everything);
                    // Changes older than a day are pruned, so after a long
                    // enough outage the cursor may point into a gap: start
                    // over (reload the known ids) once the store is back.
                    feed.cursor.store(-1, Ordering::Release);
                } else if feed.healthy.swap(false, Ordering::AcqRel) {
                    // Once per outage, not once per poll.
                    tracing::error!(error = %e, "change feed unreachable; unknown token ids get 503 until it is back");
                } else {
                    tracing::debug!(error = %e, "change feed poll failed");
                }
                false
            }
        }
    }
}

/// If the poller task panics, waiting requests get a failed poll (503) rather
/// than waiting forever, and the next request can start a poller again.
struct PollerGuard(TokenGate);

impl Drop for PollerGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let feed = &self.0.inner.feed;
            let seq = feed.started.load(Ordering::SeqCst);
            feed.polled.send_replace(Polled { seq, ok: false });
            feed.running.store(false, Ordering::SeqCst);
        }
    }
}
