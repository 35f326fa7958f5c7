//! Strict sliding-window rate limiting, keyed by token id.
//!
//! `window.rs` holds the arithmetic (pure, property-tested); `memory.rs`
//! keeps one window per token in a sharded map for a single process;
//! `redis.rs` (feature `redis`) enforces the same algorithm across several
//! instances, with leases (`lease.rs`) and re-seeds after Redis lost the
//! windows (`reseed.rs`); `policy.rs` decides which of them answers a request, and what
//! happens when the shared one is down.

use async_trait::async_trait;

use crate::token::TokenId;

#[cfg(any(test, feature = "redis"))]
mod lease;
#[cfg(test)]
mod lease_model;
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_reseed;
#[cfg(feature = "redis")]
mod redis_script;
#[cfg(any(test, feature = "redis"))]
mod reseed;
#[cfg(test)]
mod reseed_model;
#[cfg(test)]
mod two_windows;
#[expect(
    clippy::cast_possible_truncation,
    reason = "ring slots are `bucket % ring_len` and ring_len is a small usize (B + 1 buckets)"
)]
pub(crate) mod window;

pub(crate) use memory::{MemoryRateLimiter, Tally};
pub use policy::LimiterFailurePolicy;
pub(crate) use policy::{LimiterPolicy, Quota, Refused};
#[cfg(feature = "redis")]
pub use redis::RedisRateLimiter;
pub use window::Decision;
pub(crate) use window::WindowConfig;

/// The shared rate-limit backend could not answer.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit backend unavailable: {0}")]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub struct LimitError(#[source] pub(crate) Box<dyn std::error::Error + Send + Sync>);

/// Where sliding windows live. Implementations must make one check atomic:
/// concurrent checks on one token never admit more than the limit.
#[async_trait]
pub(crate) trait RateLimitStore: Send + Sync + 'static {
    /// Checks (and, if admitted, counts) one request for `token` against
    /// `limit` per window and, with `Some((account, ceiling))`, against the
    /// account's shared window: admitted only if both have room, counted in
    /// both or neither. The decision describes the binding window.
    async fn check(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Result<Decision, LimitError>;

    /// The answer without a round trip, when the backend can give one
    /// (a lease's permit, a refusal that still stands). Counts like `check`.
    fn check_now(
        &self,
        _token: &TokenId,
        _limit: u32,
        _account: Option<(&str, u32)>,
    ) -> Option<Decision> {
        None
    }

    /// Tokens with live state in this process, if the backend knows (for metrics).
    fn tracked_tokens(&self) -> Option<usize> {
        None
    }

    /// Drops state of idle tokens. Backends whose keys expire on their own do nothing.
    fn evict_idle(&self) {}

    /// One request admitted by the local fallback while this backend was
    /// unreachable: a shared backend adds it to its windows once it is back.
    fn admitted_locally(&self, _token: &TokenId, _account: Option<&str>) {}

    /// Times the backend was found to have lost its windows (and re-seeded).
    fn resets_detected(&self) -> u64 {
        0
    }
}
