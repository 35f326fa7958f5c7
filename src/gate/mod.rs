//! [`TokenGate`]: a cheap handle over the parts that check a request's token.
//!
//! ```text
//! Authorization header
//!   -> parse (RFC 6750)                                   401, no I/O
//!   -> token shape (prefix, length, alphabet, CRC-32)      401, no I/O
//!   -> verified-token cache (SHA-256 of the token)         hit: plan check     cache.rs
//!   -> negative cache, known-id map and secret tag         401, no I/O         verify.rs, feed.rs
//!   -> store lookup by token id (one indexed read)         401 / 503
//!   -> secret: tag, then argon2id, single-flight, bounded  401 wrong secret    verify.rs
//!   -> plan check                                          403 no API access
//!   -> sliding-window limiter keyed by token id            429                 limit/policy.rs
//! ```
//!
//! The parts own their state: the cache, the verifier (flights, negative
//! cache, argon2), the change feed (cursor, known ids), last-use tracking
//! and the limiter policy. The gate composes them: `authenticate.rs` runs a
//! request through them (`revalidate.rs` re-reads a cached token's state),
//! `layer.rs` is the tower middleware over it, and `maintenance.rs` owns
//! the background work. The gate knows nothing of management: the
//! management component ([`Manager`](crate::Manager)) is *given* the store,
//! the hasher, the clock and a [`ChangeHook`] through which its committed
//! changes reach the cache the moment they commit.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{WallClock, monotonic_unix_ms};
use crate::config_error::ConfigError;
use crate::hash::SecretHasher;
use crate::limit::LimiterPolicy;
use crate::metrics::Metrics;
use crate::store::{Change, StoreError, TokenStore, within};
use crate::token::{TokenFormat, TokenId};

mod authenticate;
pub(crate) use authenticate::Quick;
mod builder;
mod cache;
mod feed;
mod layer;
mod maintenance;
mod revalidate;
mod usage;
mod verify;

pub use builder::TokenGateBuilder;
pub use layer::{TokenGateLayer, TokenGateService};
pub(crate) use layer::{rate_limited, reject};
pub use maintenance::Maintenance;

use cache::VerifiedCache;
use feed::{Feed, Outage};
use usage::{LastUse, PendingUsage};
use verify::Verifier;

/// The request path: authenticates requests, rate-limits them, and guards
/// routes with its [`layer`](Self::layer). Cheap to clone; clones share
/// everything. Tokens, accounts and plans are changed through a
/// [`Manager`](crate::Manager) made from the gate.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tokengate::{Argon2Params, Manager, SqliteStore, TokenGate, TokenStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let gate = TokenGate::builder(Arc::new(store))
///     .with_argon2_params(Argon2Params::insecure_fast_for_tests())
///     .build()?;
/// let manager = Manager::new(&gate);
/// manager.set_account_plan("acct_1", "pro").await?;
/// let created = manager.create_token("acct_1", "CI", None).await?;
///
/// let principal = gate
///     .authenticate_token(created.token.expose_secret())
///     .await
///     .expect("a fresh token authenticates");
/// assert_eq!(principal.account_id(), "acct_1");
/// assert_eq!(principal.requests_per_hour(), 1000);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenGate {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TokenStore>,
    format: TokenFormat,
    clock: WallClock,
    /// The verifier's hasher, handed to management for new secrets.
    hasher: SecretHasher,
    cache: VerifiedCache,
    verifier: Verifier,
    feed: Feed,
    last_use: LastUse,
    usage: PendingUsage,
    limiter: LimiterPolicy,
    metrics: Arc<Metrics>,
    /// The scopes tokens may be created with, sorted.
    scopes: Arc<[String]>,
    timing: Timing,
}

/// The durations the gate runs by.
#[derive(Debug, Clone, Copy)]
struct Timing {
    audit_retention: Duration,
    cache_ttl: Duration,
    stale_if_error: Duration,
    store_timeout: Duration,
    change_poll_interval: Duration,
    last_used_flush_interval: Duration,
}

impl std::fmt::Debug for TokenGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGate")
            .field("format", &self.inner.format)
            .field("cached", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}

impl TokenGate {
    /// A gate on `store` with every default.
    pub fn new(store: Arc<dyn TokenStore>) -> Result<Self, ConfigError> {
        Self::builder(store).build()
    }

    /// Starts configuring a gate on `store`.
    pub fn builder(store: Arc<dyn TokenStore>) -> TokenGateBuilder {
        TokenGateBuilder::new(store)
    }

    /// A [`TokenGateLayer`] that guards routes with this gate.
    pub fn layer(&self) -> TokenGateLayer {
        TokenGateLayer::new(self.clone())
    }

    /// The metrics this gate counts into (render them at `/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The scopes tokens may be created with (declared with
    /// [`TokenGateBuilder::with_scopes`]), sorted.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// The token format.
    pub fn format(&self) -> &TokenFormat {
        &self.inner.format
    }

    /// Checks that the store answers (for a readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.within_store_timeout(self.inner.store.ping()).await
    }

    /// Runs a store call with the configured store timeout.
    async fn within_store_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        within(self.inner.timing.store_timeout, call).await
    }

    /// What the management component is given: the store, the hasher, the
    /// clock and the token format it creates with, and the hook through
    /// which its committed changes reach this gate.
    pub(crate) fn management_parts(&self) -> ManagementParts {
        let inner = &self.inner;
        ManagementParts {
            store: Arc::clone(&inner.store),
            hasher: inner.hasher.clone(),
            clock: inner.clock.clone(),
            format: inner.format.clone(),
            scopes: Arc::clone(&inner.scopes),
            metrics: Arc::clone(&inner.metrics),
            store_timeout: inner.timing.store_timeout,
            hook: Arc::clone(&self.inner) as Arc<dyn ChangeHook>,
        }
    }

    /// Reads the change feed now and applies it (a poll that starts after
    /// this call). Returns whether the poll succeeded.
    pub(crate) async fn sync_feed(&self) -> bool {
        let (waiter, start_poller) = self.inner.feed.want_poll();
        if start_poller {
            self.spawn_poller();
        }
        waiter.wait().await
    }

    /// The poller: a task of its own, so a waiting request that goes away
    /// cannot stop it. It polls while anyone waits for a newer poll, then ends.
    fn spawn_poller(&self) {
        /// If a store panics inside a poll, waiters get a failed poll (503)
        /// rather than waiting forever, and the next request can start a
        /// poller again.
        struct Abandon(TokenGate);
        impl Drop for Abandon {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.inner.feed.abandon();
                }
            }
        }
        let gate = self.clone();
        tokio::spawn(async move {
            let _abandon = Abandon(gate.clone());
            let inner = &gate.inner;
            while let Some(seq) = inner.feed.next_poll() {
                inner.metrics.feed_polls.inc();
                let now_ms = monotonic_unix_ms();
                let read = inner
                    .feed
                    .read(inner.store.as_ref(), inner.timing.store_timeout)
                    .await;
                let ok = match read {
                    Ok(changes) => {
                        gate.inner.invalidate(&changes);
                        inner.feed.succeeded(now_ms);
                        true
                    }
                    Err(e) => {
                        if inner.feed.failed(&e, now_ms) == Outage::TooLong {
                            gate.inner.invalidate(&[Change::Everything]);
                        }
                        false
                    }
                };
                inner.feed.finish(seq, ok);
            }
        });
    }

    /// Starts the background tasks (change feed, last-use flushing,
    /// housekeeping) on the current tokio runtime; stop them with
    /// [`Maintenance::shutdown`].
    pub fn spawn_maintenance(&self) -> Maintenance {
        Maintenance::spawn(self.clone())
    }

    /// Refreshes gauges that are computed on demand (for `/metrics`).
    pub fn refresh_gauges(&self) {
        let inner = &self.inner;
        inner
            .metrics
            .limiter_tracked
            .set(i64::try_from(inner.limiter.tracked()).unwrap_or(i64::MAX));
        let resets = inner.limiter.resets_detected();
        let counted = inner.metrics.limiter_resets.get();
        if resets > counted {
            inner.metrics.limiter_resets.inc_by(resets - counted);
        }
        inner
            .metrics
            .cache_entries
            .set(i64::try_from(inner.cache.len()).unwrap_or(i64::MAX));
    }

    /// Saves the in-memory limiter's windows to the store, so that
    /// [`restore_rate_windows`](Self::restore_rate_windows) at the next start
    /// carries them on: a restart or deploy does not give every token a fresh
    /// hour. [`Maintenance::shutdown`] calls it. `Ok(None)` when the limiter is
    /// shared (Redis keeps its own windows). A crash loses the windows since
    /// the last save. The windows are kept under one key per database: with
    /// several instances on one database, use the shared limiter.
    pub async fn save_rate_windows(&self) -> Result<Option<usize>, StoreError> {
        let inner = &self.inner;
        let Some(snapshot) = inner.limiter.snapshot() else {
            return Ok(None);
        };
        let tokens = snapshot.lines().count().saturating_sub(1);
        self.within_store_timeout(inner.store.put_setting(RATE_WINDOWS_SETTING, &snapshot))
            .await?;
        Ok(Some(tokens))
    }

    /// Loads the windows saved by [`save_rate_windows`](Self::save_rate_windows)
    /// (and clears them, so they are used once). Call it before serving; the
    /// server does. `Ok(None)` when the limiter is shared.
    pub async fn restore_rate_windows(&self) -> Result<Option<usize>, StoreError> {
        let inner = &self.inner;
        if !inner.limiter.is_local() {
            return Ok(None);
        }
        let saved = self
            .within_store_timeout(inner.store.get_setting(RATE_WINDOWS_SETTING))
            .await?;
        let snapshot = saved.unwrap_or_default();
        if snapshot.is_empty() {
            return Ok(Some(0));
        }
        let restored = inner.limiter.restore(&snapshot).unwrap_or(0);
        self.within_store_timeout(inner.store.put_setting(RATE_WINDOWS_SETTING, ""))
            .await?;
        Ok(Some(restored))
    }
}

/// The settings key under which the limiter's windows wait for the next start.
const RATE_WINDOWS_SETTING: &str = "rate_limit_windows";

/// How management tells the request path what it changed, right after the
/// commit (other processes learn it from the change feed).
pub(crate) trait ChangeHook: Send + Sync {
    /// Drops or marks the cached authentications `changes` make stale, and
    /// detaches verifications in flight.
    fn invalidate(&self, changes: &[Change]);
    /// A token this process just created: known at once, without a poll.
    fn learn_token(&self, id: TokenId, secret_tag: u32);
}

impl ChangeHook for Inner {
    fn invalidate(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let affected = self.cache.invalidate(changes);
        self.verifier.detach(changes);
        self.metrics.invalidations.inc_by(changes.len() as u64);
        tracing::debug!(changes = changes.len(), affected, "cache invalidated");
    }

    fn learn_token(&self, id: TokenId, secret_tag: u32) {
        self.feed.learn(id, Some(secret_tag));
    }
}

/// What a gate gives the management component (see
/// [`TokenGate::management_parts`]).
#[derive(Clone)]
pub(crate) struct ManagementParts {
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) hasher: SecretHasher,
    pub(crate) clock: WallClock,
    pub(crate) format: TokenFormat,
    pub(crate) scopes: Arc<[String]>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store_timeout: Duration,
    pub(crate) hook: Arc<dyn ChangeHook>,
}

/// Test hooks (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
impl TokenGate {
    /// How many argon2 verifications this gate ran.
    pub fn argon2_verifications(&self) -> u64 {
        self.inner.verifier.argon2_verifications()
    }

    /// Number of cached authentications.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// Reads the change feed now, as the background poll would.
    pub async fn poll_changes(&self) -> bool {
        self.sync_feed().await
    }

    /// Writes pending last-use times now, as the background flush would.
    pub async fn flush_last_use(&self) -> Result<usize, StoreError> {
        maintenance::flush_last_used(self).await
    }

    /// Moves the gate's wall clock, as a stepped host clock would (expiry,
    /// stored timestamps; rate windows keep their monotonic time).
    pub fn step_wall_clock(&self, by: time::Duration) {
        let ms = by.whole_milliseconds();
        self.inner
            .clock
            .step(i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }));
    }
}
