//! The changes, each in one store transaction with its audit event: a
//! change and its event commit together or not at all.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::rules::{
    adds_a_live_token, check_api_access, check_rotatable, closest, grace_ends, inserted, invalid,
    old_token_stops, validate_account_id, validate_expiry, validate_plan_name, validate_token_name,
};
use super::{Actor, CreatedToken, MAX_GRACE, ManageError, Manager, PlanUpdate, TokenSpec};
use crate::scope::Scopes;
use crate::store::{
    Account, Change, NewToken, Plan, StoreError, TokenRecord, TokenUpdate, WriteTx,
};
use crate::token::TokenId;

/// Changes made on behalf of an [`Actor`], who is named in the audit log.
/// Made by [`Manager::acting_as`].
#[derive(Debug, Clone)]
pub struct Management<'m> {
    manager: &'m Manager,
    actor: Actor,
}

impl<'m> Management<'m> {
    /// The longest grace period a rotation may give the old token: 30 days.
    pub const MAX_GRACE: Duration = MAX_GRACE;

    pub(super) fn new(manager: &'m Manager, actor: Actor) -> Self {
        Self { manager, actor }
    }

    /// Starts a write transaction (rolled back if dropped uncommitted).
    async fn begin(&self) -> Result<Box<dyn WriteTx>, ManageError> {
        let manager = self.manager;
        Ok(manager.within(manager.parts.store.begin_write()).await?)
    }

    /// Commits `tx`, then applies `changes` to this process's caches.
    async fn commit(&self, tx: Box<dyn WriteTx>, changes: &[Change]) -> Result<(), ManageError> {
        self.manager.within(tx.commit()).await?;
        self.manager.parts.hook.invalidate(changes);
        Ok(())
    }

    pub(super) fn manager(&self) -> &Manager {
        self.manager
    }

    /// Creates a token as `spec` says for an existing account. The
    /// plaintext is in the result, once. Beyond the plan's token cap it is
    /// refused ([`ManageError::TooManyTokens`]).
    pub async fn create_token_with(
        &self,
        account_id: &str,
        spec: TokenSpec,
    ) -> Result<CreatedToken, ManageError> {
        let manager = self.manager;
        let TokenSpec {
            name,
            expires_at,
            scopes,
        } = spec;
        validate_account_id(account_id)?;
        validate_token_name(&name)?;
        let now = manager.now();
        let expires_at = validate_expiry(expires_at, now)?;
        let scopes = Scopes::requested(scopes.as_deref(), &manager.parts.scopes)
            .map_err(|e| ManageError::Scope(e.to_string()))?;
        // Fail fast, before spending argon2, on an account that does not
        // exist or may not have tokens; the transaction checks again.
        self.check_may_have_tokens(account_id).await?;
        let minted = manager.parts.format.generate();
        let secret_hash = manager
            .parts
            .hasher
            .hash(minted.secret.clone())
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        let token = NewToken {
            id: minted.id,
            account_id: account_id.to_owned(),
            name,
            secret_hash,
            secret_tag: minted.secret_tag(),
            hint: minted.token.hint(),
            created_at: now,
            expires_at,
            scopes: scopes.names(),
            window_id: None,
        };
        let mut tx = self.begin().await?;
        let Some(account) = tx.account(account_id).await? else {
            return Err(ManageError::UnknownAccount(account_id.to_owned()));
        };
        let plan = tx.plan(&account.plan).await?;
        check_api_access(&account, plan.as_ref())?;
        if let Some(max) = plan.as_ref().and_then(|plan| plan.max_tokens)
            && tx
                .count_live_tokens(account_id, manager.parts.clock.now())
                .await?
                >= max
        {
            return Err(ManageError::TooManyTokens {
                plan: account.plan,
                max,
            });
        }
        tx.insert_token(&token).await?;
        tx.record_change(&Change::Created(token.id), now).await?;
        let details = json!({
            "name": token.name,
            "scopes": token.scopes,
            "expires_at": expires_at.map(rfc3339),
        });
        let event = self.actor.event(
            now,
            "token.created",
            Some(account_id),
            Some(token.id),
            details,
        );
        tx.record_audit(&event).await?;
        let record = inserted(tx.token(&token.id).await?)?;
        self.commit(tx, &[]).await?;
        manager.parts.hook.learn_token(record.id, token.secret_tag);
        manager.parts.metrics.record_admin("create_token");
        tracing::info!(token_id = %record.id, account_id, actor = %self.actor.name, "token created");
        Ok(CreatedToken {
            record,
            token: minted.token,
        })
    }

    /// The account exists and its plan has API access.
    async fn check_may_have_tokens(&self, account_id: &str) -> Result<(), ManageError> {
        let manager = self.manager;
        let Some(account) = manager.account(account_id).await? else {
            return Err(ManageError::UnknownAccount(account_id.to_owned()));
        };
        let plan = manager
            .within(manager.parts.store.get_plan(&account.plan))
            .await?;
        check_api_access(&account, plan.as_ref())
    }

    /// Creates a token with every scope (see [`create_token_with`](Self::create_token_with)).
    pub async fn create_token(
        &self,
        account_id: &str,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<CreatedToken, ManageError> {
        self.create_token_with(account_id, TokenSpec::new(name).expires_at(expires_at))
            .await
    }

    /// Revokes a token (idempotent: the first revocation time is kept). The
    /// next request with it gets 401.
    pub async fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord, ManageError> {
        let record = self
            .revoke(id, "revoked", "token.revoked", json!({}))
            .await?;
        tracing::info!(token_id = %id, actor = %self.actor.name, "token revoked");
        Ok(record)
    }

    /// Revokes `id` for `reason`, recording `action` with `details`; a token
    /// already revoked is returned as it is, and nothing is recorded.
    pub(super) async fn revoke(
        &self,
        id: &TokenId,
        reason: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<TokenRecord, ManageError> {
        let now = self.manager.parts.clock.now();
        let mut tx = self.begin().await?;
        let token = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        if token.revoked_at.is_some() {
            return Ok(token);
        }
        let update = TokenUpdate {
            expires_at: token.expires_at,
            revoked_at: Some(now),
            revoked_reason: Some(reason),
            replaced_by: token.replaced_by,
        };
        tx.update_token(id, update).await?;
        let change = Change::Token(*id);
        tx.record_change(&change, now).await?;
        let event = self
            .actor
            .event(now, action, Some(&token.account_id), Some(*id), details);
        tx.record_audit(&event).await?;
        let record = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        self.commit(tx, &[change]).await?;
        self.manager.parts.metrics.record_admin("revoke_token");
        Ok(record)
    }

    /// Replaces a token with a new one (same account, name and scopes). The
    /// old one keeps working for `grace`, and stops at once when `grace` is
    /// zero. The new token keeps the old one's expiry unless
    /// `new_expires_at` says otherwise. Returns the old token (with its new
    /// `expires_at` or `revoked_at`) and the new one, whose plaintext, as
    /// from [`create_token`](Self::create_token), is shown once.
    pub async fn rotate_token(
        &self,
        id: &TokenId,
        grace: Duration,
        new_expires_at: Option<OffsetDateTime>,
    ) -> Result<(TokenRecord, CreatedToken), ManageError> {
        let manager = self.manager;
        let too_long = || invalid("grace_seconds must be at most 2592000 (30 days)");
        if grace > MAX_GRACE {
            return Err(too_long());
        }
        let grace = time::Duration::try_from(grace).map_err(|_| too_long())?;
        // The grace period ends when it says, to the millisecond; the new
        // token's creation time is shown in whole seconds.
        let precise_now = manager.parts.clock.now();
        let now = manager.now();
        let new_expires_at = validate_expiry(new_expires_at, now)?;
        let minted = manager.parts.format.generate();
        let new_secret_hash = manager
            .parts
            .hasher
            .hash(minted.secret.clone())
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        let secret_tag = minted.secret_tag();
        let mut tx = self.begin().await?;
        let old = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        check_rotatable(&old, precise_now)?;
        let account = tx
            .account(&old.account_id)
            .await?
            .ok_or_else(|| ManageError::UnknownAccount(old.account_id.clone()))?;
        let plan = tx.plan(&account.plan).await?;
        check_api_access(&account, plan.as_ref())?;
        // One lineage authenticates with at most two tokens: rotating a token
        // whose own predecessor is still in grace ends that grace now.
        let ended = tx.live_predecessors(id, precise_now).await?;
        if adds_a_live_token(grace, &ended)
            && let Some(max) = plan.as_ref().and_then(|plan| plan.max_tokens)
            && tx.count_live_tokens(&old.account_id, precise_now).await? >= max
        {
            return Err(ManageError::GraceOverTokenCap {
                plan: account.plan,
                max,
            });
        }
        // The successor counts in the old token's window: no extra requests.
        let window_id = tx
            .window_of(id)
            .await?
            .filter(|window| window != &minted.id);
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
            window_id,
        };
        tx.insert_token(&new).await?;
        let stops = TokenUpdate {
            replaced_by: Some(new.id),
            ..old_token_stops(&old, precise_now, grace)
        };
        tx.update_token(id, stops).await?;
        tx.record_change(&Change::Created(new.id), now).await?;
        tx.record_change(&Change::Token(*id), now).await?;
        let mut changes = vec![Change::Token(*id)];
        for predecessor in &ended {
            tx.update_token(&predecessor.id, grace_ends(predecessor, precise_now))
                .await?;
            let change = Change::Token(predecessor.id);
            tx.record_change(&change, now).await?;
            changes.push(change);
        }
        let old = tx.token(id).await?.ok_or(ManageError::UnknownToken(*id))?;
        let details = json!({
            "new_token_id": new.id.to_string(),
            "grace_seconds": grace.whole_seconds(),
            "old_token_stops_at": old.revoked_at.or(old.expires_at).map(rfc3339),
            "ended_grace_of": ended.iter().map(|t| t.id.to_string()).collect::<Vec<_>>(),
        });
        let event = self.actor.event(
            now,
            "token.rotated",
            Some(&old.account_id),
            Some(*id),
            details,
        );
        tx.record_audit(&event).await?;
        let new = inserted(tx.token(&new.id).await?)?;
        self.commit(tx, &changes).await?;
        manager.parts.hook.learn_token(new.id, secret_tag);
        manager.parts.metrics.record_admin("rotate_token");
        tracing::info!(old_token_id = %id, new_token_id = %new.id, grace_secs = grace.whole_seconds(), actor = %self.actor.name, "token rotated");
        Ok((
            old,
            CreatedToken {
                record: new,
                token: minted.token,
            },
        ))
    }

    /// Creates an account or moves it to another plan; takes effect on the next request.
    pub async fn set_account_plan(
        &self,
        account_id: &str,
        plan: &str,
    ) -> Result<Account, ManageError> {
        let manager = self.manager;
        validate_account_id(account_id)?;
        let now = manager.now();
        let unknown_plan = async || {
            let plans = manager.plans().await.unwrap_or_default();
            ManageError::UnknownPlan {
                plan: plan.to_owned(),
                closest: closest(plan, plans.iter().map(|p| p.name.as_str())),
            }
        };
        if let Err(invalid) = validate_plan_name(plan) {
            if plan.chars().count() > 64 {
                // Not worth a suggestion, nor an echo.
                return Err(invalid);
            }
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
                let details = json!({ "plan": plan });
                let event =
                    self.actor
                        .event(now, "account.created", Some(account_id), None, details);
                tx.record_audit(&event).await?;
                vec![]
            }
            Some(old) if old.plan != plan => {
                tx.set_account_plan(account_id, plan, now).await?;
                let change = Change::Account(account_id.to_owned());
                tx.record_change(&change, now).await?;
                let details = json!({ "from": old.plan, "to": plan });
                let event =
                    self.actor
                        .event(now, "account.plan_changed", Some(account_id), None, details);
                tx.record_audit(&event).await?;
                vec![change]
            }
            Some(_) => vec![],
        };
        let account = tx
            .account(account_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an upserted account vanished".into()))?;
        self.commit(tx, &changes).await?;
        manager.parts.metrics.record_admin("set_account_plan");
        tracing::info!(account_id, plan, actor = %self.actor.name, "account plan set");
        Ok(account)
    }

    /// Creates or replaces a plan; takes effect on the next request of every
    /// token on it.
    pub async fn set_plan(&self, plan: &Plan) -> Result<Plan, ManageError> {
        validate_plan_name(&plan.name)?;
        check_plan_limits(plan)?;
        let mut tx = self.begin().await?;
        let previous = tx.plan(&plan.name).await?;
        self.write_plan(tx, previous, plan).await
    }

    /// Changes some of an existing plan's settings and keeps the others;
    /// takes effect on the next request of every token on it.
    pub async fn update_plan(&self, name: &str, update: &PlanUpdate) -> Result<Plan, ManageError> {
        validate_plan_name(name)?;
        let mut tx = self.begin().await?;
        let Some(previous) = tx.plan(name).await? else {
            drop(tx);
            let plans = self.manager.plans().await.unwrap_or_default();
            return Err(ManageError::UnknownPlan {
                plan: name.to_owned(),
                closest: closest(name, plans.iter().map(|p| p.name.as_str())),
            });
        };
        let plan = update.apply(&previous);
        check_plan_limits(&plan)?;
        self.write_plan(tx, Some(previous), &plan).await
    }

    /// Stores `plan` (which was `previous`) with its change-feed row and
    /// audit event, in `tx`.
    async fn write_plan(
        &self,
        mut tx: Box<dyn WriteTx>,
        previous: Option<Plan>,
        plan: &Plan,
    ) -> Result<Plan, ManageError> {
        let name = plan.name.as_str();
        if previous.as_ref() == Some(plan) {
            return Ok(plan.clone());
        }
        let now = self.manager.now();
        tx.upsert_plan(plan).await?;
        let change = Change::Plan(name.to_owned());
        tx.record_change(&change, now).await?;
        let (action, details) = match previous {
            None => ("plan.created", json!({ "plan": plan })),
            Some(previous) => ("plan.updated", json!({ "from": previous, "to": plan })),
        };
        tx.record_audit(&self.actor.event(now, action, None, None, details))
            .await?;
        self.commit(tx, &[change]).await?;
        self.manager.parts.metrics.record_admin("set_plan");
        tracing::info!(
            plan = name,
            api_access = plan.api_access,
            requests_per_hour = plan.requests_per_hour,
            account_requests_per_hour = plan.account_requests_per_hour,
            max_tokens = plan.max_tokens,
            actor = %self.actor.name,
            "plan set"
        );
        Ok(plan.clone())
    }
}

/// A plan's limits that would make no sense: with a limit of 0 every request
/// would be a 429 whose "try again in N seconds" never comes true.
fn check_plan_limits(plan: &Plan) -> Result<(), ManageError> {
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
    Ok(())
}

/// RFC 3339 text of a time, for audit details.
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
