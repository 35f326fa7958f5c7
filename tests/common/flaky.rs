//! A `TokenStore` that fails on demand: the test double for backend faults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokengate::TokenId;
use tokengate::store::{
    Account, Change, Credential, NewToken, Plan, Rotated, Rotation, SqliteStore, StoreError,
    TokenRecord, TokenStore,
};

/// Delegates to SQLite, unless `fail(true)`: then every call is `Unavailable`.
pub struct FlakyStore {
    inner: SqliteStore,
    failing: AtomicBool,
    credential_lookups: AtomicU64,
    credential_delay_ms: AtomicU64,
}

impl FlakyStore {
    pub fn new(inner: SqliteStore) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            credential_lookups: AtomicU64::new(0),
            credential_delay_ms: AtomicU64::new(0),
        }
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes each credential lookup answer this long after it read the row
    /// (a slow network), so a change can commit while a lookup is in flight.
    pub fn delay_credential_answers(&self, delay: std::time::Duration) {
        self.credential_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many times authentication looked a token up.
    pub fn credential_lookups(&self) -> u64 {
        self.credential_lookups.load(Ordering::SeqCst)
    }

    pub fn sqlite(&self) -> &SqliteStore {
        &self.inner
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "injected fault").into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl TokenStore for FlakyStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.check()?;
        self.inner.list_plans().await
    }
    async fn get_plan(&self, name: &str) -> Result<Option<Plan>, StoreError> {
        self.check()?;
        self.inner.get_plan(name).await
    }
    async fn upsert_plan(&self, plan: &Plan, now: OffsetDateTime) -> Result<Plan, StoreError> {
        self.check()?;
        self.inner.upsert_plan(plan, now).await
    }
    async fn upsert_account(
        &self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(Account, bool), StoreError> {
        self.check()?;
        self.inner.upsert_account(id, plan, now).await
    }
    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.check()?;
        self.inner.get_account(id).await
    }
    async fn insert_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        self.check()?;
        self.inner.insert_token(token).await
    }
    async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.check()?;
        self.inner.list_tokens(account_id).await
    }
    async fn get_token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.check()?;
        self.inner.get_token(id).await
    }
    async fn revoke_token(
        &self,
        id: &TokenId,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.check()?;
        self.inner.revoke_token(id, reason, now).await
    }
    async fn rotate_token(&self, rotation: &Rotation) -> Result<Rotated, StoreError> {
        self.check()?;
        self.inner.rotate_token(rotation).await
    }
    async fn live_token_ids(&self) -> Result<Vec<TokenId>, StoreError> {
        self.check()?;
        self.inner.live_token_ids().await
    }
    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError> {
        self.credential_lookups.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let credential = self.inner.find_credential(id).await;
        let delay = self.credential_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        credential
    }
    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_last_used(uses).await
    }
    async fn changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Change)>, StoreError> {
        self.check()?;
        self.inner.changes_after(after, limit).await
    }
    async fn latest_change(&self) -> Result<i64, StoreError> {
        self.check()?;
        self.inner.latest_change().await
    }
    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.prune_changes(before).await
    }
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        self.inner.get_setting(key).await
    }
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_setting(key, value).await
    }
}
