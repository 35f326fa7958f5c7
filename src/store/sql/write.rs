//! [`WriteTx`] over any driver: the primitive steps of a write transaction
//! (plans, accounts, tokens, the change feed, the audit log) and its commit.
//!
//! Each step is one statement on the transaction's connection; they become
//! visible together at commit. This module must not combine steps into a
//! rule (rotation, revocation and the changes they record are `manage`'s)
//! nor order the change feed (the driver's transaction does that).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::columns::{
    ACCOUNT_COLUMNS, PLAN_COLUMNS, TOKEN_COLUMNS, account_from_row, all, first, plan_from_row,
    scopes_column, token_from_row,
};
use crate::store::driver::Conn;
use crate::store::{
    Account, AuditEvent, Change, NewToken, Plan, StoreError, TokenRecord, TokenUpdate, WriteTx,
};
use crate::token::TokenId;

/// A write transaction over any driver.
pub(super) struct SqlTx(pub(super) Box<dyn Conn>);

#[async_trait]
impl WriteTx for SqlTx {
    async fn plan(&mut self, name: &str) -> Result<Option<Plan>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE name = $1");
        first(self.0.fetch(&sql, vec![name.into()]).await?, plan_from_row)
    }

    async fn upsert_plan(&mut self, plan: &Plan) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO plans \
                 (name, api_access, requests_per_hour, account_requests_per_hour, max_tokens) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET api_access = excluded.api_access, \
                 requests_per_hour = excluded.requests_per_hour, \
                 account_requests_per_hour = excluded.account_requests_per_hour, \
                 max_tokens = excluded.max_tokens",
                vec![
                    plan.name.as_str().into(),
                    plan.api_access.into(),
                    i64::from(plan.requests_per_hour).into(),
                    plan.account_requests_per_hour.map(i64::from).into(),
                    plan.max_tokens.map(i64::from).into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn account(&mut self, id: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        first(self.0.fetch(&sql, vec![id.into()]).await?, account_from_row)
    }

    async fn insert_account(&mut self, account: &Account) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO accounts (id, plan, created_at, updated_at) VALUES ($1, $2, $3, $4)",
                vec![
                    account.id.as_str().into(),
                    account.plan.as_str().into(),
                    account.created_at.into(),
                    account.updated_at.into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn set_account_plan(
        &mut self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0
            .execute(
                "UPDATE accounts SET plan = $1, updated_at = $2 WHERE id = $3",
                vec![plan.into(), now.into(), id.into()],
            )
            .await
            .map(drop)
    }

    async fn token(&mut self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        first(self.0.fetch(&sql, vec![id.into()]).await?, token_from_row)
    }

    async fn window_of(&mut self, id: &TokenId) -> Result<Option<TokenId>, StoreError> {
        let rows = self
            .0
            .fetch(
                "SELECT COALESCE(window_id, id) AS window_id FROM api_tokens WHERE id = $1",
                vec![id.into()],
            )
            .await?;
        first(rows, |row| row.token_id("window_id"))
    }

    async fn live_predecessors(
        &mut self,
        id: &TokenId,
        now: OffsetDateTime,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE replaced_by = $1 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) ORDER BY id"
        );
        all(
            self.0.fetch(&sql, vec![id.into(), now.into()]).await?,
            token_from_row,
        )
    }

    async fn insert_token(&mut self, token: &NewToken) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO api_tokens \
                 (id, account_id, name, secret_hash, secret_tag, hint, created_at, expires_at, \
                 scopes, window_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                vec![
                    (&token.id).into(),
                    token.account_id.as_str().into(),
                    token.name.as_str().into(),
                    token.secret_hash.as_str().into(),
                    i64::from(token.secret_tag).into(),
                    token.hint.as_str().into(),
                    token.created_at.into(),
                    token.expires_at.into(),
                    scopes_column(&token.scopes).into(),
                    token.window_id.as_ref().map(TokenId::to_string).into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn count_live_tokens(
        &mut self,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let rows = self
            .0
            .fetch(
                "SELECT COUNT(*) AS live FROM api_tokens WHERE account_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)",
                vec![account_id.into(), now.into()],
            )
            .await?;
        first(rows, |row| row.u32("live")).map(Option::unwrap_or_default)
    }

    async fn update_token(
        &mut self,
        id: &TokenId,
        update: TokenUpdate<'_>,
    ) -> Result<(), StoreError> {
        self.0
            .execute(
                "UPDATE api_tokens SET expires_at = $1, revoked_at = $2, revoked_reason = $3, \
                 replaced_by = $4 WHERE id = $5",
                vec![
                    update.expires_at.into(),
                    update.revoked_at.into(),
                    update.revoked_reason.into(),
                    update.replaced_by.as_ref().map(TokenId::to_string).into(),
                    id.into(),
                ],
            )
            .await
            .map(drop)
    }

    async fn record_change(
        &mut self,
        change: &Change,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO changes (kind, subject, at) VALUES ($1, $2, $3)",
                vec![change.kind().into(), change.subject().into(), at.into()],
            )
            .await
            .map(drop)
    }

    async fn record_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO audit_events \
                 (at, action, actor, account_id, token_id, source_ip, request_id, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vec![
                    event.at.into(),
                    event.action.as_str().into(),
                    event.actor.as_str().into(),
                    event.account_id.clone().into(),
                    event.token_id.as_ref().map(TokenId::to_string).into(),
                    event.source_ip.clone().into(),
                    event.request_id.clone().into(),
                    event.details.to_string().into(),
                ],
            )
            .await?;
        // The webhook event, if any endpoint wants it, commits with the change.
        super::outbox::enqueue_audited(self.0.as_mut(), event).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.0.commit().await
    }
}
