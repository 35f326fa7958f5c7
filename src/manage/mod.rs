//! Token lifecycle: create (shown once), revoke, rotate, leaks, plans and
//! accounts, with an audit event for each change.
//!
//! The admin API, the settings page, leak reports and the CLI all go
//! through here, so every rule lives once (`rules.rs`, plain functions):
//! validation, which states allow which operation, what a rotation does to
//! the old token, and which [`Change`](crate::store::Change) each operation
//! records. Each operation (`operations.rs`) runs in one store
//! transaction with its audit event, then applies its changes to this
//! process's caches; other processes see them through the change feed.
//!
//! The component is the [`Manager`] (`manager.rs`): made from a
//! [`TokenGate`](crate::TokenGate), it is *given* the store, the hasher,
//! the clock and the gate's change hook, and never reaches into the gate.
//! Changes are made by an [`Actor`]: `manager.acting_as(actor)` names who
//! is acting for the audit log; `manager.create_token(...)` and friends act
//! as `app` (your code).

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::store::{AuditEvent, Plan, StoreError, TokenRecord, USAGE_RETENTION};
use crate::token::{PlaintextToken, TokenId};

mod leaks;
mod manager;
mod operations;
mod rules;

pub(crate) use leaks::token_hash;
pub use leaks::{LeakOutcome, LeakReport};
pub use manager::Manager;
pub use operations::Management;
#[cfg(feature = "settings")]
pub(crate) use rules::{counts_against_the_cap, has_api_access, validate_account_id};

/// Longest rotation grace period: 30 days.
pub(crate) const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most audit events one read returns.
pub(crate) const MAX_AUDIT_PAGE: u32 = 500;
/// Longest usage series one read returns: the whole retention (90 days).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "USAGE_RETENTION is 90 days, 2,160 hours: in range (asserted below)"
)]
pub(crate) const MAX_USAGE_HOURS: u32 = USAGE_RETENTION.whole_hours() as u32;
const _: () = assert!(
    USAGE_RETENTION.whole_hours() >= 0 && USAGE_RETENTION.whole_hours() <= 4_294_967_295,
    "the usage retention fits a u32 of hours"
);

/// Who makes a change, for the audit log: a name (`admin`, `cli`,
/// `settings:<account>`, `leak-report:github`, ...) and, when the change
/// comes from a request, its client address and request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    name: String,
    source_ip: Option<IpAddr>,
    request_id: Option<String>,
}

impl Actor {
    /// An actor with this name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            source_ip: None,
            request_id: None,
        }
    }

    /// Acting through a request from `ip`.
    pub fn from_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.source_ip = ip;
        self
    }

    /// Acting through the request with this id (`x-request-id`).
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// The actor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An audit event of this actor for a change the management does not
    /// make itself (the server's webhook endpoints): no account, no token.
    /// A store records it in the transaction of the change it describes.
    pub fn audit_event(
        &self,
        at: OffsetDateTime,
        action: &str,
        details: serde_json::Value,
    ) -> AuditEvent {
        self.event(at, action, None, None, details)
    }

    /// The audit event of a change this actor makes.
    pub(crate) fn event(
        &self,
        at: OffsetDateTime,
        action: &str,
        account_id: Option<&str>,
        token_id: Option<TokenId>,
        details: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            id: 0,
            at,
            action: action.to_owned(),
            actor: self.name.clone(),
            account_id: account_id.map(str::to_owned),
            token_id,
            source_ip: self.source_ip.map(|ip| ip.to_string()),
            request_id: self.request_id.clone(),
            details,
        }
    }
}

/// A newly created token. `token` is the plaintext: show it once, then drop it.
#[non_exhaustive]
pub struct CreatedToken {
    /// The stored token (no secret).
    pub record: TokenRecord,
    /// The plaintext token.
    pub token: PlaintextToken,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("record", &self.record)
            .field("token", &self.token)
            .finish()
    }
}

/// A token to create: its label, and optionally an expiry and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    name: String,
    expires_at: Option<OffsetDateTime>,
    scopes: Option<Vec<String>>,
}

impl TokenSpec {
    /// A token labelled `name`, without expiry, with every scope.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            expires_at: None,
            scopes: None,
        }
    }

    /// Expires at `at` (`None`: never).
    pub fn expires_at(mut self, at: Option<OffsetDateTime>) -> Self {
        self.expires_at = at;
        self
    }

    /// Carries only these scopes (each must be declared with
    /// [`TokenGateBuilder::with_scopes`](crate::TokenGateBuilder::with_scopes));
    /// `None`, the default, is every scope.
    pub fn scopes<S: Into<String>>(mut self, scopes: Option<impl IntoIterator<Item = S>>) -> Self {
        self.scopes = scopes.map(|scopes| scopes.into_iter().map(Into::into).collect());
        self
    }
}

/// A change to some of an existing plan's settings: each `None` keeps the
/// plan's current value (unlike [`set_plan`](Manager::set_plan), which
/// replaces the whole plan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanUpdate {
    api_access: Option<bool>,
    requests_per_hour: Option<u32>,
    account_requests_per_hour: Option<Option<u32>>,
    max_tokens: Option<Option<u32>>,
}

impl PlanUpdate {
    /// Sets whether the plan may call the API.
    pub fn api_access(mut self, api_access: bool) -> Self {
        self.api_access = Some(api_access);
        self
    }

    /// Sets the requests per token in any rolling hour.
    pub fn requests_per_hour(mut self, requests_per_hour: u32) -> Self {
        self.requests_per_hour = Some(requests_per_hour);
        self
    }

    /// Sets the account-wide ceiling; `None` removes it.
    pub fn account_requests_per_hour(mut self, ceiling: Option<u32>) -> Self {
        self.account_requests_per_hour = Some(ceiling);
        self
    }

    /// Sets the cap on live tokens per account; `None` removes it.
    pub fn max_tokens(mut self, max_tokens: Option<u32>) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// `plan` with this update applied.
    pub(crate) fn apply(&self, plan: &Plan) -> Plan {
        Plan {
            name: plan.name.clone(),
            api_access: self.api_access.unwrap_or(plan.api_access),
            requests_per_hour: self.requests_per_hour.unwrap_or(plan.requests_per_hour),
            account_requests_per_hour: self
                .account_requests_per_hour
                .unwrap_or(plan.account_requests_per_hour),
            max_tokens: self.max_tokens.unwrap_or(plan.max_tokens),
        }
    }
}

/// Why a management operation failed. Each variant carries what a message
/// needs to say what to do; every boundary (admin API, settings page, CLI)
/// words it for its audience.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The input is invalid; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// No such account.
    #[error("account {0:?} not found")]
    UnknownAccount(String),
    /// No such plan; `closest` is an existing plan it may have meant.
    #[error("unknown plan {plan:?}{}", closest.as_ref().map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default())]
    UnknownPlan {
        /// The plan asked for.
        plan: String,
        /// The existing plan nearest to it, if one is near.
        closest: Option<String>,
    },
    /// No such token.
    #[error("token {0} not found")]
    UnknownToken(TokenId),
    /// A revoked token cannot be rotated.
    #[error("token {0} is revoked")]
    TokenRevoked(TokenId),
    /// An expired token cannot be rotated.
    #[error("token {0} has expired")]
    TokenExpired(TokenId),
    /// The requested scopes are refused; the message names the scope.
    #[error("{0}")]
    Scope(String),
    /// The account holds as many live tokens as its plan allows.
    #[error("the account already has {max} live tokens, the most its plan {plan:?} allows")]
    TooManyTokens {
        /// The account's plan.
        plan: String,
        /// The plan's cap.
        max: u32,
    },
    /// The account's plan has no API access, so it gets no tokens (created
    /// or rotated), on every surface: move the account to a plan with API
    /// access first. Its existing tokens are answered 403 until then.
    #[error("the account's plan {plan:?} has no API access")]
    NoApiAccess {
        /// The account's plan.
        plan: String,
    },
    /// A rotation with a grace period would leave more tokens authenticating
    /// than the plan's cap allows (the cap counts tokens in grace): rotate
    /// without grace, or revoke a token first.
    #[error(
        "a rotation with a grace period keeps the old token working beside the new one, and the account already has {max} live tokens, the most its plan {plan:?} allows"
    )]
    GraceOverTokenCap {
        /// The account's plan.
        plan: String,
        /// The plan's cap.
        max: u32,
    },
    /// A token in the grace period of an earlier rotation: rotate its successor.
    #[error("token {id} was already rotated")]
    TokenAlreadyRotated {
        /// The token asked for.
        id: TokenId,
        /// The token that replaced it.
        successor: Option<TokenId>,
    },
    /// The store is unavailable.
    #[error("Service temporarily unavailable")]
    Unavailable(#[source] StoreError),
    /// Hashing failed (should not happen).
    #[error("Internal error")]
    Internal(String),
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        ManageError::Unavailable(e)
    }
}
