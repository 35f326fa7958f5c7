//! # tokengate
//!
//! API tokens for a SaaS API: minted with 264 bits from the OS CSPRNG, shown
//! once, stored only as argon2id hashes, and checked by an axum/tower layer
//! that answers the documented 401/403 bodies and enforces a strict
//! per-token sliding-window rate limit with `X-RateLimit-*` headers and 429s.
//! Around it: scopes per token, account-wide ceilings, an audit log, usage
//! per token, leaked-token reports, and the Settings > API Tokens page your
//! users manage their own tokens on.
//!
//! ```toml
//! [dependencies]
//! tokengate = "0.2"   # SQLite and the settings page; add features = ["postgres", "redis"] to scale out
//! ```
//!
//! ## Embedding
//!
//! A complete app, as it should run in production: the peer address for the
//! audit log and the settings page, the rate-limit windows saved at the last
//! shutdown restored before serving, and a graceful shutdown that writes
//! what is pending. It is a whole `main.rs`: with `tokengate = "0.2"`,
//! `axum = "0.8"` and `tokio = { version = "1", features = ["macros",
//! "rt-multi-thread", "net", "signal"] }` in `[dependencies]`, `cargo run`
//! serves on `127.0.0.1:3000` and prints the address.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use tokengate::{Manager, Principal, SqliteStore, TokenGate, TokenStore, require_scope};
//!
//! async fn hello(principal: Principal) -> String {
//!     format!("hello, {} on {}", principal.account_id(), principal.plan())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // One SQLite file, created if missing; the migrations are embedded.
//! #   let dir = tempfile::tempdir()?;
//! #   let url = format!("sqlite://{}", dir.path().join("tokengate.db").display());
//! #   /*
//!     let url = "sqlite://tokengate.db";
//! #   */
//!     let store = SqliteStore::connect(&url).await?;
//!     store.migrate().await?;
//!
//!     // The gate: argon2id verification, a verified-token cache, the limiter,
//!     // and the scopes your routes may require.
//!     let gate = TokenGate::builder(Arc::new(store))
//!         .with_scopes(["reports:read", "reports:write"])
//!         .build()?;
//!     gate.restore_rate_windows().await?; // the windows saved at the last shutdown
//!     let maintenance = gate.spawn_maintenance(); // change feed, last use, usage, pruning
//!
//!     // On the first start only: a Pro account and a token for it, whose
//!     // plaintext exists only in `created` (a restart mints nothing).
//!     let manager = Manager::new(&gate); // tokens, accounts, plans, audit
//!     if manager.account("acct_42").await?.is_none() {
//!         manager.set_account_plan("acct_42", "pro").await?;
//!         let created = manager.create_token("acct_42", "CI", None).await?;
//!         println!("token for acct_42, shown once: {}", created.token.expose_secret());
//!     }
//!
//!     let app = Router::new()
//!         .route("/api/v1/hello", get(hello))
//!         .route("/api/v1/reports", get(require_scope!("reports:read", hello)))
//!         .layer(gate.layer());
//!
//! #   let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! #   /*
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! #   */
//!     println!("listening on http://{}", listener.local_addr()?);
//! #   let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! #   stop.send(()).ok();
//!     axum::serve(
//!         listener,
//!         app.into_make_service_with_connect_info::<SocketAddr>(),
//!     )
//!     .with_graceful_shutdown(async {
//! #       let _ = stopped.await;
//! #       /*
//!         let _ = tokio::signal::ctrl_c().await;
//! #       */
//!     })
//!     .await?;
//!     maintenance.shutdown().await; // writes last use and usage, saves the windows
//!     Ok(())
//! }
//! ```
//!
//! [`TokenGate`] is the request path everything starts from: its
//! [`layer`](TokenGate::layer) guards routes, and handlers read the caller
//! with the [`Principal`] extractor. A [`Manager`] made from the gate
//! changes tokens ([`create_token`](Manager::create_token),
//! [`revoke_token`](Manager::revoke_token),
//! [`rotate_token`](Manager::rotate_token)), accounts
//! ([`set_account_plan`](Manager::set_account_plan)) and plans
//! ([`set_plan`](Manager::set_plan)): the same operations the admin API, the
//! CLI and the settings page use, each recorded in the audit log
//! ([`acting_as`](Manager::acting_as) names who made the change), each
//! reaching the gate's cache as it commits. [`Maintenance`] (from
//! [`TokenGate::spawn_maintenance`]) owns the background work.
//!
//! The management methods used to be on `TokenGate` itself:
//! `gate.create_token(..)` is now `Manager::new(&gate).create_token(..)`,
//! and likewise `acting_as`, `create_token_with`, `revoke_token`,
//! `rotate_token`, `set_account_plan`, `set_plan`, `update_plan`, `plans`,
//! `account`, `tokens`, `token`, `audit_events`, `token_usage` and `now`.
//!
//! The routers in [`http`] add the rest: [`http::settings_router`] (the
//! Settings > API Tokens page and its JSON API, for your signed-in users),
//! [`http::admin_router`] (the operator's admin API) and
//! `http::github_leak_router` (GitHub's secret scanning reports).
//!
//! ## Features
//!
//! | feature | default | adds |
//! | --- | --- | --- |
//! | `sqlite` | yes | [`SqliteStore`]: one SQLite file (or `sqlite::memory:`) |
//! | `settings` | yes | [`http::settings_router`]: the Settings > API Tokens page and its JSON API |
//! | `postgres` | | `PostgresStore`: one PostgreSQL database shared by several instances |
//! | `redis` | | `RedisRateLimiter`: one strict rate limit shared by several instances (leased permits: about one Redis round trip per 50 requests) |
//! | `github-leaks` | | `http::github_leak_router`: GitHub's secret scanning partner endpoint (ECDSA P-256) |
//! | `test-util` | | hooks for tests: fault-injecting stores, clocks, parsers (not for production) |
//!
//! With `default-features = false, features = ["sqlite"]` the library
//! depends on axum, tower, sqlx (SQLite), argon2, rand, base64, time, serde,
//! utoipa and tracing: no CLI, configuration or log-formatting crates.
//!
//! ## Examples
//!
//! - [`examples/embed.rs`](https://github.com/tokengate/tokengate/blob/main/examples/embed.rs):
//!   an app with its own routes behind the gate (`cargo run --example embed`).
//! - [`examples/settings.rs`](https://github.com/tokengate/tokengate/blob/main/examples/settings.rs):
//!   a host app with a session login that mounts the settings page
//!   (`cargo run --example settings`).
//! - The `tokengate-server` crate: the standalone server and CLI built on this library.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod bearer;
mod clock;
mod config_error;
mod gate;
mod hash;
pub mod http;
mod limit;
mod manage;
mod metrics;
mod principal;
mod redact;
mod require_scope;
mod response;
mod scope;
// Its backend traits and row types are re-exported only with `test-util`.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
mod token;

pub use config_error::ConfigError;
pub use gate::{Maintenance, TokenGate, TokenGateBuilder, TokenGateLayer, TokenGateService};
pub use hash::Argon2Params;
pub use limit::{Decision, LimiterFailurePolicy};
// The limiter's own error, for tests that call `RedisRateLimiter::check`
// directly; the gate turns it into a 503 (or admits, by policy).
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use limit::LimitError;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use limit::RedisRateLimiter;
pub use manage::{
    Actor, CreatedToken, LeakOutcome, LeakReport, ManageError, Management, Manager, PlanUpdate,
    TokenSpec,
};
pub use metrics::Metrics;
pub use principal::Principal;
#[doc(hidden)]
pub use require_scope::__private;
pub use require_scope::RequireScopeLayer;
pub use response::Rejection;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
pub use store::{
    Account, AuditEvent, AuditQuery, Plan, StoreError, TokenRecord, TokenStore, UsageHour,
};
// What a storage backend implements: sealed (unnameable outside the crate)
// unless `test-util` is on, for the test kit's fault-injecting store. The
// supported backends are SQLite and PostgreSQL.
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use store::{
    AdminStore, Change, Credential, CredentialStore, FeedEntry, NewToken, TokenUpdate, UsageDelta,
    WriteTx,
};
// Webhooks (Standard Webhooks): the outbox's storage, for the server's
// delivery worker and admin routes.
pub use store::{
    AttemptOutcome, ClaimedDelivery, DeliveryCounts, WebhookAttempt, WebhookEndpoint,
    WebhookSecret, WebhookStore,
};
pub use token::{PlaintextToken, TokenFormat, TokenFormatError, TokenId};
