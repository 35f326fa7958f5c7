//! Prometheus metrics, rendered in the text exposition format at `GET /metrics`.
//!
//! Every counter on the request path is resolved once at start-up, so counting
//! a request is one relaxed atomic add: no label lookup, no lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

const STRIPES: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A counter split over cache-line-padded stripes, one per thread (modulo 8),
/// summed when scraped. Request-path counters are bumped by every worker on
/// every request; a single atomic would bounce its cache line between cores.
#[derive(Clone, Default)]
pub(crate) struct StripedCounter(Arc<[Padded; STRIPES]>);

impl StripedCounter {
    pub(crate) fn inc(&self) {
        thread_local! {
            static STRIPE: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
            };
        }
        let stripe = STRIPE.with(|s| *s);
        self.0[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

impl std::fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StripedCounter({})", self.get())
    }
}

impl TypedMetric for StripedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StripedCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// How one request through the gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Authenticated and admitted.
    Ok,
    /// 401: missing, malformed, unknown, wrong, revoked or expired token.
    Unauthorized,
    /// 403: the plan has no API access.
    Forbidden,
    /// 429: over the plan's hourly limit.
    RateLimited,
    /// 503: a backend was unavailable.
    Unavailable,
}

/// The process's metrics. Shared by the gate, the hasher and the admin API.
pub struct Metrics {
    registry: Mutex<Registry>,
    outcome_ok: StripedCounter,
    outcome_unauthorized: StripedCounter,
    outcome_forbidden: StripedCounter,
    outcome_rate_limited: StripedCounter,
    outcome_unavailable: StripedCounter,
    pub(crate) cache_hits: StripedCounter,
    pub(crate) cache_misses: StripedCounter,
    pub(crate) cache_entries: Gauge,
    pub(crate) invalidations: Counter,
    pub(crate) feed_polls: Counter,
    pub(crate) wrong_secrets: Counter,
    verify_seconds: Histogram,
    pub(crate) limiter_tracked: Gauge,
    pub(crate) limiter_backend_errors: Counter,
    pub(crate) limiter_fallbacks: Counter,
    pub(crate) limiter_resets: Counter,
    admin_operations: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every tokengate metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokengate");
        let requests = Family::<Labels, StripedCounter>::default();
        registry.register(
            "requests",
            "Requests through the gate, by outcome (ok, unauthorized, forbidden, rate_limited, unavailable)",
            requests.clone(),
        );
        let outcome = |name: &str| {
            requests
                .get_or_create(&vec![("outcome".to_owned(), name.to_owned())])
                .clone()
        };
        let metrics = Self {
            outcome_ok: outcome("ok"),
            outcome_unauthorized: outcome("unauthorized"),
            outcome_forbidden: outcome("forbidden"),
            outcome_rate_limited: outcome("rate_limited"),
            outcome_unavailable: outcome("unavailable"),
            cache_hits: StripedCounter::default(),
            cache_misses: StripedCounter::default(),
            cache_entries: Gauge::default(),
            invalidations: Counter::default(),
            feed_polls: Counter::default(),
            wrong_secrets: Counter::default(),
            verify_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 12)),
            limiter_tracked: Gauge::default(),
            limiter_backend_errors: Counter::default(),
            limiter_fallbacks: Counter::default(),
            limiter_resets: Counter::default(),
            admin_operations: Family::default(),
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "cache_hits",
            "Authentications answered from the verified-token cache",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Authentications that had to consult the store",
            metrics.cache_misses.clone(),
        );
        registry.register(
            "cache_entries",
            "Entries in the verified-token cache",
            metrics.cache_entries.clone(),
        );
        registry.register(
            "cache_invalidations",
            "Invalidation events applied to the cache (revoke, rotate, plan and account changes)",
            metrics.invalidations.clone(),
        );
        registry.register(
            "feed_polls",
            "Reads of the store's change feed (periodic, and coalesced on behalf of unknown token ids)",
            metrics.feed_polls.clone(),
        );
        registry.register(
            "wrong_secrets",
            "Wrong secrets for a known token id, refused by their tag without argon2",
            metrics.wrong_secrets.clone(),
        );
        registry.register(
            "argon2_verify_seconds",
            "Duration of argon2id verifications (the count is the number of verifications)",
            metrics.verify_seconds.clone(),
        );
        registry.register(
            "ratelimit_tracked_tokens",
            "Tokens with live rate-limit state in this process",
            metrics.limiter_tracked.clone(),
        );
        registry.register(
            "ratelimit_backend_errors",
            "Rate-limit checks that failed because the limiter backend was unavailable",
            metrics.limiter_backend_errors.clone(),
        );
        registry.register(
            "ratelimit_fallbacks",
            "Rate-limit checks answered by the local limiter because the shared backend was down",
            metrics.limiter_fallbacks.clone(),
        );
        registry.register(
            "ratelimit_resets",
            "Times this instance found that Redis had lost the shared rate-limit windows (restart, failover, flush) and added its counts of the last hour back",
            metrics.limiter_resets.clone(),
        );
        registry.register(
            "admin_operations",
            "Admin API and CLI operations, by operation",
            metrics.admin_operations.clone(),
        );
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        metrics
    }

    /// Counts one request outcome.
    pub(crate) fn record_outcome(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Ok => &self.outcome_ok,
            Outcome::Unauthorized => &self.outcome_unauthorized,
            Outcome::Forbidden => &self.outcome_forbidden,
            Outcome::RateLimited => &self.outcome_rate_limited,
            Outcome::Unavailable => &self.outcome_unavailable,
        };
        counter.inc();
    }

    pub(crate) fn record_verify(&self, elapsed: Duration) {
        self.verify_seconds.observe(elapsed.as_secs_f64());
    }

    /// Counts one admin operation (`create_token`, `revoke_token`, ...).
    pub(crate) fn record_admin(&self, operation: &str) {
        self.admin_operations
            .get_or_create(&vec![("operation".to_owned(), operation.to_owned())])
            .inc();
    }

    /// The metrics in Prometheus text format (version 0.0.4 compatible, OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_outcomes_in_text_format() {
        let metrics = Metrics::new();
        metrics.record_outcome(Outcome::Ok);
        metrics.record_outcome(Outcome::Ok);
        metrics.record_outcome(Outcome::RateLimited);
        metrics.record_admin("create_token");
        metrics.record_verify(Duration::from_millis(3));
        metrics.limiter_resets.inc_by(2);
        let text = metrics.render();
        assert!(
            text.contains("tokengate_requests_total{outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("tokengate_requests_total{outcome=\"rate_limited\"} 1"));
        assert!(text.contains("tokengate_requests_total{outcome=\"unauthorized\"} 0"));
        assert!(text.contains("tokengate_admin_operations_total{operation=\"create_token\"} 1"));
        assert!(text.contains("tokengate_argon2_verify_seconds_count 1"));
        assert!(text.contains("# TYPE tokengate_cache_hits counter"));
        assert!(
            text.contains("tokengate_ratelimit_resets_total 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
