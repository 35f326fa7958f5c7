//! Token lifecycle: create (shown once), revoke, rotate, and plan changes.
//!
//! The admin API, the settings page and the CLI all call these, so every
//! rule lives here once: validation, which states allow which operation,
//! what a rotation does to the old token, and which [`Change`] each
//! operation records. Each operation runs in one store transaction
//! ([`WriteTx`]), then applies its changes to this process's caches; other
//! processes see them through the store's change feed. The store itself
//! only knows primitive reads and writes.

use std::time::Duration;

use time::OffsetDateTime;

use crate::gate::TokenGate;
use crate::scope::Scopes;
use crate::store::{
    Account, Change, NewToken, Plan, StoreError, TokenRecord, TokenUpdate, WriteTx,
    truncate_to_second,
};
use crate::token::{PlaintextToken, TokenId};

/// Longest token name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Longest account id, in characters.
pub(crate) const MAX_ACCOUNT_ID_CHARS: usize = 255;
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

/// Why a management operation failed. Each variant carries what a message
/// needs to say what to do; every boundary (admin API, settings page, CLI)
/// words it for its audience.
#[derive(Debug, thiserror::Error)]
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

fn invalid(message: impl Into<String>) -> ManageError {
    ManageError::Invalid(message.into())
}

/// Checks an account id: 1–255 characters, no control characters, no surrounding spaces.
pub(crate) fn validate_account_id(id: &str) -> Result<(), ManageError> {
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
pub(crate) fn validate_token_name(name: &str) -> Result<(), ManageError> {
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
pub(crate) fn validate_plan_name(name: &str) -> Result<(), ManageError> {
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

/// Whether `token` may be rotated at `now`: not revoked, not expired, not
/// already rotated (then its successor is the one to rotate).
fn check_rotatable(token: &TokenRecord, now: OffsetDateTime) -> Result<(), ManageError> {
    if token.revoked_at.is_some() {
        return Err(ManageError::TokenRevoked(token.id));
    }
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(ManageError::TokenExpired(token.id));
    }
    if token.revoked_reason.is_some() {
        return Err(ManageError::TokenAlreadyRotated {
            id: token.id,
            successor: token.replaced_by,
        });
    }
    Ok(())
}

/// When a rotated token stops: at once without grace, else after the grace
/// period, but never later than its own expiry.
fn old_token_stops(
    token: &TokenRecord,
    now: OffsetDateTime,
    grace: time::Duration,
) -> TokenUpdate<'static> {
    if grace.is_zero() {
        TokenUpdate {
            expires_at: token.expires_at,
            revoked_at: Some(now),
            revoked_reason: Some("rotated"),
            replaced_by: None,
        }
    } else {
        let end = now + grace;
        TokenUpdate {
            expires_at: Some(token.expires_at.map_or(end, |own| own.min(end))),
            revoked_at: None,
            revoked_reason: Some("rotated"),
            replaced_by: None,
        }
    }
}

/// The existing name closest to `wanted` (same letters in another case, or
/// at most two edits away), for "did you mean".
fn closest<'a>(wanted: &str, names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let current = row[j + 1];
                row[j + 1] = (previous + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(current + 1);
                previous = current;
            }
        }
        row[b.len()]
    }
    let wanted_lower = wanted.to_lowercase();
    names
        .into_iter()
        .map(|name| (distance(&wanted_lower, name), name))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, name)| name.to_owned())
}

impl TokenGate {
    /// The current time, UTC, whole seconds (the gate's wall clock).
    pub fn now(&self) -> OffsetDateTime {
        truncate_to_second(self.clock().now()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Starts a write transaction (rolled back if dropped uncommitted).
    async fn begin(&self) -> Result<Box<dyn WriteTx>, ManageError> {
        Ok(self
            .within_store_timeout(self.store().begin_write())
            .await?)
    }

    /// Commits `tx`, then applies `changes` to this process's caches.
    async fn commit(&self, tx: Box<dyn WriteTx>, changes: &[Change]) -> Result<(), ManageError> {
        self.within_store_timeout(tx.commit()).await?;
        self.invalidate_all(changes);
        Ok(())
    }

    /// Creates a token with every scope for an existing account. The
    /// plaintext is in the result, once.
    pub async fn create_token(
        &self,
        account_id: &str,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<CreatedToken, ManageError> {
        self.create_token_with(account_id, TokenSpec::new(name).expires_at(expires_at))
            .await
    }

    /// Creates a token as `spec` says for an existing account. The plaintext
    /// is in the result, once. Beyond the plan's token cap it is refused
    /// ([`ManageError::TooManyTokens`]).
    pub async fn create_token_with(
        &self,
        account_id: &str,
        spec: TokenSpec,
    ) -> Result<CreatedToken, ManageError> {
        let TokenSpec {
            name,
            expires_at,
            scopes,
        } = spec;
        let name = name.as_str();
        validate_account_id(account_id)?;
        validate_token_name(name)?;
        let now = self.now();
        let expires_at = validate_expiry(expires_at, now)?;
        let scopes = Scopes::requested(scopes.as_deref(), self.scopes())
            .map_err(|e| ManageError::Scope(e.to_string()))?;
        // Fail fast before spending argon2 on an account that does not exist.
        if self.account(account_id).await?.is_none() {
            return Err(ManageError::UnknownAccount(account_id.to_owned()));
        }
        let minted = self.format().generate();
        let secret_hash = self
            .hash_secret(minted.secret.clone())
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        let token = NewToken {
            id: minted.id,
            account_id: account_id.to_owned(),
            name: name.to_owned(),
            secret_hash,
            secret_tag: minted.secret_tag(),
            hint: minted.token.hint(),
            created_at: now,
            expires_at,
            scopes: scopes.names(),
        };
        let mut tx = self.begin().await?;
        let Some(account) = tx.account(account_id).await? else {
            return Err(ManageError::UnknownAccount(account_id.to_owned()));
        };
        let plan = tx.plan(&account.plan).await?;
        if let Some(max) = plan.as_ref().and_then(|plan| plan.max_tokens)
            && tx.count_live_tokens(account_id, self.clock().now()).await? >= max
        {
            return Err(ManageError::TooManyTokens {
                plan: account.plan,
                max,
            });
        }
        tx.insert_token(&token).await?;
        tx.record_change(&Change::Created(token.id), now).await?;
        let record = inserted(tx.token(&token.id).await?)?;
        self.commit(tx, &[]).await?;
        self.learn_token(record.id, token.secret_tag);
        self.metrics().record_admin("create_token");
        tracing::info!(token_id = %record.id, account_id, "token created");
        Ok(CreatedToken {
            record,
            token: minted.token,
        })
    }

    /// Revokes a token (idempotent: the first revocation time is kept). The
    /// next request with it gets 401.
    pub async fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord, ManageError> {
        let now = self.clock().now();
        let mut tx = self.begin().await?;
        let token = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        if token.revoked_at.is_some() {
            return Ok(token);
        }
        let update = TokenUpdate {
            expires_at: token.expires_at,
            revoked_at: Some(now),
            revoked_reason: Some("revoked"),
            replaced_by: token.replaced_by,
        };
        tx.update_token(id, update).await?;
        let change = Change::Token(*id);
        tx.record_change(&change, now).await?;
        let record = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        self.commit(tx, &[change]).await?;
        self.metrics().record_admin("revoke_token");
        tracing::info!(token_id = %id, "token revoked");
        Ok(record)
    }

    /// Replaces a token with a new one (same account and name). The old one
    /// keeps working for `grace`, and stops at once when `grace` is zero.
    /// The new token keeps the old one's expiry unless `new_expires_at` says otherwise.
    pub async fn rotate_token(
        &self,
        id: &TokenId,
        grace: Duration,
        new_expires_at: Option<OffsetDateTime>,
    ) -> Result<RotatedToken, ManageError> {
        let too_long = || invalid("grace_seconds must be at most 2592000 (30 days)");
        if grace > MAX_GRACE {
            return Err(too_long());
        }
        let grace = time::Duration::try_from(grace).map_err(|_| too_long())?;
        // The grace period ends when it says, to the millisecond; the new
        // token's creation time is shown in whole seconds.
        let precise_now = self.clock().now();
        let now = self.now();
        let new_expires_at = validate_expiry(new_expires_at, now)?;
        let minted = self.format().generate();
        let new_secret_hash = self
            .hash_secret(minted.secret.clone())
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        let secret_tag = minted.secret_tag();
        let mut tx = self.begin().await?;
        let old = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        check_rotatable(&old, precise_now)?;
        let new = NewToken {
            id: minted.id,
            account_id: old.account_id.clone(),
            name: old.name.clone(),
            secret_hash: new_secret_hash,
            secret_tag,
            hint: minted.token.hint(),
            created_at: now,
            expires_at: new_expires_at.or(old.expires_at),
            scopes: old.scopes.clone(),
        };
        tx.insert_token(&new).await?;
        let stops = TokenUpdate {
            replaced_by: Some(new.id),
            ..old_token_stops(&old, precise_now, grace)
        };
        tx.update_token(id, stops).await?;
        let change = Change::Token(*id);
        tx.record_change(&Change::Created(new.id), now).await?;
        tx.record_change(&change, now).await?;
        let old = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        let new = inserted(tx.token(&new.id).await?)?;
        self.commit(tx, &[change]).await?;
        self.learn_token(new.id, secret_tag);
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
        let now = self.now();
        let unknown_plan = async || {
            let plans = self.plans().await.unwrap_or_default();
            ManageError::UnknownPlan {
                plan: plan.to_owned(),
                closest: closest(plan, plans.iter().map(|p| p.name.as_str())),
            }
        };
        if plan.chars().count() > 64 {
            // Not worth a suggestion, nor an echo.
            return Err(validate_plan_name(plan).unwrap_err());
        }
        if validate_plan_name(plan).is_err() {
            return Err(unknown_plan().await);
        }
        let mut tx = self.begin().await?;
        if tx.plan(plan).await?.is_none() {
            drop(tx);
            return Err(unknown_plan().await);
        }
        let changes = match tx.account(account_id).await? {
            None => {
                let account = Account {
                    id: account_id.to_owned(),
                    plan: plan.to_owned(),
                    created_at: now,
                    updated_at: now,
                };
                tx.insert_account(&account).await?;
                vec![]
            }
            Some(old) if old.plan != plan => {
                tx.set_account_plan(account_id, plan, now).await?;
                let change = Change::Account(account_id.to_owned());
                tx.record_change(&change, now).await?;
                vec![change]
            }
            Some(_) => vec![],
        };
        let account = tx
            .account(account_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an upserted account vanished".into()))?;
        self.commit(tx, &changes).await?;
        self.metrics().record_admin("set_account_plan");
        tracing::info!(account_id, plan, "account plan set");
        Ok(account)
    }

    /// Creates or replaces a plan; takes effect on the next request of every
    /// token on it.
    pub async fn set_plan(&self, plan: &Plan) -> Result<Plan, ManageError> {
        let name = plan.name.as_str();
        validate_plan_name(name)?;
        // With a limit of 0 every request would be a 429 whose "try again
        // in N seconds" never comes true.
        if plan.api_access && plan.requests_per_hour == 0 {
            return Err(invalid(
                "requests_per_hour must be at least 1 for a plan with API access",
            ));
        }
        if plan.api_access && plan.account_requests_per_hour == Some(0) {
            return Err(invalid(
                "account_requests_per_hour must be at least 1 (or null for no ceiling) for a plan with API access",
            ));
        }
        let plan = plan.clone();
        let now = self.now();
        let mut tx = self.begin().await?;
        tx.upsert_plan(&plan).await?;
        let change = Change::Plan(name.to_owned());
        tx.record_change(&change, now).await?;
        self.commit(tx, &[change]).await?;
        self.metrics().record_admin("set_plan");
        tracing::info!(
            plan = name,
            api_access = plan.api_access,
            requests_per_hour = plan.requests_per_hour,
            account_requests_per_hour = plan.account_requests_per_hour,
            max_tokens = plan.max_tokens,
            "plan set"
        );
        Ok(plan)
    }

    /// Every plan, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>, ManageError> {
        Ok(self.within_store_timeout(self.store().list_plans()).await?)
    }

    /// One account, if it exists.
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, ManageError> {
        Ok(self
            .within_store_timeout(self.store().get_account(account_id))
            .await?)
    }

    /// An account's tokens, oldest first, revoked and expired ones included.
    pub async fn tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, ManageError> {
        if self.account(account_id).await?.is_none() {
            return Err(ManageError::UnknownAccount(account_id.to_owned()));
        }
        Ok(self
            .within_store_timeout(self.store().list_tokens(account_id))
            .await?)
    }

    /// One token, if it exists (never its secret).
    pub async fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>, ManageError> {
        Ok(self
            .within_store_timeout(self.store().get_token(id))
            .await?)
    }
}

/// A row this transaction inserted, read back.
fn inserted(token: Option<TokenRecord>) -> Result<TokenRecord, ManageError> {
    token.ok_or_else(|| StoreError::Corrupt("an inserted token vanished".into()).into())
}

/// An optional expiry: in the future, in whole seconds, at most year 9999.
fn validate_expiry(
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

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

    fn token(expires_at: Option<OffsetDateTime>) -> TokenRecord {
        TokenRecord {
            id: TokenId::random(),
            account_id: "acct".into(),
            name: "CI".into(),
            hint: "abcd".into(),
            created_at: datetime!(2026-01-01 0:00 UTC),
            last_used_at: None,
            expires_at,
            revoked_at: None,
            revoked_reason: None,
            replaced_by: None,
            scopes: vec!["*".into()],
        }
    }

    #[test]
    fn a_grace_period_ends_to_the_millisecond_but_never_after_the_token_expires() {
        let now = datetime!(2026-06-01 12:00:00.750 UTC);
        let grace = time::Duration::seconds(2);
        let update = old_token_stops(&token(None), now, grace);
        assert_eq!(
            update.expires_at,
            Some(datetime!(2026-06-01 12:00:02.750 UTC))
        );
        assert_eq!(update.revoked_at, None);
        let soon = datetime!(2026-06-01 12:00:01 UTC);
        assert_eq!(
            old_token_stops(&token(Some(soon)), now, grace).expires_at,
            Some(soon)
        );
        let at_once = old_token_stops(&token(Some(soon)), now, time::Duration::ZERO);
        assert_eq!(at_once.revoked_at, Some(now));
        assert_eq!(at_once.expires_at, Some(soon));
    }

    #[test]
    fn only_live_unrotated_tokens_rotate() {
        let now = datetime!(2026-06-01 12:00 UTC);
        assert!(check_rotatable(&token(None), now).is_ok());
        let expired = token(Some(now));
        assert!(matches!(
            check_rotatable(&expired, now),
            Err(ManageError::TokenExpired(_))
        ));
        let mut revoked = token(None);
        revoked.revoked_at = Some(now);
        assert!(matches!(
            check_rotatable(&revoked, now),
            Err(ManageError::TokenRevoked(_))
        ));
        let mut rotated = token(None);
        let successor = TokenId::random();
        rotated.revoked_reason = Some("rotated".into());
        rotated.replaced_by = Some(successor);
        assert!(matches!(
            check_rotatable(&rotated, now),
            Err(ManageError::TokenAlreadyRotated { successor: Some(s), .. }) if s == successor
        ));
    }

    #[test]
    fn closest_plan_names_are_suggested() {
        let plans = ["enterprise", "free", "pro"];
        assert_eq!(closest("Pro", plans), Some("pro".into()));
        assert_eq!(closest("entreprise", plans), Some("enterprise".into()));
        assert_eq!(closest("premium", plans), None);
    }
}
