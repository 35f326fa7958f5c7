//! [`TokenGateBuilder`]: every knob of a [`TokenGate`], with its default and why.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, Timing, TokenGate};
use crate::clock::{WallClock, monotonic_unix_ms};
use crate::config_error::ConfigError;
use crate::hash::{Argon2Params, SecretHasher};
use crate::limit::{LimiterFailurePolicy, LimiterPolicy, RateLimitStore, WindowConfig};
use crate::metrics::Metrics;
use crate::store::TokenStore;
use crate::token::TokenFormat;

/// Configures a [`TokenGate`]. Every knob has a production default.
#[must_use]
pub struct TokenGateBuilder {
    store: Arc<dyn TokenStore>,
    format: TokenFormat,
    argon2: Argon2Params,
    max_concurrent_verifies: usize,
    cache_capacity: usize,
    negative_ttl: Duration,
    shared_limiter: Option<Arc<dyn RateLimitStore>>,
    limiter_failure: LimiterFailurePolicy,
    window: WindowConfig,
    metrics: Option<Arc<Metrics>>,
    scopes: Vec<String>,
    timing: Timing,
}

impl std::fmt::Debug for TokenGateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGateBuilder")
            .field("format", &self.format)
            .field("argon2", &self.argon2)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl TokenGateBuilder {
    pub(super) fn new(store: Arc<dyn TokenStore>) -> Self {
        Self {
            store,
            format: TokenFormat::default(),
            argon2: Argon2Params::default(),
            max_concurrent_verifies: SecretHasher::default_concurrency(),
            cache_capacity: 100_000,
            negative_ttl: Duration::from_secs(30),
            shared_limiter: None,
            limiter_failure: LimiterFailurePolicy::default(),
            window: WindowConfig::default(),
            metrics: None,
            scopes: Vec::new(),
            timing: Timing {
                audit_retention: Duration::from_secs(400 * 24 * 3600),
                cache_ttl: Duration::from_secs(60),
                stale_if_error: Duration::from_secs(15 * 60),
                store_timeout: Duration::from_secs(5),
                change_poll_interval: Duration::from_millis(250),
                last_used_flush_interval: Duration::from_secs(10),
            },
        }
    }

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

    /// At most this many argon2 computations at once. Default: every core, so
    /// a restart storm (each active token's first request) takes `tokens ×
    /// one verify ÷ cores`; the argon2 threads run at a lower priority, so
    /// cached traffic keeps its cores (see `hash.rs`).
    pub fn with_max_concurrent_verifies(mut self, n: usize) -> Self {
        self.max_concurrent_verifies = n.max(1);
        self
    }

    /// How long a cached authentication is trusted before it is revalidated
    /// against the store (one lookup, no argon2). Default 60 s. Revocations and
    /// plan changes do not wait for this: they invalidate at once.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.timing.cache_ttl = ttl;
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
        self.timing.stale_if_error = grace;
        self
    }

    /// Longest wait for one store call made to authenticate (and for one
    /// change-feed read or background write). Past it the request gets 503,
    /// as if the store were down. Default 5 s.
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.timing.store_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long an unknown, revoked or expired token id is remembered, so
    /// repeats cost no lookup. Default 30 s.
    pub fn with_negative_cache_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// A rate limit shared by several instances, kept in Redis. Default:
    /// this process's own in-memory limiter.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn with_redis_limiter(mut self, limiter: crate::limit::RedisRateLimiter) -> Self {
        self.shared_limiter = Some(Arc::new(limiter));
        self
    }

    /// What to do when the shared rate-limit backend is down. Default: fail closed (503).
    pub fn with_limiter_failure_policy(mut self, policy: LimiterFailurePolicy) -> Self {
        self.limiter_failure = policy;
        self
    }

    /// How often the change feed is polled for revocations and plan changes made
    /// by other processes (the CLI, other instances). Default 250 ms.
    pub fn with_change_poll_interval(mut self, interval: Duration) -> Self {
        self.timing.change_poll_interval = interval;
        self
    }

    /// How long audit events are kept. Default 400 days (a year and a bit,
    /// for yearly reviews). Pruning runs in small batches in the background.
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.timing.audit_retention = retention;
        self
    }

    /// How often batched `last_used_at` times and usage counts are written. Default 10 s.
    pub fn with_last_used_flush_interval(mut self, interval: Duration) -> Self {
        self.timing.last_used_flush_interval = interval;
        self
    }

    /// The scopes your API knows (e.g. `tests:read`): tokens may be
    /// created with any of them, and an unknown one is refused by name.
    /// Default: none (tokens then carry every scope, `*`).
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Metrics registry to count into. Default: a fresh one, see [`TokenGate::metrics`].
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Builds the gate. Starts no task and no thread: see
    /// [`TokenGate::spawn_maintenance`]; tokens are created with a
    /// [`Manager`](crate::Manager) made from the gate.
    pub fn build(mut self) -> Result<TokenGate, ConfigError> {
        if let Some(bad) = self.scopes.iter().find(|s| !crate::scope::is_valid_name(s)) {
            return Err(ConfigError::InvalidScope(bad.clone()));
        }
        self.scopes.sort();
        self.scopes.dedup();
        let metrics = self.metrics.unwrap_or_default();
        let hasher = SecretHasher::with_metrics(
            self.argon2,
            self.max_concurrent_verifies,
            Some(Arc::clone(&metrics)),
        )?;
        Ok(TokenGate {
            inner: Arc::new(Inner {
                store: self.store,
                format: self.format,
                clock: WallClock::default(),
                cache: super::VerifiedCache::new(self.cache_capacity),
                verifier: super::Verifier::new(hasher.clone(), self.negative_ttl),
                hasher,
                feed: super::Feed::new(monotonic_unix_ms()),
                last_use: super::LastUse::default(),
                usage: super::PendingUsage::default(),
                limiter: LimiterPolicy::new(self.window, self.shared_limiter, self.limiter_failure),
                metrics,
                scopes: self.scopes.into(),
                timing: self.timing,
            }),
        })
    }
}
