//! [`TokenGate`]: how a request's token is checked, and everything that keeps that fast.
//!
//! ```text
//! Authorization header
//!   -> parse (RFC 6750)                                   401, no I/O
//!   -> token shape (prefix, length, alphabet, CRC-32)      401, no I/O
//!   -> verified-token cache (SHA-256 of the token)         hit: plan check
//!   -> negative cache (unknown / revoked / expired ids)    401, no I/O
//!   -> store lookup by token id (one indexed read)         401 unknown/revoked/expired, 503 on fault
//!   -> failed-verification throttle per (token id, client)  429, no argon2
//!   -> argon2id verify: single-flight per token, bounded   401 wrong secret
//!   -> plan check                                          403 no API access
//!   -> sliding-window limiter keyed by token id            429
//! ```
//!
//! One `TokenGate` is shared by the layer (which authenticates) and by the
//! admin API and CLI (which mutate tokens through [`crate::manage`]), so a
//! revocation reaches the cache the moment it commits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{HeaderMap, HeaderValue};

use crate::bearer::{BearerError, is_bearer_scheme, parse_bearer, single_authorization};
use crate::cache::{CachedAuth, TokenDigest, VerifiedCache};
use crate::clock::Clock;
use crate::extract::Principal;
use crate::feed::Feed;
use crate::hash::{Argon2Params, InvalidArgon2Params, SecretHasher};
use crate::limit::{Decision, MemoryRateLimiter, RateLimitStore, WindowConfig};
use crate::metrics::Metrics;
use crate::store::{Change, Credential, StoreError, TokenStore};
use crate::throttle::{FailureThrottle, NegativeCache, Source};
use crate::token::{ParsedToken, TokenFormat, TokenId};

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 401: no bearer credentials (no `Authorization` header, or one with
    /// another scheme such as `Basic`); the challenge names no error code.
    MissingToken,
    /// 401: malformed, unknown, wrong, revoked or expired token.
    InvalidToken,
    /// 403: the plan has no API access.
    NoApiAccess,
    /// 429: too many failed verifications for this token id; retry after this many seconds.
    TooManyFailures(u64),
    /// 429: over the plan's limit.
    RateLimited(Decision),
    /// 503: a backend could not answer.
    Unavailable,
}

/// What to do when a shared rate-limit backend (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimiterFailurePolicy {
    /// Answer 503: never admit a request the limit was not checked for. The default.
    #[default]
    FailClosed,
    /// Check against this process's own in-memory limiter until the backend is back.
    /// Each instance then enforces the limit separately, so N instances may
    /// together admit up to N times the limit during the outage.
    FallBackToLocal,
}

/// A [`TokenGate`] that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// argon2 refused the parameters.
    #[error(transparent)]
    Argon2(#[from] InvalidArgon2Params),
}

/// Configures a [`TokenGate`]. Every knob has a production default.
pub struct TokenGateBuilder {
    store: Arc<dyn TokenStore>,
    format: TokenFormat,
    argon2: Argon2Params,
    max_concurrent_verifies: usize,
    cache_ttl: Duration,
    cache_capacity: usize,
    stale_if_error: Duration,
    store_timeout: Duration,
    negative_ttl: Duration,
    max_failed_verifies: u32,
    failure_window: Duration,
    limiter: Option<Arc<dyn RateLimitStore>>,
    limiter_failure: LimiterFailurePolicy,
    window: WindowConfig,
    change_poll_interval: Duration,
    last_used_flush_interval: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl TokenGateBuilder {
    /// The token format (prefix). Default: prefix `iit_`.
    pub fn with_token_format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// argon2id parameters for new hashes. Default: OWASP's m = 19 MiB, t = 2, p = 1.
    pub fn with_argon2_params(mut self, params: Argon2Params) -> Self {
        self.argon2 = params;
        self
    }

    /// At most this many argon2 computations at once. Default: half the cores
    /// (at least one), so verification floods leave CPU for cached traffic.
    pub fn with_max_concurrent_verifies(mut self, n: usize) -> Self {
        self.max_concurrent_verifies = n.max(1);
        self
    }

    /// How long a cached authentication is trusted before it is revalidated
    /// against the store (one lookup, no argon2). Default 60 s. Revocations and
    /// plan changes do not wait for this: they invalidate at once.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Maximum cached authentications. Default 100,000 (about 30 MB).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity.max(1);
        self
    }

    /// How long past its TTL a cached token keeps working while the store is
    /// unreachable. Default 15 minutes: an outage of the database does not log
    /// out active clients. With one database no revocation can happen while it
    /// is down; with several instances, an instance cut off from a database
    /// that others still reach keeps serving what it cached (up to TTL plus
    /// this), so keep it short where that matters more than availability.
    pub fn with_stale_if_error(mut self, grace: Duration) -> Self {
        self.stale_if_error = grace;
        self
    }

    /// Longest wait for one store call made to authenticate (and for one
    /// change-feed read). Past it the request gets 503, as if the store were
    /// down. Default 5 s.
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long an unknown, revoked or expired token id is remembered, so
    /// repeats cost no lookup. Default 30 s.
    pub fn with_negative_cache_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Failed verifications allowed per token id and client address within
    /// `window` before further uncached attempts from that address on that id
    /// get 429 without any argon2 work; across all addresses an id gets ten
    /// times this. Default 10 per minute. A client with the right, cached
    /// token is unaffected. (Without client addresses, see
    /// [`authenticate_from`](TokenGate::authenticate_from), the limit is per id.)
    pub fn with_failed_verify_limit(mut self, failures: u32, window: Duration) -> Self {
        self.max_failed_verifies = failures.max(1);
        self.failure_window = window;
        self
    }

    /// A shared rate-limit backend (e.g. Redis). Default: an in-memory limiter.
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimitStore>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// What to do when the shared rate-limit backend is down. Default: fail closed (503).
    pub fn with_limiter_failure_policy(mut self, policy: LimiterFailurePolicy) -> Self {
        self.limiter_failure = policy;
        self
    }

    /// The in-memory limiter's window layout. Default: one hour in 60 one-minute buckets.
    pub fn with_window(mut self, window: WindowConfig) -> Self {
        self.window = window;
        self
    }

    /// How often the change feed is polled for revocations and plan changes made
    /// by other processes (the CLI, other instances). Default 250 ms.
    pub fn with_change_poll_interval(mut self, interval: Duration) -> Self {
        self.change_poll_interval = interval;
        self
    }

    /// How often batched `last_used_at` times are written. Default 10 s.
    pub fn with_last_used_flush_interval(mut self, interval: Duration) -> Self {
        self.last_used_flush_interval = interval;
        self
    }

    /// Metrics registry to count into. Default: a fresh one, see [`TokenGate::metrics`].
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Builds the gate. Starts no task: see [`TokenGate::spawn_maintenance`].
    pub fn build(self) -> Result<TokenGate, BuildError> {
        let metrics = self.metrics.unwrap_or_default();
        let clock = Clock::new();
        let hasher = SecretHasher::with_metrics(
            self.argon2,
            self.max_concurrent_verifies,
            Some(Arc::clone(&metrics)),
        )?;
        let local = Arc::new(MemoryRateLimiter::with_clock(self.window, clock));
        let limiter = match self.limiter {
            None => Limiter::Local(local),
            Some(shared) => Limiter::Shared {
                shared,
                fallback: (self.limiter_failure == LimiterFailurePolicy::FallBackToLocal)
                    .then_some(local),
            },
        };
        Ok(TokenGate {
            inner: Arc::new(Inner {
                store: self.store,
                format: self.format,
                hasher,
                cache: VerifiedCache::new(self.cache_capacity),
                cache_ttl_ms: saturating_ms(self.cache_ttl),
                stale_if_error_ms: saturating_ms(self.stale_if_error),
                store_timeout: self.store_timeout,
                negative: NegativeCache::new(self.negative_ttl, 65_536),
                throttle: FailureThrottle::new(self.max_failed_verifies, self.failure_window),
                flights: Mutex::default(),
                limiter,
                last_used: Mutex::default(),
                clock,
                metrics,
                feed: Feed::new(clock.now_unix_ms()),
                change_poll_interval: self.change_poll_interval,
                last_used_flush_interval: self.last_used_flush_interval,
            }),
        })
    }
}

impl TokenGate {
    /// Runs one store call with the configured
    /// [`with_store_timeout`](TokenGateBuilder::with_store_timeout): a database
    /// that hangs (a partition, not a refusal) is answered 503, and a
    /// background refresh or feed poll cannot stay "in progress" forever.
    pub(crate) async fn within_store_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let timeout = self.inner.store_timeout;
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::unavailable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the store within {timeout:?}"),
                )))
            })
    }
}

/// A malformed `Bearer` field is an invalid token; another scheme (`Basic`,
/// or no scheme at all) carries no bearer credentials: the 401 without an
/// error code (RFC 6750 §3.1). The body is the same either way.
fn not_a_bearer_token(value: &HeaderValue) -> Rejection {
    if is_bearer_scheme(value.as_bytes()) {
        Rejection::InvalidToken
    } else {
        Rejection::MissingToken
    }
}

fn saturating_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) enum Limiter {
    Local(Arc<MemoryRateLimiter>),
    Shared {
        shared: Arc<dyn RateLimitStore>,
        fallback: Option<Arc<MemoryRateLimiter>>,
    },
}

type Verdict = Result<Arc<CachedAuth>, Rejection>;

/// Verifications in progress, so concurrent first uses of a token share one.
#[derive(Default)]
struct Flights {
    by_digest: HashMap<TokenDigest, Flight>,
    started: u64,
}

struct Flight {
    id: TokenId,
    /// Which flight this is, so a finished one never removes its successor.
    generation: u64,
    result: Shared<BoxFuture<'static, Verdict>>,
}

/// Removes its flight's entry when the flight's task ends, however it ends.
struct FlightGuard {
    gate: TokenGate,
    digest: TokenDigest,
    generation: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self
            .gate
            .inner
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if flights
            .by_digest
            .get(&self.digest)
            .is_some_and(|flight| flight.generation == self.generation)
        {
            flights.by_digest.remove(&self.digest);
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) format: TokenFormat,
    pub(crate) hasher: SecretHasher,
    pub(crate) cache: VerifiedCache,
    cache_ttl_ms: u64,
    stale_if_error_ms: u64,
    store_timeout: Duration,
    pub(crate) negative: NegativeCache,
    pub(crate) throttle: FailureThrottle,
    flights: Mutex<Flights>,
    pub(crate) limiter: Limiter,
    pub(crate) last_used: Mutex<HashMap<TokenId, i64>>,
    pub(crate) clock: Clock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) feed: Feed,
    pub(crate) change_poll_interval: Duration,
    pub(crate) last_used_flush_interval: Duration,
}

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
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGate")
            .field("format", &self.inner.format)
            .field("hasher", &self.inner.hasher)
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
        TokenGateBuilder {
            store,
            format: TokenFormat::default(),
            argon2: Argon2Params::default(),
            max_concurrent_verifies: SecretHasher::default_concurrency(),
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 100_000,
            stale_if_error: Duration::from_secs(15 * 60),
            store_timeout: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(30),
            max_failed_verifies: 10,
            failure_window: Duration::from_secs(60),
            limiter: None,
            limiter_failure: LimiterFailurePolicy::default(),
            window: WindowConfig::default(),
            change_poll_interval: Duration::from_millis(250),
            last_used_flush_interval: Duration::from_secs(10),
            metrics: None,
        }
    }

    /// A [`TokenGateLayer`](crate::TokenGateLayer) that guards routes with this gate.
    pub fn layer(&self) -> crate::TokenGateLayer {
        crate::TokenGateLayer::new(self.clone())
    }

    /// The store behind the gate.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The token format.
    pub fn format(&self) -> &TokenFormat {
        &self.inner.format
    }

    /// The argon2id hasher (shared concurrency bound; counts verifications).
    pub fn hasher(&self) -> &SecretHasher {
        &self.inner.hasher
    }

    /// The metrics this gate counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Number of cached authentications.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// Authenticates a request's `Authorization` header and checks the plan.
    /// Does not rate-limit: see [`check_rate_limit`](Self::check_rate_limit).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Rejection> {
        self.authenticate_from(headers, None).await
    }

    /// [`authenticate`](Self::authenticate) for a request from `client`: failed
    /// verifications are then throttled per (token id, client address), so
    /// someone who knows a token id cannot lock its owner out. The layer passes
    /// axum's `ConnectInfo<SocketAddr>` when the server provides it.
    pub async fn authenticate_from(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Principal, Rejection> {
        let authorization = single_authorization(headers).cloned();
        self.authenticate_authorization(authorization, Source::of(client))
            .await
    }

    /// Authenticates the value of the request's only `Authorization` field.
    pub(crate) async fn authenticate_authorization(
        &self,
        authorization: Result<HeaderValue, BearerError>,
        source: Source,
    ) -> Result<Principal, Rejection> {
        let value = match authorization {
            Ok(value) => value,
            Err(BearerError::Missing) => return Err(Rejection::MissingToken),
            Err(BearerError::Malformed) => return Err(Rejection::InvalidToken),
        };
        match parse_bearer(value.as_bytes()) {
            Some(token) => self.authenticate_token_from(token, source).await,
            None => Err(not_a_bearer_token(&value)),
        }
    }

    /// Answers from memory alone when it can: malformed headers and tokens,
    /// and cached tokens that need no revalidation. `None` means the store (or
    /// argon2) is needed: call [`authenticate`](Self::authenticate).
    pub(crate) fn authenticate_cached(
        &self,
        authorization: Result<&HeaderValue, BearerError>,
        client: impl FnOnce() -> Option<IpAddr>,
    ) -> Option<Result<Principal, Rejection>> {
        let value = match authorization {
            Ok(value) => value,
            Err(BearerError::Missing) => return Some(Err(Rejection::MissingToken)),
            Err(BearerError::Malformed) => return Some(Err(Rejection::InvalidToken)),
        };
        let inner = &self.inner;
        let Some(token) = parse_bearer(value.as_bytes()) else {
            return Some(Err(not_a_bearer_token(value)));
        };
        if inner.format.check_shape(token).is_err() {
            return Some(Err(Rejection::InvalidToken));
        }
        let digest = TokenDigest::of(token);
        let now_ms = inner.clock.now_unix_ms();
        let cached = inner.cache.with(&digest, |entry| {
            if entry.must_revalidate.load(Ordering::Acquire) {
                return None;
            }
            if entry.refresh_after_ms <= now_ms {
                self.refresh_in_background(digest, entry);
            }
            Some(self.admit(entry, now_ms))
        });
        match cached {
            Some(Some(answer)) => {
                inner.metrics.cache_hits.inc();
                Some(answer)
            }
            Some(None) => None,
            // Not cached: ids already known to fail are answered from memory.
            None => {
                let id = inner.format.parse(token).ok()?.id();
                if inner.negative.contains(&id, now_ms) {
                    return Some(Err(Rejection::InvalidToken));
                }
                if let Some(wait) = inner
                    .throttle
                    .blocked_for(&id, Source::of(client()), now_ms)
                {
                    return Some(Err(Rejection::TooManyFailures(wait)));
                }
                None
            }
        }
    }

    /// The in-memory limiter's answer, when that is the limiter in use.
    pub(crate) fn check_rate_limit_local(
        &self,
        principal: &Principal,
    ) -> Option<Result<Decision, Rejection>> {
        let Limiter::Local(local) = &self.inner.limiter else {
            return None;
        };
        let decision = local.check_now(&principal.token_id(), principal.requests_per_hour());
        Some(if decision.allowed {
            Ok(decision)
        } else {
            Err(Rejection::RateLimited(decision))
        })
    }

    /// Authenticates a bare token and checks the plan.
    pub async fn authenticate_token(&self, token: &str) -> Result<Principal, Rejection> {
        self.authenticate_token_from(token, Source::Unknown).await
    }

    async fn authenticate_token_from(
        &self,
        token: &str,
        source: Source,
    ) -> Result<Principal, Rejection> {
        let inner = &self.inner;
        if inner.format.check_shape(token).is_err() {
            return Err(Rejection::InvalidToken);
        }
        let digest = TokenDigest::of(token);
        let now_ms = inner.clock.now_unix_ms();
        let entry = match inner.cache.get(&digest) {
            Some(entry) => {
                inner.metrics.cache_hits.inc();
                if entry.must_revalidate.load(Ordering::Acquire) {
                    self.revalidate_now(digest, entry).await?
                } else {
                    if entry.refresh_after_ms <= now_ms {
                        self.refresh_in_background(digest, &entry);
                    }
                    entry
                }
            }
            None => {
                inner.metrics.cache_misses.inc();
                self.verify_uncached(token, digest, source).await?
            }
        };
        self.admit(&entry, now_ms)
    }

    /// Checks (and counts) one request against the principal's hourly limit.
    pub async fn check_rate_limit(&self, principal: &Principal) -> Result<Decision, Rejection> {
        let (id, limit) = (principal.token_id(), principal.requests_per_hour());
        let decision = match &self.inner.limiter {
            Limiter::Local(local) => local.check_now(&id, limit),
            Limiter::Shared { shared, fallback } => match shared.check(&id, limit).await {
                Ok(decision) => decision,
                Err(e) => {
                    self.inner.metrics.limiter_backend_errors.inc();
                    // The backend logs its own transitions; per request, debug only.
                    let Some(local) = fallback else {
                        tracing::debug!(error = %e, "rate-limit backend down: failing closed (503)");
                        return Err(Rejection::Unavailable);
                    };
                    tracing::debug!(error = %e, "rate-limit backend down: using the local limiter");
                    self.inner.metrics.limiter_fallbacks.inc();
                    local.check_now(&id, limit)
                }
            },
        };
        if decision.allowed {
            Ok(decision)
        } else {
            Err(Rejection::RateLimited(decision))
        }
    }

    fn admit(&self, entry: &CachedAuth, now_ms: u64) -> Result<Principal, Rejection> {
        let now_secs = (now_ms / 1000) as i64;
        if entry.is_expired_at(now_secs) {
            return Err(Rejection::InvalidToken);
        }
        // Record last use at most once per token per second. Load before
        // swapping: a read keeps the cache line shared between cores.
        let now_secs_u = now_secs as u64;
        if entry.last_seen_sec.load(Ordering::Relaxed) != now_secs_u
            && entry.last_seen_sec.swap(now_secs_u, Ordering::Relaxed) != now_secs_u
        {
            let mut pending = self
                .inner
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.insert(entry.principal.token_id(), now_secs);
        }
        if !entry.api_access {
            return Err(Rejection::NoApiAccess);
        }
        Ok(entry.principal.clone())
    }

    /// The account's plan or the plan itself changed: re-read the token's state
    /// before answering (no argon2: the secret of a token id never changes).
    async fn revalidate_now(&self, digest: TokenDigest, entry: Arc<CachedAuth>) -> Verdict {
        let inner = &self.inner;
        let read_epoch = inner.cache.epoch();
        let id = entry.principal.token_id();
        match self
            .within_store_timeout(inner.store.find_credential(&id))
            .await
        {
            Ok(Some(credential)) if is_usable(&credential, inner.clock.now_unix_ms()) => {
                let fresh = Arc::new(self.cached_auth(&credential, inner.clock.now_unix_ms()));
                fresh.last_seen_sec.store(
                    entry.last_seen_sec.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                // If another change raced this read, the insert is refused and
                // the next request revalidates again; this one uses what it read.
                inner.cache.insert(
                    digest,
                    Arc::clone(&fresh),
                    read_epoch,
                    inner.clock.now_unix_ms(),
                );
                Ok(fresh)
            }
            Ok(_) => {
                inner.cache.remove(&digest, &entry);
                inner.negative.insert(id, inner.clock.now_unix_ms());
                Err(Rejection::InvalidToken)
            }
            Err(e) => {
                // The plan is known to have changed; answering from the old one
                // could let a downgraded account through.
                tracing::error!(error = %e, token_id = %id, "store unavailable while revalidating a changed plan");
                Err(Rejection::Unavailable)
            }
        }
    }

    /// The TTL passed: re-read the token's state in the background, one
    /// refresh per entry at a time, while requests keep using the entry.
    fn refresh_in_background(&self, digest: TokenDigest, entry: &Arc<CachedAuth>) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let gate = self.clone();
        let entry = Arc::clone(entry);
        // A task, not the request's future: it finishes even if the client leaves.
        tokio::spawn(async move {
            let inner = &gate.inner;
            let read_epoch = inner.cache.epoch();
            let id = entry.principal.token_id();
            match gate
                .within_store_timeout(inner.store.find_credential(&id))
                .await
            {
                Ok(Some(credential)) if is_usable(&credential, inner.clock.now_unix_ms()) => {
                    let fresh = Arc::new(gate.cached_auth(&credential, inner.clock.now_unix_ms()));
                    fresh.last_seen_sec.store(
                        entry.last_seen_sec.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    if !inner
                        .cache
                        .insert(digest, fresh, read_epoch, inner.clock.now_unix_ms())
                    {
                        // A racing change: leave the entry marked or removed by it.
                        entry.refreshing.store(false, Ordering::Release);
                    }
                }
                Ok(_) => {
                    inner.cache.remove(&digest, &entry);
                    inner.negative.insert(id, inner.clock.now_unix_ms());
                }
                Err(e) => {
                    let deadline = entry
                        .refresh_after_ms
                        .saturating_add(inner.stale_if_error_ms);
                    if inner.clock.now_unix_ms() >= deadline {
                        tracing::error!(error = %e, token_id = %id, "store unavailable past the stale-if-error limit; dropping the cached token");
                        inner.cache.remove(&digest, &entry);
                    } else {
                        tracing::warn!(error = %e, token_id = %id, "store unavailable; serving the cached authentication");
                    }
                    entry.refreshing.store(false, Ordering::Release);
                }
            }
        });
    }

    /// Verifies a token that is not cached. Concurrent first uses of the same
    /// token share one verification (single-flight), which runs as its own
    /// task: a client that disconnects cannot cut it short, leak its entry in
    /// the flight map, or skip the failure accounting.
    async fn verify_uncached(&self, token: &str, digest: TokenDigest, source: Source) -> Verdict {
        let inner = &self.inner;
        let parsed = inner
            .format
            .parse(token)
            .map_err(|_| Rejection::InvalidToken)?;
        let id = parsed.id();
        let now_ms = inner.clock.now_unix_ms();
        if inner.negative.contains(&id, now_ms) {
            return Err(Rejection::InvalidToken);
        }
        if let Some(wait) = inner.throttle.blocked_for(&id, source, now_ms) {
            return Err(Rejection::TooManyFailures(wait));
        }
        if inner.feed.is_known(&id) == Some(false) {
            // Maybe created by another process since the last poll: wait for
            // a poll that started after this request arrived, then decide.
            if !self.sync_feed().await {
                return Err(Rejection::Unavailable);
            }
            if inner.feed.is_known(&id) == Some(false) {
                return Err(Rejection::InvalidToken);
            }
        }
        let (result, start) = {
            let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.by_digest.get(&digest) {
                Some(flight) => (flight.result.clone(), None),
                None => {
                    flights.started += 1;
                    let generation = flights.started;
                    let (send, receive) = tokio::sync::oneshot::channel();
                    // A verdict never sent (the task panicked or the runtime is
                    // shutting down) is a 503.
                    let result =
                        async move { receive.await.unwrap_or(Err(Rejection::Unavailable)) }
                            .boxed()
                            .shared();
                    flights.by_digest.insert(
                        digest,
                        Flight {
                            id,
                            generation,
                            result: result.clone(),
                        },
                    );
                    let guard = FlightGuard {
                        gate: self.clone(),
                        digest,
                        generation,
                    };
                    (result, Some((guard, send)))
                }
            }
        };
        // Spawned after the lock is released: a runtime that is shutting down
        // drops the task at once, and the guard's drop takes the lock.
        if let Some((guard, send)) = start {
            tokio::spawn(async move {
                // Dropped on return and on panic: the entry never outlives its flight.
                let guard = guard;
                let verdict = guard.gate.verify_with_store(parsed, digest, source).await;
                let _ = send.send(verdict);
            });
        }
        result.await
    }

    async fn verify_with_store(
        &self,
        parsed: ParsedToken,
        digest: TokenDigest,
        source: Source,
    ) -> Verdict {
        let inner = &self.inner;
        // A request that lost the race to an earlier flight finds its result
        // here (unless a change since asks for a fresh read).
        if let Some(entry) = inner.cache.get(&digest)
            && !entry.must_revalidate.load(Ordering::Acquire)
        {
            return Ok(entry);
        }
        let read_epoch = inner.cache.epoch();
        let id = parsed.id();
        let credential = match self
            .within_store_timeout(inner.store.find_credential(&id))
            .await
        {
            Ok(Some(credential)) => credential,
            Ok(None) => {
                inner.negative.insert(id, inner.clock.now_unix_ms());
                return Err(Rejection::InvalidToken);
            }
            Err(e) => {
                tracing::error!(error = %e, token_id = %id, "store unavailable during authentication");
                return Err(Rejection::Unavailable);
            }
        };
        if !is_usable(&credential, inner.clock.now_unix_ms()) {
            inner.negative.insert(id, inner.clock.now_unix_ms());
            return Err(Rejection::InvalidToken);
        }
        inner
            .throttle
            .try_begin(id, source, inner.clock.now_unix_ms())
            .map_err(Rejection::TooManyFailures)?;
        let secret = parsed.secret().clone();
        match inner
            .hasher
            .verify(secret, credential.secret_hash.clone())
            .await
        {
            Ok(true) => inner.throttle.succeeded(&id, source),
            Ok(false) => {
                tracing::debug!(token_id = %id, "wrong secret for a known token id");
                return Err(Rejection::InvalidToken);
            }
            Err(e) => {
                inner.throttle.succeeded(&id, source);
                tracing::error!(error = %e, token_id = %id, "cannot verify the stored hash");
                return Err(Rejection::Unavailable);
            }
        }
        let now_ms = inner.clock.now_unix_ms();
        let entry = Arc::new(self.cached_auth(&credential, now_ms));
        inner
            .cache
            .insert(digest, Arc::clone(&entry), read_epoch, now_ms);
        Ok(entry)
    }

    fn cached_auth(&self, credential: &Credential, now_ms: u64) -> CachedAuth {
        CachedAuth {
            principal: Principal::new(
                credential.token_id,
                credential.account_id.clone(),
                credential.plan.name.clone(),
                credential.plan.requests_per_hour,
            ),
            api_access: credential.plan.api_access,
            expires_at: credential.expires_at.map(|t| t.unix_timestamp()),
            refresh_after_ms: now_ms.saturating_add(self.inner.cache_ttl_ms),
            refreshing: AtomicBool::new(false),
            must_revalidate: AtomicBool::new(false),
            last_seen_sec: AtomicU64::new(0),
        }
    }

    /// Applies a change to this process's caches at once (the admin API and
    /// CLI call this after committing; the change poller for other processes).
    pub fn invalidate(&self, change: &Change) {
        self.invalidate_all(std::slice::from_ref(change));
    }

    /// Applies several changes in one pass over the cache.
    pub fn invalidate_all(&self, changes: &[Change]) {
        let affected = self.inner.cache.invalidate(changes);
        // A verification in flight read the store before this change: its
        // cache insert is refused (epochs), and requests arriving from now on
        // must not join it either, or a revoked token could be let in after
        // its revocation returned. They start a new flight instead.
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if !flights.by_digest.is_empty() {
            for change in changes {
                match change {
                    Change::Created(_) => {}
                    Change::Token(id) => flights.by_digest.retain(|_, flight| flight.id != *id),
                    Change::Account(_) | Change::Plan(_) | Change::Everything => {
                        flights.by_digest.clear()
                    }
                }
            }
        }
        drop(flights);
        self.inner
            .metrics
            .invalidations
            .inc_by(changes.len() as u64);
        tracing::debug!(changes = changes.len(), affected, "cache invalidated");
    }
}

fn is_usable(credential: &Credential, now_ms: u64) -> bool {
    let now_secs = (now_ms / 1000) as i64;
    credential.revoked_at.is_none()
        && credential
            .expires_at
            .is_none_or(|at| now_secs < at.unix_timestamp())
}
