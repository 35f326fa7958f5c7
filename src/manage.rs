//! Token lifecycle: create (shown once), revoke, rotate, and plan changes.
//!
//! The admin API and the CLI both call these, so validation, hashing and
//! cache invalidation live in one place. Each operation commits to the store
//! first, then invalidates this process's cache; other processes see the
//! change through the store's change feed (see [`crate::maintenance`]).

use std::time::Duration;

use time::OffsetDateTime;

use crate::gate::TokenGate;
use crate::store::{
    Account, Change, NewToken, Plan, Rotated, Rotation, StoreError, TokenRecord, truncate_to_second,
};
use crate::token::{PlaintextToken, TokenId};

/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest account id, in characters.
pub const MAX_ACCOUNT_ID_CHARS: usize = 255;
/// Longest rotation grace period: 30 days.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A newly created token. `token` is the plaintext: show it once, then drop it.
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

/// A rotation's outcome: the old token (now expiring or revoked) and the new one.
pub struct RotatedToken {
    /// The old token, with its new `expires_at` or `revoked_at`.
    pub old: TokenRecord,
    /// The new token (no secret).
    pub record: TokenRecord,
    /// The new plaintext token.
    pub token: PlaintextToken,
}

impl std::fmt::Debug for RotatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedToken")
            .field("old", &self.old)
            .field("record", &self.record)
            .field("token", &self.token)
            .finish()
    }
}

/// Why a management operation failed. Messages are safe to show to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The input is invalid; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// No such account.
    #[error("Account not found")]
    UnknownAccount,
    /// No such plan.
    #[error("Plan not found")]
    UnknownPlan,
    /// No such token.
    #[error("Token not found")]
    UnknownToken,
    /// A revoked token cannot be rotated.
    #[error("Token is revoked")]
    TokenRevoked,
    /// An expired token cannot be rotated.
    #[error("Token has expired")]
    TokenExpired,
    /// A token in the grace period of an earlier rotation: rotate its successor.
    #[error("Token was already rotated")]
    TokenAlreadyRotated,
    /// The store is unavailable.
    #[error("Service temporarily unavailable")]
    Unavailable(#[source] StoreError),
    /// Hashing failed (should not happen).
    #[error("Internal error")]
    Internal(String),
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownPlan => ManageError::UnknownPlan,
            StoreError::UnknownAccount => ManageError::UnknownAccount,
            StoreError::UnknownToken => ManageError::UnknownToken,
            StoreError::TokenRevoked => ManageError::TokenRevoked,
            StoreError::TokenExpired => ManageError::TokenExpired,
            StoreError::TokenAlreadyRotated => ManageError::TokenAlreadyRotated,
            other => ManageError::Unavailable(other),
        }
    }
}

fn invalid(message: impl Into<String>) -> ManageError {
    ManageError::Invalid(message.into())
}

/// Checks an account id: 1–255 characters, no control characters, no surrounding spaces.
pub fn validate_account_id(id: &str) -> Result<(), ManageError> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_ACCOUNT_ID_CHARS {
        return Err(invalid(format!(
            "account id must be 1 to {MAX_ACCOUNT_ID_CHARS} characters"
        )));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(invalid(
            "account id must not contain control characters or surrounding spaces",
        ));
    }
    Ok(())
}

/// Checks a token name: 1–200 characters, no control characters.
pub fn validate_token_name(name: &str) -> Result<(), ManageError> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name must not contain control characters"));
    }
    Ok(())
}

/// Checks a plan name: 1–64 characters of `a-z`, `0-9`, `_` and `-`.
pub fn validate_plan_name(name: &str) -> Result<(), ManageError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "plan name must be 1 to 64 characters of a-z, 0-9, '_' and '-'",
        ))
    }
}

impl TokenGate {
    /// The current time, UTC, whole seconds (the gate's clock).
    pub fn now(&self) -> OffsetDateTime {
        let secs = self.inner.clock.now_unix_secs();
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Creates a token for an existing account. The plaintext is in the result, once.
    pub async fn create_token(
        &self,
        account_id: &str,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<CreatedToken, ManageError> {
        validate_account_id(account_id)?;
        validate_token_name(name)?;
        let now = self.now();
        let expires_at = self.validate_expiry(expires_at, now)?;
        // Fail fast before spending argon2 on an account that does not exist.
        if self.store().get_account(account_id).await?.is_none() {
            return Err(ManageError::UnknownAccount);
        }
        let minted = self.format().generate();
        let secret_hash = self
            .hasher()
            .hash(minted.secret.clone())
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        let record = self
            .store()
            .insert_token(&NewToken {
                id: minted.id,
                account_id: account_id.to_owned(),
                name: name.to_owned(),
                secret_hash,
                hint: minted.token.hint(),
                created_at: now,
                expires_at,
            })
            .await?;
        self.inner.feed.learn(record.id);
        self.metrics().record_admin("create_token");
        tracing::info!(token_id = %record.id, account_id, "token created");
        Ok(CreatedToken {
            record,
            token: minted.token,
        })
    }

    /// Revokes a token (idempotent). The next request with it gets 401.
    pub async fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord, ManageError> {
        let record = self
            .store()
            .revoke_token(id, "revoked", self.now())
            .await?
            .ok_or(ManageError::UnknownToken)?;
        self.invalidate(&Change::Token(*id));
        self.metrics().record_admin("revoke_token");
        tracing::info!(token_id = %id, "token revoked");
        Ok(record)
    }

    /// Replaces a token with a new one (same account and name). The old one
    /// keeps working for `grace`, and stops at once when `grace` is zero.
    pub async fn rotate_token(
        &self,
        id: &TokenId,
        grace: Duration,
        new_expires_at: Option<OffsetDateTime>,
    ) -> Result<RotatedToken, ManageError> {
        if grace > MAX_GRACE {
            return Err(invalid("grace_seconds must be at most 2592000 (30 days)"));
        }
        let now = self.now();
        let grace = time::Duration::try_from(grace)
            .map_err(|_| invalid("grace_seconds must be at most 2592000 (30 days)"))?;
        let new_expires_at = self.validate_expiry(new_expires_at, now)?;
        let minted = self.format().generate();
        let new_secret_hash = self
            .hasher()
            .hash(minted.secret.clone())
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        let Rotated { old, new } = self
            .store()
            .rotate_token(&Rotation {
                old_id: *id,
                new_id: minted.id,
                new_secret_hash,
                new_hint: minted.token.hint(),
                new_expires_at,
                now,
                old_stops_at: now + grace,
            })
            .await?;
        self.inner.feed.learn(new.id);
        self.invalidate(&Change::Token(*id));
        self.metrics().record_admin("rotate_token");
        tracing::info!(old_token_id = %id, new_token_id = %new.id, grace_secs = grace.whole_seconds(), "token rotated");
        Ok(RotatedToken {
            old,
            record: new,
            token: minted.token,
        })
    }

    /// Creates an account or moves it to another plan; takes effect on the next request.
    pub async fn set_account_plan(
        &self,
        account_id: &str,
        plan: &str,
    ) -> Result<Account, ManageError> {
        validate_account_id(account_id)?;
        validate_plan_name(plan)?;
        let (account, plan_changed) = self
            .store()
            .upsert_account(account_id, plan, self.now())
            .await?;
        if plan_changed {
            self.invalidate(&Change::Account(account_id.to_owned()));
        }
        self.metrics().record_admin("set_account_plan");
        tracing::info!(account_id, plan, "account plan set");
        Ok(account)
    }

    /// Creates or edits a plan; takes effect on the next request of every token on it.
    pub async fn set_plan(
        &self,
        name: &str,
        api_access: bool,
        requests_per_hour: u32,
    ) -> Result<Plan, ManageError> {
        validate_plan_name(name)?;
        if api_access && requests_per_hour == 0 {
            // Every request would be a 429 whose "try again in N seconds" never comes true.
            return Err(invalid(
                "requests_per_hour must be at least 1 for a plan with API access",
            ));
        }
        let plan = self
            .store()
            .upsert_plan(
                &Plan {
                    name: name.to_owned(),
                    api_access,
                    requests_per_hour,
                },
                self.now(),
            )
            .await?;
        self.invalidate(&Change::Plan(name.to_owned()));
        self.metrics().record_admin("set_plan");
        tracing::info!(plan = name, api_access, requests_per_hour, "plan set");
        Ok(plan)
    }

    fn validate_expiry(
        &self,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ManageError> {
        let Some(at) = expires_at else {
            return Ok(None);
        };
        match truncate_to_second(at) {
            Some(at) if at <= now => Err(invalid("expires_at must be in the future")),
            Some(at) if at.year() <= 9999 => Ok(Some(at)),
            _ => Err(invalid("expires_at is too far in the future")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_bounded() {
        assert!(validate_token_name("CI").is_ok());
        assert!(validate_token_name(&"é".repeat(200)).is_ok());
        assert!(validate_token_name(&"a".repeat(201)).is_err());
        assert!(validate_token_name("").is_err());
        assert!(validate_token_name("   ").is_err());
        assert!(validate_token_name("a\nb").is_err());
        assert!(validate_account_id("acct_123").is_ok());
        assert!(validate_account_id("'; DROP TABLE accounts; --").is_ok());
        assert!(validate_account_id(" acct").is_err());
        assert!(validate_account_id("").is_err());
        assert!(validate_account_id(&"a".repeat(256)).is_err());
        assert!(validate_plan_name("pro").is_ok());
        assert!(validate_plan_name("Pro").is_err());
        assert!(validate_plan_name("").is_err());
        assert!(validate_plan_name("a b").is_err());
    }
}
