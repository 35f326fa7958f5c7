//! Durable state: plans, accounts, tokens (hashes only), and the change feed.
//!
//! [`TokenStore`] is the seam between tokengate and its database. SQLite
//! ([`SqliteStore`]) is the default; PostgreSQL ([`PostgresStore`], feature
//! `postgres`) implements the same trait for running several instances.
//!
//! Every mutation that can make a cached authentication stale (revoke, rotate,
//! an account's plan, a plan's limits) appends a [`Change`] in the same
//! transaction. Running gates poll that feed, so a change made by another
//! process (the CLI, another instance) reaches every cache within the poll
//! interval, and nothing is lost while a process is disconnected.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::token::TokenId;

#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A subscription plan: whether it may call the API, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Plan name, e.g. `pro`.
    pub name: String,
    /// Whether tokens of accounts on this plan may call the API (else 403).
    pub api_access: bool,
    /// Requests admitted per token in any rolling hour.
    pub requests_per_hour: u32,
}

/// An account of the host application, and its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Account {
    /// The host application's account id.
    pub id: String,
    /// The account's plan name.
    pub plan: String,
    /// When the account was first seen (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When the account last changed (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// A stored token as the admin API shows it: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// The public token id.
    #[schema(value_type = String, example = "q3J0bUxCbC1hQk1fZk0y")]
    pub id: TokenId,
    /// The owning account.
    pub account_id: String,
    /// A human label, e.g. `CI`.
    pub name: String,
    /// The last four characters of the token, to tell tokens apart.
    pub hint: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last authenticated use (flushed in batches, so up to a few seconds behind).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the token stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// When the token was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked (`revoked`, `rotated`), if it was; `rotated` with
    /// `revoked_at` null means it was rotated with a grace period and still
    /// works until `expires_at`.
    pub revoked_reason: Option<String>,
}

/// A token row to insert. `secret_hash` is an argon2id PHC string.
#[derive(Clone)]
pub struct NewToken {
    /// The public token id.
    pub id: TokenId,
    /// The owning account (must exist).
    pub account_id: String,
    /// A human label.
    pub name: String,
    /// argon2id PHC string of the secret.
    pub secret_hash: String,
    /// The last four characters of the token.
    pub hint: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Optional expiry.
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A rotation: the new token's row, and when the old one stops working.
#[derive(Clone)]
pub struct Rotation {
    /// The token being replaced.
    pub old_id: TokenId,
    /// The replacement's id, hash and hint; account and name are copied from the old token.
    pub new_id: TokenId,
    /// argon2id PHC string of the new secret.
    pub new_secret_hash: String,
    /// The last four characters of the new token.
    pub new_hint: String,
    /// Optional expiry of the new token.
    pub new_expires_at: Option<OffsetDateTime>,
    /// Now.
    pub now: OffsetDateTime,
    /// When the old token stops: `now` revokes it at once; later sets its expiry.
    pub old_stops_at: OffsetDateTime,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("old_id", &self.old_id)
            .field("new_id", &self.new_id)
            .field("old_stops_at", &self.old_stops_at)
            .finish_non_exhaustive()
    }
}

/// Both sides of a completed rotation.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The old token, with its new expiry or revocation.
    pub old: TokenRecord,
    /// The new token.
    pub new: TokenRecord,
}

/// What authentication needs to know about a token id, in one indexed lookup.
#[derive(Clone)]
pub struct Credential {
    /// The token id.
    pub token_id: TokenId,
    /// The owning account.
    pub account_id: String,
    /// argon2id PHC string of the secret.
    pub secret_hash: String,
    /// Expiry, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The account's current plan.
    pub plan: Plan,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("token_id", &self.token_id)
            .field("account_id", &self.account_id)
            .field("plan", &self.plan.name)
            .finish_non_exhaustive()
    }
}

/// A change that can make cached authentications stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A token was created (so other processes learn its id exists).
    Created(TokenId),
    /// A token was revoked or rotated.
    Token(TokenId),
    /// An account moved to another plan.
    Account(String),
    /// A plan's access or limit was edited.
    Plan(String),
    /// Anything may have changed (an unreadable change row, a lost cursor).
    Everything,
}

impl Change {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Change::Created(_) => "created",
            Change::Token(_) => "token",
            Change::Account(_) => "account",
            Change::Plan(_) => "plan",
            Change::Everything => "everything",
        }
    }

    pub(crate) fn subject(&self) -> String {
        match self {
            Change::Created(id) | Change::Token(id) => id.to_string(),
            Change::Account(id) => id.clone(),
            Change::Plan(name) => name.clone(),
            Change::Everything => String::new(),
        }
    }

    /// Reads a change row; anything unreadable conservatively means [`Change::Everything`].
    pub(crate) fn from_row(kind: &str, subject: String) -> Self {
        match kind {
            "created" => subject.parse().map_or(Change::Everything, Change::Created),
            "token" => subject.parse().map_or(Change::Everything, Change::Token),
            "account" => Change::Account(subject),
            "plan" => Change::Plan(subject),
            _ => Change::Everything,
        }
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed (answered with 503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The named plan does not exist.
    #[error("unknown plan")]
    UnknownPlan,
    /// The named account does not exist.
    #[error("unknown account")]
    UnknownAccount,
    /// The token does not exist.
    #[error("unknown token")]
    UnknownToken,
    /// The token was revoked, so it cannot be rotated.
    #[error("token is revoked")]
    TokenRevoked,
    /// The token has expired, so it cannot be rotated.
    #[error("token has expired")]
    TokenExpired,
    /// The token was already rotated (it is in its grace period).
    #[error("token was already rotated")]
    TokenAlreadyRotated,
    /// The database holds something tokengate did not write.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}

/// Storage for plans, accounts and token hashes. Implementations must make each
/// method atomic and durable before returning `Ok`.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes connections (at shutdown). The default does nothing.
    async fn close(&self) {}

    /// All plans, by name.
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError>;
    /// One plan.
    async fn get_plan(&self, name: &str) -> Result<Option<Plan>, StoreError>;
    /// Creates or updates a plan; records a [`Change::Plan`].
    async fn upsert_plan(&self, plan: &Plan, now: OffsetDateTime) -> Result<Plan, StoreError>;

    /// Creates an account or moves it to another plan; records a
    /// [`Change::Account`] when the plan changes, and says whether it did.
    /// `Err(UnknownPlan)` if the plan does not exist.
    async fn upsert_account(
        &self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(Account, bool), StoreError>;
    /// One account.
    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError>;

    /// Inserts a token and records a [`Change::Created`].
    /// `Err(UnknownAccount)` if the account does not exist.
    async fn insert_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError>;
    /// An account's tokens, oldest first. `Err(UnknownAccount)` if it does not exist.
    async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// One token.
    async fn get_token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes a token (idempotent: the first revocation time is kept) and
    /// records a [`Change::Token`]. `Ok(None)` if unknown.
    async fn revoke_token(
        &self,
        id: &TokenId,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Replaces a token in one transaction and records a [`Change::Token`] for the old one.
    async fn rotate_token(&self, rotation: &Rotation) -> Result<Rotated, StoreError>;

    /// Ids of every token that is not revoked (loaded once when a gate starts
    /// reading the change feed).
    async fn live_token_ids(&self) -> Result<Vec<TokenId>, StoreError>;
    /// Everything authentication needs about a token id, in one lookup.
    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError>;
    /// Writes a batch of last-use times (never moving one backwards).
    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError>;

    /// Changes with a sequence number above `after`, oldest first, at most `limit`.
    async fn changes_after(&self, after: i64, limit: u32)
    -> Result<Vec<(i64, Change)>, StoreError>;
    /// The newest change's sequence number (0 if none).
    async fn latest_change(&self) -> Result<i64, StoreError>;
    /// Deletes changes older than `before`.
    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// A value from the settings table.
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a setting (replacing any previous value).
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// Timestamps are stored and shown with whole-second precision, in UTC.
/// `None` if the instant cannot be expressed in UTC (e.g. year 9999 at -05:00).
pub(crate) fn truncate_to_second(t: OffsetDateTime) -> Option<OffsetDateTime> {
    t.checked_to_offset(time::UtcOffset::UTC)?
        .replace_nanosecond(0)
        .ok()
}
