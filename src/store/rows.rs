//! The values a store reads and writes: plans, accounts, tokens (the admin
//! view, the row to insert, the lifecycle update, the credential
//! authentication reads), the change feed, audit events and usage counts.
//!
//! This module owns these shapes and their plain conversions (a change to
//! and from its row, a timestamp to whole seconds). It must not decide
//! anything: whether a token works, what a rotation writes, which change a
//! mutation records are `manage`'s and the gate's. Types that hold a hash
//! redact it in `Debug`.

use serde::Serialize;
use time::OffsetDateTime;

use crate::token::TokenId;

/// A subscription plan: whether it may call the API, how often, and how
/// much an account may use together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct Plan {
    /// Plan name, e.g. `pro`.
    pub name: String,
    /// Whether tokens of accounts on this plan may call the API (else 403).
    pub api_access: bool,
    /// Requests admitted per token in any rolling hour.
    pub requests_per_hour: u32,
    /// Requests admitted for all of an account's tokens together in any
    /// rolling hour, if the plan sets such a ceiling.
    pub account_requests_per_hour: Option<u32>,
    /// Most live (unrevoked, unexpired) tokens an account may hold, if capped.
    pub max_tokens: Option<u32>,
}

impl Plan {
    /// A plan with per-token limits only (no account ceiling, no token cap).
    pub fn new(name: impl Into<String>, api_access: bool, requests_per_hour: u32) -> Self {
        Self {
            name: name.into(),
            api_access,
            requests_per_hour,
            account_requests_per_hour: None,
            max_tokens: None,
        }
    }

    /// With a ceiling for all of an account's tokens together.
    pub fn with_account_requests_per_hour(mut self, ceiling: Option<u32>) -> Self {
        self.account_requests_per_hour = ceiling;
        self
    }

    /// With a cap on an account's live tokens.
    pub fn with_max_tokens(mut self, cap: Option<u32>) -> Self {
        self.max_tokens = cap;
        self
    }
}

/// An account of the host application, and its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// For a rotated token: the id of the token that replaced it.
    #[schema(value_type = Option<String>)]
    pub replaced_by: Option<TokenId>,
    /// What the token may do: `["*"]` (every scope) or scope names.
    #[schema(example = json!(["tests:read"]))]
    pub scopes: Vec<String>,
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
    /// A 32-bit tag of the secret, checked before argon2 (see `token.rs`).
    pub secret_tag: u32,
    /// The last four characters of the token.
    pub hint: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Optional expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// `["*"]` or the scope names, sorted.
    pub scopes: Vec<String>,
    /// The rate window this token shares: a rotation's successor shares its
    /// predecessor's. `None`: its own (keyed by its id).
    pub window_id: Option<TokenId>,
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

/// A change to a token's lifecycle fields, written by
/// [`WriteTx::update_token`](super::WriteTx::update_token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUpdate<'a> {
    /// The new expiry (`None` leaves none).
    pub expires_at: Option<OffsetDateTime>,
    /// The new revocation time (`None` leaves it unrevoked).
    pub revoked_at: Option<OffsetDateTime>,
    /// The new reason (`revoked`, `rotated`), or `None`.
    pub revoked_reason: Option<&'a str>,
    /// The successor of a rotated token.
    pub replaced_by: Option<TokenId>,
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
    /// The secret's tag; `None` for tokens created before tags existed.
    pub secret_tag: Option<u32>,
    /// Expiry, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// `["*"]` or the scope names.
    pub scopes: Vec<String>,
    /// The account's current plan.
    pub plan: Plan,
    /// The rate window it counts in, when it shares one with the token it
    /// was rotated from; `None`: its own.
    pub window_id: Option<TokenId>,
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
    /// The `kind` column of the change's row.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Created(_) => "created",
            Change::Token(_) => "token",
            Change::Account(_) => "account",
            Change::Plan(_) => "plan",
            Change::Everything => "everything",
        }
    }

    /// The `subject` column of the change's row.
    pub fn subject(&self) -> String {
        match self {
            Change::Created(id) | Change::Token(id) => id.to_string(),
            Change::Account(id) => id.clone(),
            Change::Plan(name) => name.clone(),
            Change::Everything => String::new(),
        }
    }

    /// Reads a change row; anything unreadable conservatively means [`Change::Everything`].
    pub fn from_row(kind: &str, subject: String) -> Self {
        match kind {
            "created" => subject.parse().map_or(Change::Everything, Change::Created),
            "token" => subject.parse().map_or(Change::Everything, Change::Token),
            "account" => Change::Account(subject),
            "plan" => Change::Plan(subject),
            _ => Change::Everything,
        }
    }
}

/// One recorded change: who did what to which account or token, when, and
/// from where. Never a secret, never a hash.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Its number, increasing; the paging cursor.
    pub id: i64,
    /// When it happened (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// What happened: `token.created`, `token.revoked`, `token.rotated`,
    /// `token.leaked`, `account.created`, `account.plan_changed`,
    /// `plan.created`, `plan.updated`, and from the server's webhook
    /// endpoints `webhook.created`, `webhook.deleted`, `webhook.secret_rotated`.
    #[schema(example = "token.created")]
    pub action: String,
    /// Who did it: `admin`, `cli`, `settings:<account>`, `leak-report:github`, `app`.
    #[schema(example = "admin")]
    pub actor: String,
    /// The account concerned, if any.
    pub account_id: Option<String>,
    /// The token concerned, if any.
    #[schema(value_type = Option<String>)]
    pub token_id: Option<TokenId>,
    /// The client address of the request that made the change, if there was one.
    pub source_ip: Option<String>,
    /// The request id (`x-request-id`) of that request.
    pub request_id: Option<String>,
    /// Plain facts about the change (old and new plan, grace period, a leak's URL...).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Which audit events to read: newest first, at most `limit`, before the
/// cursor `before` (an event id) when paging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only this account's events.
    pub account_id: Option<String>,
    /// Only this token's events.
    pub token_id: Option<TokenId>,
    /// Only this action.
    pub action: Option<String>,
    /// Only events older than this id.
    pub before: Option<i64>,
    /// At most this many (1 to 500).
    pub limit: u32,
}

impl AuditQuery {
    /// The newest `limit` events (1 to 500), of every account.
    pub fn newest(limit: u32) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Only this account's events (`None`: every account's).
    pub fn for_account(mut self, account_id: Option<String>) -> Self {
        self.account_id = account_id;
        self
    }

    /// Only this token's events (`None`: every token's).
    pub fn for_token(mut self, token_id: Option<TokenId>) -> Self {
        self.token_id = token_id;
        self
    }

    /// Only this action, such as `token.revoked` (`None`: every action).
    pub fn with_action(mut self, action: Option<String>) -> Self {
        self.action = action;
        self
    }

    /// Only events older than the event with this id (`None`: from the newest).
    pub fn before_event(mut self, id: Option<i64>) -> Self {
        self.before = id;
        self
    }
}

/// A token's requests in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct UsageHour {
    /// The hour's start (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub hour: OffsetDateTime,
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused by the rate limit (429).
    pub limited: u64,
}

/// Requests counted by one process since its last flush, to add to the
/// stored totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageDelta {
    /// The token.
    pub token_id: TokenId,
    /// The hour they fall in.
    pub hour: OffsetDateTime,
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused by the rate limit.
    pub limited: u64,
}

/// One row of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Its sequence number (commit order).
    pub seq: i64,
    /// What changed.
    pub change: Change,
    /// For [`Change::Created`]: the new token's secret tag, if it has one.
    pub secret_tag: Option<u32>,
}

/// Timestamps shown to people have whole seconds, in UTC. `None` if the
/// instant cannot be expressed in UTC (e.g. year 9999 at -05:00).
pub(crate) fn truncate_to_second(t: OffsetDateTime) -> Option<OffsetDateTime> {
    t.checked_to_offset(time::UtcOffset::UTC)?
        .replace_nanosecond(0)
        .ok()
}
