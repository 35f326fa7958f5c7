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
//! request through them, `revalidate.rs` re-reads a cached token's state,
//! and [`invalidate_all`](TokenGate::invalidate_all) applies a change to all
//! of them. One `TokenGate` is shared by the layer (which authenticates) and
//! by the admin API, settings page and CLI (which change tokens through
//! `manage.rs`), so a revocation reaches the cache the moment it commits.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{WallClock, monotonic_unix_ms};
use crate::limit::LimiterPolicy;
use crate::metrics::Metrics;
use crate::store::{Change, TokenStore};
use crate::token::TokenFormat;

mod authenticate;
pub(crate) use authenticate::Quick;
mod builder;
mod cache;
mod feed;
mod maintenance;
mod revalidate;
mod usage;
mod verify;

pub use builder::{BuildError, TokenGateBuilder};
pub use maintenance::Maintenance;

use cache::VerifiedCache;
use feed::{Feed, Outage};
use usage::{LastUse, PendingUsage};
use verify::Verifier;

/// The token engine: authenticates requests, rate-limits them, and applies
/// token changes. Cheap to clone; clones share everything.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tokengate::{Argon2Params, SqliteStore, TokenGate, TokenStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let gate = TokenGate::builder(Arc::new(store))
///     .with_argon2_params(Argon2Params::insecure_fast_for_tests())
///     .build()?;
/// gate.set_account_plan("acct_1", "pro").await?;
/// let created = gate.create_token("acct_1", "CI", None).await?;
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
    cache: VerifiedCache,
    verifier: Verifier,
    feed: Feed,
    last_use: LastUse,
    usage: PendingUsage,
    limiter: LimiterPolicy,
    metrics: Arc<Metrics>,
    /// The scopes tokens may be created with, sorted.
    scopes: Vec<String>,
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
    pub fn new(store: Arc<dyn TokenStore>) -> Result<Self, BuildError> {
        Self::builder(store).build()
    }

    /// Starts configuring a gate on `store`.
    pub fn builder(store: Arc<dyn TokenStore>) -> TokenGateBuilder {
        TokenGateBuilder::new(store)
    }

    /// A [`TokenGateLayer`](crate::TokenGateLayer) that guards routes with this gate.
    pub fn layer(&self) -> crate::TokenGateLayer {
        crate::TokenGateLayer::new(self.clone())
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
    pub async fn ping(&self) -> Result<(), crate::StoreError> {
        feed::within(self.inner.timing.store_timeout, self.inner.store.ping()).await
    }

    pub(crate) fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    pub(crate) fn clock(&self) -> &WallClock {
        &self.inner.clock
    }

    /// Runs a store call with the configured store timeout.
    pub(crate) async fn within_store_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, crate::StoreError>>,
    ) -> Result<T, crate::StoreError> {
        feed::within(self.inner.timing.store_timeout, call).await
    }

    /// Hashes a new token's secret (argon2id, on the bounded pool).
    pub(crate) async fn hash_secret(
        &self,
        secret: crate::token::SecretBytes,
    ) -> Result<String, crate::hash::HashError> {
        self.inner.verifier.hash(secret).await
    }

    /// Whether a parsed token's secret is the stored credential's (the tag,
    /// then argon2 for tokens made before tags).
    pub(crate) async fn secret_matches(
        &self,
        token: &crate::token::ParsedToken,
        credential: &crate::store::Credential,
    ) -> Result<bool, crate::ManageError> {
        match self.inner.verifier.check_secret(token, credential).await {
            Ok(verify::SecretCheck::Right { .. }) => Ok(true),
            Ok(verify::SecretCheck::Wrong) => Ok(false),
            Err(e) => Err(crate::ManageError::Internal(e.to_string())),
        }
    }

    /// A token this process just created: known at once, without a poll.
    pub(crate) fn learn_token(&self, id: crate::TokenId, secret_tag: u32) {
        self.inner.feed.learn(id, Some(secret_tag));
    }

    /// Applies changes to this process's state at once (the management
    /// operations call this after committing; the feed for other processes'
    /// changes): cached authentications are dropped or marked, and
    /// verifications in flight are detached.
    pub(crate) fn invalidate_all(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let affected = self.inner.cache.invalidate(changes);
        self.inner.verifier.detach(changes);
        self.inner
            .metrics
            .invalidations
            .inc_by(changes.len() as u64);
        tracing::debug!(changes = changes.len(), affected, "cache invalidated");
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
                        gate.invalidate_all(&changes);
                        inner.feed.succeeded(now_ms);
                        true
                    }
                    Err(e) => {
                        if inner.feed.failed(&e, now_ms) == Outage::TooLong {
                            gate.invalidate_all(&[Change::Everything]);
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

    /// Writes pending `last_used_at` times and usage counts; on failure
    /// they are kept for the next try.
    pub(crate) async fn flush_last_used(&self) -> Result<usize, crate::StoreError> {
        let inner = &self.inner;
        let timeout = inner.timing.store_timeout;
        let store = inner.store.as_ref();
        let used = feed::within(timeout, inner.last_use.flush(store)).await;
        let taken = inner.limiter.take_usage();
        let counted =
            feed::within(timeout, inner.usage.flush(taken, inner.clock.now(), store)).await;
        counted?;
        used
    }

    /// Periodic cleanup: idle rate-limit windows, expired negative entries,
    /// old change rows, audit events past their retention and usage older
    /// than 90 days (in bounded batches); refreshes the gauges.
    pub(crate) async fn housekeeping(&self, change_retention: Duration) {
        const BATCH: u32 = 1000;
        const USAGE_RETENTION: time::Duration = time::Duration::days(90);
        let inner = &self.inner;
        inner.limiter.evict_idle();
        inner.verifier.sweep(monotonic_unix_ms());
        self.refresh_gauges();
        let now = inner.clock.now();
        let store = inner.store.as_ref();
        let audit_cutoff = now - inner.timing.audit_retention;
        let pruned = async {
            self.within_store_timeout(store.prune_changes(now - change_retention))
                .await?;
            // At most ten batches a run: a backlog is worked off over several
            // runs without holding the database for long.
            for _ in 0..10 {
                let audit = self
                    .within_store_timeout(store.prune_audit(audit_cutoff, BATCH))
                    .await?;
                let usage = self
                    .within_store_timeout(store.prune_usage(now - USAGE_RETENTION, BATCH))
                    .await?;
                if audit < u64::from(BATCH) && usage < u64::from(BATCH) {
                    break;
                }
            }
            Ok::<_, crate::StoreError>(())
        }
        .await;
        if let Err(e) = pruned {
            tracing::debug!(error = %e, "could not prune old changes, audit events or usage");
        }
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

    /// The intervals of the background tasks.
    pub(crate) fn intervals(&self) -> (Duration, Duration) {
        (
            self.inner.timing.change_poll_interval,
            self.inner.timing.last_used_flush_interval,
        )
    }

    pub(crate) fn limiter(&self) -> &LimiterPolicy {
        &self.inner.limiter
    }
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
    pub async fn flush_last_use(&self) -> Result<usize, crate::StoreError> {
        self.flush_last_used().await
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
