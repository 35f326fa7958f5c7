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
//! // A database (here in memory; `sqlite://tokengate.db` for a file,
//! // created if missing); migrations are embedded.
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
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod bearer;
mod clock;
mod gate;
mod hash;
pub mod http;
mod layer;
mod limit;
mod manage;
mod metrics;
mod principal;
mod response;
mod scope;
mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
mod token;

pub use gate::{BuildError, Maintenance, TokenGate, TokenGateBuilder};
pub use hash::{Argon2Params, InvalidArgon2Params};
pub use layer::{ResponseFuture, TokenGateLayer, TokenGateService};
pub use limit::{Decision, LimitError, LimiterFailurePolicy};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use limit::{RedisLimiterConfig, RedisRateLimiter};
pub use manage::{
    Actor, CreatedToken, LeakOutcome, LeakReport, MAX_GRACE, ManageError, Management, RotatedToken,
    TokenSpec,
};
pub use metrics::Metrics;
pub use principal::{MissingTokenGateLayer, Principal};
pub use response::Rejection;
pub use scope::{RequireScope, RequireScopeLayer, require_scope};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
pub use store::{
    Account, AdminStore, AuditEvent, AuditQuery, Change, Credential, CredentialStore, FeedEntry,
    NewToken, Plan, StoreError, TokenRecord, TokenStore, TokenUpdate, UsageDelta, UsageHour,
    WriteTx,
};
pub use token::{InvalidPrefix, PlaintextToken, TokenFormat, TokenFormatError, TokenId};
