//! Durable state: plans, accounts, tokens (hashes only), and the change feed.
//!
//! This module owns *storage primitives*; it knows no business rule. The
//! rules (what rotation does, which change a revocation records) live in
//! `manage.rs`, once, on top of these primitives, so every backend obeys
//! them alike. The primitives come in two traits:
//!
//! * [`CredentialStore`]: what authentication needs on every uncached
//!   request and in the background (one indexed credential lookup, the
//!   change feed, batched last-use writes);
//! * [`AdminStore`]: reads for the admin API and CLI, and [`WriteTx`], a
//!   write transaction whose steps commit together.
//!
//! [`TokenStore`] is both, plus `migrate` and `close`. Both built-in
//! backends share one set of SQL statements (`sql/`); `sqlite.rs` and
//! `postgres.rs` hold only what differs: connecting, value encoding, and
//! how a write transaction orders the change feed.
//!
//! Every mutation that can make a cached authentication stale (a token
//! created, revoked or rotated; an account's plan; a plan's limits) appends a
//! [`Change`] in the same transaction. Running gates poll that feed, so a
//! change made by another process reaches every cache within the poll
//! interval, and nothing is lost while a process is disconnected.
//!
//! `rows.rs` holds the values that cross the traits (rows, changes,
//! queries), `traits.rs` the traits and their error; the other files are
//! the two backends and their shared SQL.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod delegate;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod driver;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod traits;
mod webhooks;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub(crate) use rows::truncate_to_second;
pub use rows::{
    Account, AuditEvent, AuditQuery, Change, Credential, FeedEntry, NewToken, Plan, TokenRecord,
    TokenUpdate, UsageDelta, UsageHour,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use traits::{AdminStore, CredentialStore, StoreError, TokenStore, WriteTx};
pub use webhooks::{
    AttemptOutcome, ClaimedDelivery, DeliveryCounts, WebhookAttempt, WebhookEndpoint,
    WebhookSecret, WebhookStore,
};

/// Runs one store call with a deadline: a database that hangs (a partition,
/// not a refusal) is an error, never a call "in progress" forever.
pub(crate) async fn within<T>(
    timeout: std::time::Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::unavailable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from the store within {timeout:?}"),
            )))
        })
}

/// Usage counts are kept this long (the longest series a read returns).
pub(crate) const USAGE_RETENTION: time::Duration = time::Duration::days(90);
