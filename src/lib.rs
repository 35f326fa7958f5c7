//! # tokengate
//!
//! API tokens for a SaaS API: minted with 264 bits from the OS CSPRNG, shown
//! once, stored only as argon2id hashes, and checked by an axum/tower layer
//! that answers the documented 401/403 bodies and enforces a strict
//! per-token sliding-window rate limit with `X-RateLimit-*` headers and 429s.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use tokengate::{Principal, SqliteStore, TokenGate, TokenStore};
//!
//! async fn hello(principal: Principal) -> String {
//!     format!("hello, {} on {}", principal.account_id(), principal.plan())
//! }
//!
//! // One SQLite file (created if missing); migrations are embedded.
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//!
//! // The gate: argon2id verification, verified-token cache, rate limiter.
//! let gate = TokenGate::new(Arc::new(store))?;
//! let maintenance = gate.spawn_maintenance(); // change feed, last-use flushing
//!
//! // Mint a token for a Pro account; its plaintext exists only in `created`.
//! gate.set_account_plan("acct_42", "pro").await?;
//! let created = gate.create_token("acct_42", "CI", None).await?;
//! println!("shown once: {}", created.token.expose_secret());
//!
//! let app: Router = Router::new()
//!     .route("/api/v1/hello", get(hello))
//!     .layer(gate.layer());
//! // axum::serve(listener, app).await?;
//! # let _ = app;
//! maintenance.shutdown().await; // flushes last_used_at
//! # Ok(())
//! # }
//! ```
//!
//! The pieces, one concept per module: [`token`] (format), [`hash`]
//! (argon2id), [`store`] (SQLite / PostgreSQL), [`limit`] (sliding window),
//! [`layer`] (the tower middleware), [`response`] (the contract's bodies),
//! [`admin`] and [`server`] (the standalone server).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod bearer;
mod cache;
pub mod clock;
pub mod error;
pub mod extract;
mod feed;
pub mod gate;
pub mod hash;
pub mod layer;
pub mod limit;
pub mod maintenance;
pub mod manage;
pub mod metrics;
pub mod openapi;
mod request_id;
pub mod response;
pub mod server;
pub mod store;
mod throttle;
pub mod token;

pub use admin::AdminAuth;
pub use extract::Principal;
pub use gate::{BuildError, LimiterFailurePolicy, Rejection, TokenGate, TokenGateBuilder};
pub use hash::{Argon2Params, SecretHasher};
pub use layer::{TokenGateLayer, TokenGateService};
pub use limit::{Decision, MemoryRateLimiter, RateLimitStore};
pub use maintenance::Maintenance;
pub use manage::{CreatedToken, ManageError, RotatedToken};
pub use metrics::Metrics;
pub use store::{SqliteStore, TokenStore};
pub use token::{PlaintextToken, TokenFormat, TokenId};
