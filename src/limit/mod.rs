//! Strict sliding-window rate limiting, keyed by token id.
//!
//! [`window`] holds the arithmetic (pure, property-tested); [`MemoryRateLimiter`]
//! keeps one window per token in a sharded map for a single process; the
//! [`RateLimitStore`] trait lets a shared backend (Redis, feature `redis`)
//! enforce the same algorithm across several instances.
//!
//! # Example
//!
//! ```
//! use tokengate::{MemoryRateLimiter, TokenId};
//! use tokengate::limit::WindowConfig;
//!
//! let limiter = MemoryRateLimiter::new(WindowConfig::default());
//! let token = TokenId::random();
//! let now_ms = 1_800_000_000_000;
//! let first = limiter.check_at(&token, 2, now_ms);
//! assert!(first.allowed);
//! assert_eq!(first.remaining, 1);
//! assert!(limiter.check_at(&token, 2, now_ms + 1).allowed);
//! let third = limiter.check_at(&token, 2, now_ms + 2);
//! assert!(!third.allowed);
//! assert!(third.retry_after_secs() > 3500);
//! ```

use async_trait::async_trait;

use crate::token::TokenId;

mod memory;
#[cfg(feature = "redis")]
mod redis;
pub mod window;

pub use memory::MemoryRateLimiter;
#[cfg(feature = "redis")]
pub use redis::{RedisLimiterConfig, RedisRateLimiter};
pub use window::{Decision, WindowConfig, WindowState};

/// The limiter backend could not answer.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit backend unavailable: {0}")]
pub struct LimitError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Where sliding windows live. Implementations must make one check atomic:
/// concurrent checks on one token never admit more than the limit.
#[async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    /// Checks (and, if admitted, counts) one request for `token` against `limit` per window.
    async fn check(&self, token: &TokenId, limit: u32) -> Result<Decision, LimitError>;

    /// Tokens with live state in this process, if the backend knows (for metrics).
    fn tracked_tokens(&self) -> Option<usize> {
        None
    }

    /// Drops state of idle tokens. Backends whose keys expire on their own do nothing.
    fn evict_idle(&self) {}
}
