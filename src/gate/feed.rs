//! The change feed: how a gate learns what other processes did, and which
//! token ids exist at all.
//!
//! Every mutation that matters to authentication appends a row to the
//! store's `changes` table in its own transaction: a token created, revoked
//! or rotated, an account moved to another plan, a plan edited. [`Feed`]
//! reads the rows after its cursor and *returns* the ones that invalidate
//! cached authentications; the gate applies them. Creations it keeps
//! itself, in the **known-id map** (token id → secret tag), loaded in full
//! when the feed starts.
//!
//! The known-id map is what makes a flood of well-formed tokens free: an id
//! that is not in it cannot authenticate, and a secret whose tag does not
//! match the stored one cannot either, so both are answered from memory.
//! The only ids missing from the map are those created by another process
//! since the last poll; before answering "unknown", a request waits for a
//! poll that *started after it arrived* (a creation commits before its
//! plaintext is shown to anyone, so such a poll always sees it). Polls on
//! behalf of waiting requests are coalesced: one runs at a time and answers
//! every request that arrived before it started, so a flood of unknown ids
//! costs one small indexed query at a time.
//!
//! This module owns the cursor, the map and the coordination of polls; it
//! never touches the cache or the flights.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Change, CredentialStore, StoreError, within};
use crate::token::{RandomIdState, TokenId};

/// Rows read per query when catching up.
const PAGE: u32 = 1000;
/// A gate that could not read the feed for this long empties its cache
/// rather than trust it (changes are kept in the store for a day).
const CACHE_DISTRUST_AFTER: Duration = Duration::from_secs(3600);

/// What the known-id map says about a token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    /// The map is not loaded yet: ask the store.
    NotLoaded,
    /// Not a live token as of the last poll.
    Unknown,
    /// A live token, with its secret tag if it has one.
    Live(Option<u32>),
}

/// What a failed poll means for the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outage {
    /// A short outage: keep serving what is cached.
    Tolerated,
    /// Unreadable for an hour: distrust everything cached.
    TooLong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Polled {
    /// Number of the latest finished poll.
    seq: u64,
    /// Whether it succeeded.
    ok: bool,
}

/// Waits for the poll a request asked for.
pub(super) struct PollWaiter {
    needed: u64,
    polled: watch::Receiver<Polled>,
}

impl PollWaiter {
    /// Whether the first poll that started after the request succeeded.
    pub(super) async fn wait(mut self) -> bool {
        loop {
            let latest = *self.polled.borrow_and_update();
            if latest.seq >= self.needed {
                return latest.ok;
            }
            if self.polled.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// The feed's state inside a gate.
pub(super) struct Feed {
    cursor: AtomicI64,
    last_ok_ms: AtomicU64,
    started: AtomicU64,
    wanted: AtomicU64,
    running: AtomicBool,
    polled: watch::Sender<Polled>,
    known: RwLock<HashMap<TokenId, Option<u32>, RandomIdState>>,
    known_ready: AtomicBool,
    healthy: AtomicBool,
}

impl Feed {
    pub(super) fn new(now_ms: u64) -> Self {
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

    /// What the known-id map says about `id`.
    pub(super) fn lookup(&self, id: &TokenId) -> Known {
        if !self.known_ready.load(Ordering::Acquire) {
            return Known::NotLoaded;
        }
        match self.known.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            Some(tag) => Known::Live(*tag),
            None => Known::Unknown,
        }
    }

    /// Records a token this process just created, or the tag just learned for one.
    pub(super) fn learn(&self, id: TokenId, tag: Option<u32>) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let entry = known.entry(id).or_insert(tag);
        if tag.is_some() {
            *entry = tag;
        }
    }

    /// Asks for a poll that starts after this call. Returns the waiter, and
    /// whether the caller must start a poller (none is running).
    pub(super) fn want_poll(&self) -> (PollWaiter, bool) {
        let needed = self.started.load(Ordering::SeqCst) + 1;
        self.wanted.fetch_max(needed, Ordering::SeqCst);
        let waiter = PollWaiter {
            needed,
            polled: self.polled.subscribe(),
        };
        let start = !self.running.swap(true, Ordering::SeqCst);
        (waiter, start)
    }

    /// In the poller: the number of the next poll to run, or `None` when
    /// nobody waits any more (the poller then ends).
    pub(super) fn next_poll(&self) -> Option<u64> {
        loop {
            if self.wanted.load(Ordering::SeqCst) > self.polled.borrow().seq {
                return Some(self.started.fetch_add(1, Ordering::SeqCst) + 1);
            }
            self.running.store(false, Ordering::SeqCst);
            // A request may have asked between the check and the store.
            let asked = self.wanted.load(Ordering::SeqCst) > self.polled.borrow().seq;
            if !asked || self.running.swap(true, Ordering::SeqCst) {
                return None;
            }
        }
    }

    /// Publishes the end of poll `seq` to its waiters.
    pub(super) fn finish(&self, seq: u64, ok: bool) {
        self.polled.send_replace(Polled { seq, ok });
    }

    /// The poller died (a panicking store): waiters get a failed poll and
    /// the next request may start a new poller.
    pub(super) fn abandon(&self) {
        let seq = self.started.load(Ordering::SeqCst);
        self.polled.send_replace(Polled { seq, ok: false });
        self.running.store(false, Ordering::SeqCst);
    }

    /// One read of the feed: on the first, the known-id map is loaded (and
    /// `Everything` returned, since anything cached before may predate a
    /// change this feed will never read); then the changes after the cursor.
    /// Returns the changes that invalidate cached authentications.
    pub(super) async fn read(
        &self,
        store: &dyn CredentialStore,
        timeout: Duration,
    ) -> Result<Vec<Change>, StoreError> {
        let mut invalidations = Vec::new();
        let mut cursor = self.cursor.load(Ordering::Acquire);
        if cursor < 0 {
            // The cursor first, then the ids: a token created in between is
            // in both, which is harmless; none is in neither.
            let latest = within(timeout, store.latest_change()).await?;
            let live = within(timeout, store.live_tokens()).await?;
            self.known
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(live);
            self.known_ready.store(true, Ordering::Release);
            self.cursor.store(latest, Ordering::Release);
            cursor = latest;
            invalidations.push(Change::Everything);
        }
        loop {
            let entries = within(timeout, store.changes_after(cursor, PAGE)).await?;
            let Some(last) = entries.last().map(|entry| entry.seq) else {
                break;
            };
            let full_page = entries.len() == PAGE as usize;
            {
                let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
                for entry in entries {
                    match entry.change {
                        Change::Created(id) => {
                            known.insert(id, entry.secret_tag);
                        }
                        other => invalidations.push(other),
                    }
                }
            }
            self.cursor.store(last, Ordering::Release);
            cursor = last;
            if !full_page {
                break;
            }
        }
        Ok(invalidations)
    }

    /// Records a successful poll at `now_ms`.
    pub(super) fn succeeded(&self, now_ms: u64) {
        self.last_ok_ms.store(now_ms, Ordering::Release);
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::warn!("change feed reachable again");
        }
    }

    /// Records a failed poll at `now_ms` and says what it means: after an
    /// hour without a successful read the cache must not be trusted, and the
    /// cursor starts over (changes older than a day are pruned, so it may
    /// point into a gap) once the store is back.
    pub(super) fn failed(&self, error: &StoreError, now_ms: u64) -> Outage {
        let last_ok = self.last_ok_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(last_ok)
            > u64::try_from(CACHE_DISTRUST_AFTER.as_millis()).unwrap_or(u64::MAX)
            && self.cursor.load(Ordering::Acquire) >= 0
        {
            tracing::error!(error = %error, "change feed unreachable for an hour; cache emptied");
            self.cursor.store(-1, Ordering::Release);
            return Outage::TooLong;
        }
        if self.healthy.swap(false, Ordering::AcqRel) {
            // Once per outage, not once per poll.
            tracing::error!(error = %error, "change feed unreachable; unknown token ids get 503 until it is back");
        } else {
            tracing::debug!(error = %error, "change feed poll failed");
        }
        Outage::Tolerated
    }
}
