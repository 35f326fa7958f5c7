//! [`Manager`]: the management component, and its reads.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::{
    Actor, CreatedToken, MAX_AUDIT_PAGE, MAX_USAGE_HOURS, ManageError, Management, PlanUpdate,
    TokenSpec, rules,
};
use crate::clock::hour_of;
use crate::gate::{ManagementParts, TokenGate};
use crate::store::{
    Account, AuditEvent, AuditQuery, Plan, StoreError, TokenRecord, UsageHour, truncate_to_second,
    within,
};
use crate::token::TokenId;

/// Creates, rotates and revokes tokens, and sets accounts' plans and the
/// plans themselves, each change with its audit event. Made from a
/// [`TokenGate`] (cheap; clones share everything), whose cache each
/// committed change reaches at once.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tokengate::{Actor, Argon2Params, Manager, SqliteStore, TokenGate, TokenStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let gate = TokenGate::builder(Arc::new(store))
///     .with_argon2_params(Argon2Params::insecure_fast_for_tests())
///     .build()?;
/// let manager = Manager::new(&gate);
/// manager.set_account_plan("acct_1", "pro").await?;
/// // As `app` (your code), or as someone named in the audit log:
/// let created = manager
///     .acting_as(Actor::new("support:ana"))
///     .create_token("acct_1", "CI", None)
///     .await?;
/// assert!(gate.authenticate_token(created.token.expose_secret()).await.is_ok());
/// manager.revoke_token(&created.record.id).await?;
/// assert!(gate.authenticate_token(created.token.expose_secret()).await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Manager {
    /// What the gate gave it (see [`TokenGate`]'s `management_parts`).
    pub(super) parts: ManagementParts,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("format", &self.parts.format)
            .field("scopes", &self.parts.scopes)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// The management component of `gate`: the same store, clock and token
    /// format, and the gate's cache learns of each change as it commits.
    pub fn new(gate: &TokenGate) -> Self {
        Self {
            parts: gate.management_parts(),
        }
    }

    /// Runs a store call with the gate's store timeout.
    pub(super) async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        within(self.parts.store_timeout, call).await
    }

    /// The current time, UTC, whole seconds (the gate's wall clock).
    pub fn now(&self) -> OffsetDateTime {
        truncate_to_second(self.parts.clock.now()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Changes on behalf of `actor`, who is named in the audit log.
    pub fn acting_as(&self, actor: Actor) -> Management<'_> {
        Management::new(self, actor)
    }

    fn as_app(&self) -> Management<'_> {
        self.acting_as(Actor::new("app"))
    }

    /// Creates a token with every scope for an existing account, as `app`.
    /// The plaintext is in the result, once.
    pub async fn create_token(
        &self,
        account_id: &str,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<CreatedToken, ManageError> {
        self.as_app()
            .create_token(account_id, name, expires_at)
            .await
    }

    /// Creates a token as `spec` says, as `app` (see [`Management::create_token_with`]).
    pub async fn create_token_with(
        &self,
        account_id: &str,
        spec: TokenSpec,
    ) -> Result<CreatedToken, ManageError> {
        self.as_app().create_token_with(account_id, spec).await
    }

    /// Revokes a token, as `app` (see [`Management::revoke_token`]).
    pub async fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord, ManageError> {
        self.as_app().revoke_token(id).await
    }

    /// Rotates a token, as `app` (see [`Management::rotate_token`]).
    pub async fn rotate_token(
        &self,
        id: &TokenId,
        grace: Duration,
        new_expires_at: Option<OffsetDateTime>,
    ) -> Result<(TokenRecord, CreatedToken), ManageError> {
        self.as_app().rotate_token(id, grace, new_expires_at).await
    }

    /// Creates an account or moves it to another plan, as `app`.
    pub async fn set_account_plan(
        &self,
        account_id: &str,
        plan: &str,
    ) -> Result<Account, ManageError> {
        self.as_app().set_account_plan(account_id, plan).await
    }

    /// Creates or replaces a plan, as `app`.
    pub async fn set_plan(&self, plan: &Plan) -> Result<Plan, ManageError> {
        self.as_app().set_plan(plan).await
    }

    /// Changes some of an existing plan's settings and keeps the rest, as `app`.
    pub async fn update_plan(&self, name: &str, update: &PlanUpdate) -> Result<Plan, ManageError> {
        self.as_app().update_plan(name, update).await
    }

    /// Every plan, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>, ManageError> {
        Ok(self.within(self.parts.store.list_plans()).await?)
    }

    /// One plan, if it exists.
    pub async fn plan(&self, name: &str) -> Result<Option<Plan>, ManageError> {
        Ok(self.within(self.parts.store.get_plan(name)).await?)
    }

    /// One account, if it exists.
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, ManageError> {
        Ok(self
            .within(self.parts.store.get_account(account_id))
            .await?)
    }

    /// An account's tokens, oldest first, revoked and expired ones included.
    pub async fn tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, ManageError> {
        if self.account(account_id).await?.is_none() {
            return Err(ManageError::UnknownAccount(account_id.to_owned()));
        }
        Ok(self
            .within(self.parts.store.list_tokens(account_id))
            .await?)
    }

    /// One token, if it exists (never its secret).
    pub async fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>, ManageError> {
        Ok(self.within(self.parts.store.get_token(id)).await?)
    }

    /// Audit events matching `query`, newest first (at most 500 at a time;
    /// page with `before` set to the last event's id).
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, ManageError> {
        if !(1..=MAX_AUDIT_PAGE).contains(&query.limit) {
            return Err(rules::invalid(format!(
                "limit must be 1 to {MAX_AUDIT_PAGE}"
            )));
        }
        Ok(self.within(self.parts.store.audit_events(query)).await?)
    }

    /// A token's requests per hour over the last `hours` hours (1 to 2160),
    /// oldest first, one entry per hour (zeros included). Counts reach the
    /// store every last-use flush interval (10 s by default).
    pub async fn token_usage(
        &self,
        id: &TokenId,
        hours: u32,
    ) -> Result<Vec<UsageHour>, ManageError> {
        if !(1..=MAX_USAGE_HOURS).contains(&hours) {
            return Err(rules::invalid(format!(
                "hours must be 1 to {MAX_USAGE_HOURS}"
            )));
        }
        let current = hour_of(self.parts.clock.now());
        let first = current - time::Duration::hours(i64::from(hours) - 1);
        let rows = self
            .within(self.parts.store.usage_series(id, first))
            .await?;
        Ok((0..i64::from(hours))
            .map(|i| {
                let hour = first + time::Duration::hours(i);
                rows.iter()
                    .find(|row| row.hour == hour)
                    .copied()
                    .unwrap_or(UsageHour {
                        hour,
                        admitted: 0,
                        limited: 0,
                    })
            })
            .collect())
    }

    /// Admitted requests in the last 24 hours of each of `ids`.
    pub(crate) async fn requests_24h(
        &self,
        ids: &[TokenId],
    ) -> Result<HashMap<TokenId, u64>, ManageError> {
        let since = hour_of(self.parts.clock.now()) - time::Duration::hours(23);
        let totals = self
            .within(self.parts.store.usage_totals(ids, since))
            .await?;
        Ok(totals.into_iter().collect())
    }
}
