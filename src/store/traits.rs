//! The storage traits a backend implements, and their one error.
//!
//! [`CredentialStore`] is the authentication path (one indexed lookup, the
//! change feed, batched writes); [`AdminStore`] the administration's reads
//! and [`WriteTx`], a transaction of primitive steps; [`TokenStore`] both,
//! with the schema. This module owns those contracts; it must not hold a
//! business rule (they are `manage`'s, on top of these primitives) nor SQL
//! (`sql/`, shared by both backends).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    Account, AuditEvent, AuditQuery, Change, Credential, FeedEntry, NewToken, Plan, TokenRecord,
    TokenUpdate, UsageDelta, UsageHour,
};
use crate::token::TokenId;

/// A store failure: the database could not answer, or holds something
/// tokengate did not write. ("Not found" is `Ok(None)`, not an error.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached or failed (answered with 503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database holds something tokengate did not write.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a driver error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}

/// The authentication path's view of the store: one indexed lookup per
/// uncached token, the change feed, and batched last-use writes.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Everything authentication needs about a token id, in one lookup.
    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError>;
    /// Every token that is not revoked, with its secret tag (loaded once
    /// when a gate starts reading the change feed).
    async fn live_tokens(&self) -> Result<Vec<(TokenId, Option<u32>)>, StoreError>;
    /// Changes with a sequence number above `after`, oldest first, at most `limit`.
    async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<FeedEntry>, StoreError>;
    /// Stores the tag of a token made before tags existed (after its secret
    /// was verified), so wrong secrets for it stop costing argon2.
    async fn backfill_secret_tag(&self, id: &TokenId, tag: u32) -> Result<(), StoreError>;
    /// The newest change's sequence number (0 if none).
    async fn latest_change(&self) -> Result<i64, StoreError>;
    /// Writes a batch of last-use times (never moving one backwards).
    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError>;
    /// Adds a batch of request counts to the hourly totals.
    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<(), StoreError>;
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The administration's view of the store: reads, and write transactions.
#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Starts a write transaction. Its changes become visible together at
    /// [`WriteTx::commit`]; dropping it uncommitted rolls them back.
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError>;
    /// All plans, by name.
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError>;
    /// One plan.
    async fn get_plan(&self, name: &str) -> Result<Option<Plan>, StoreError>;
    /// One account.
    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError>;
    /// An account's tokens, oldest first (empty for an unknown account).
    async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// One token.
    async fn get_token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError>;
    /// Deletes changes older than `before`; returns how many.
    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
    /// Audit events matching `query`, newest first.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;
    /// Deletes at most `max` audit events older than `before`; returns how many.
    async fn prune_audit(&self, before: OffsetDateTime, max: u32) -> Result<u64, StoreError>;
    /// A token's hourly counts since `since`, oldest first (hours without requests absent).
    async fn usage_series(
        &self,
        token_id: &TokenId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageHour>, StoreError>;
    /// Admitted requests since `since` of each of `token_ids` that has any.
    async fn usage_totals(
        &self,
        token_ids: &[TokenId],
        since: OffsetDateTime,
    ) -> Result<Vec<(TokenId, u64)>, StoreError>;
    /// Deletes at most `max` usage rows older than `before`; returns how many.
    async fn prune_usage(&self, before: OffsetDateTime, max: u32) -> Result<u64, StoreError>;
    /// A value from the settings table.
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a setting (replacing any previous value).
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Writes a setting unless one exists; returns whether this call wrote it.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError>;
}

/// One write transaction: primitive reads and writes that commit together.
///
/// A backend that keeps a change feed for several writers must make the
/// order of sequence numbers the order of commits (SQLite: one writer at a
/// time; PostgreSQL: an advisory lock taken at [`AdminStore::begin_write`]).
#[async_trait]
pub trait WriteTx: Send {
    /// One plan.
    async fn plan(&mut self, name: &str) -> Result<Option<Plan>, StoreError>;
    /// Creates or replaces a plan.
    async fn upsert_plan(&mut self, plan: &Plan) -> Result<(), StoreError>;
    /// One account.
    async fn account(&mut self, id: &str) -> Result<Option<Account>, StoreError>;
    /// Creates an account (the id must be new).
    async fn insert_account(&mut self, account: &Account) -> Result<(), StoreError>;
    /// Moves an account to another plan.
    async fn set_account_plan(
        &mut self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// One token.
    async fn token(&mut self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError>;
    /// Inserts a token (its account must exist).
    async fn insert_token(&mut self, token: &NewToken) -> Result<(), StoreError>;
    /// The account's tokens that count against a cap at `now`: not
    /// revoked, not expired, and not replaced by a rotation.
    /// The rate window `id` counts in (its own id unless it shares one).
    async fn window_of(&mut self, id: &TokenId) -> Result<Option<TokenId>, StoreError>;
    /// Tokens rotated into `id` that still authenticate at `now` (in grace).
    async fn live_predecessors(
        &mut self,
        id: &TokenId,
        now: OffsetDateTime,
    ) -> Result<Vec<TokenRecord>, StoreError>;
    /// Tokens of the account that authenticate at `now`: neither revoked
    /// nor expired, a rotated one in its grace period included.
    async fn count_live_tokens(
        &mut self,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<u32, StoreError>;
    /// Writes a token's expiry and revocation fields.
    async fn update_token(
        &mut self,
        id: &TokenId,
        update: TokenUpdate<'_>,
    ) -> Result<(), StoreError>;
    /// Appends to the change feed.
    async fn record_change(
        &mut self,
        change: &Change,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Appends to the audit log (the event's `id` is assigned by the store).
    async fn record_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError>;
    /// Makes every step visible at once.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A complete backend: the authentication path, the administration, and the schema.
///
/// `SqliteStore` (feature `sqlite`, the default) and `PostgresStore`
/// (feature `postgres`) implement it. The traits it builds on are sealed:
/// another backend is not a supported extension (the `test-util` feature
/// opens them for test doubles; a backend must pass the conformance suite
/// in `tests/it/store_conformance.rs`).
#[async_trait]
pub trait TokenStore: CredentialStore + AdminStore {
    /// Applies pending migrations; returns how many were applied.
    async fn migrate(&self) -> Result<usize, StoreError>;
    /// How many embedded migrations the database lacks, without applying
    /// or creating anything (a database that was never migrated lacks all).
    /// Tools that must not change a schema by surprise check it. The
    /// default (for test doubles) answers 0.
    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
    /// Closes connections (at shutdown). The default does nothing.
    async fn close(&self) {}
}
