//! A store that fails on demand: the test double for backend faults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokengate::{
    Account, AdminStore, AuditEvent, AuditQuery, Change, Credential, CredentialStore, FeedEntry,
    NewToken, Plan, StoreError, TokenRecord, TokenUpdate, UsageDelta, UsageHour, WriteTx,
};
use tokengate::{SqliteStore, TokenId, TokenStore};

/// Delegates to SQLite, unless `fail(true)`: then every call is `Unavailable`.
#[derive(Debug)]
pub struct FlakyStore {
    inner: SqliteStore,
    state: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    failing: AtomicBool,
    failing_audit: AtomicBool,
    hanging: AtomicBool,
    hung_calls: AtomicU64,
    credential_lookups: AtomicU64,
    credential_delay_ms: AtomicU64,
    /// Whether the next credential lookup waits after reading its row.
    hold_next_credential: AtomicBool,
    /// Signalled when a lookup is held; signals a held lookup to answer.
    credential_held: tokio::sync::Notify,
    credential_released: tokio::sync::Notify,
    /// Reads of settings still to hold at the barrier.
    setting_reads: Mutex<Option<(Arc<tokio::sync::Barrier>, usize)>>,
}

impl Faults {
    async fn check(&self) -> Result<(), StoreError> {
        if self.hanging.load(Ordering::SeqCst) {
            self.hung_calls.fetch_add(1, Ordering::SeqCst);
            // A partition, not a refusal: never answers.
            std::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::unavailable(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "injected fault",
            )))
        } else {
            Ok(())
        }
    }
}

impl FlakyStore {
    /// Wraps `inner`, healthy.
    pub fn new(inner: SqliteStore) -> Self {
        Self {
            inner,
            state: Arc::default(),
        }
    }

    /// Makes every call fail (`true`) or succeed again (`false`).
    pub fn fail(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes writing audit events fail (`true`): every change then fails
    /// as a whole, since a change commits only with its event.
    pub fn fail_audit(&self, failing: bool) {
        self.state.failing_audit.store(failing, Ordering::SeqCst);
    }

    /// Makes every call hang forever (`true`), as a partitioned database does.
    pub fn hang(&self, hanging: bool) {
        self.state.hanging.store(hanging, Ordering::SeqCst);
    }

    /// How many calls have hung (see [`hang`](Self::hang)), so a test can
    /// wait until background work is stuck instead of sleeping.
    pub fn hung_calls(&self) -> u64 {
        self.state.hung_calls.load(Ordering::SeqCst)
    }

    /// Makes each credential lookup answer this long after it read the row
    /// (a slow network), so a change can commit while a lookup is in flight.
    pub fn delay_credential_answers(&self, delay: Duration) {
        self.state.credential_delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Makes the next credential lookup wait, once it has read the row,
    /// until [`release_credential_answer`](Self::release_credential_answer):
    /// a lookup in flight, stopped at a known point, so a test can change
    /// the token meanwhile without ordering anything by sleeping.
    pub fn hold_next_credential_answer(&self) {
        self.state
            .hold_next_credential
            .store(true, Ordering::SeqCst);
    }

    /// Waits until the lookup [`hold_next_credential_answer`](Self::hold_next_credential_answer)
    /// asked for has read its row and is held.
    pub async fn credential_answer_held(&self) {
        self.state.credential_held.notified().await;
    }

    /// Lets the held credential lookup answer (with the row it read).
    pub fn release_credential_answer(&self) {
        self.state.credential_released.notify_one();
    }

    /// Makes the next `parties` reads of a setting wait for each other, so
    /// that all of them see the database as it was before any of them wrote
    /// (several instances starting at the same moment).
    pub fn synchronize_setting_reads(&self, parties: usize) {
        *self.state.setting_reads.lock().unwrap() =
            Some((Arc::new(tokio::sync::Barrier::new(parties)), parties));
    }

    /// How many times authentication looked a token up.
    pub fn credential_lookups(&self) -> u64 {
        self.state.credential_lookups.load(Ordering::SeqCst)
    }

    /// The SQLite store underneath (no faults).
    pub fn sqlite(&self) -> &SqliteStore {
        &self.inner
    }
}

#[async_trait]
impl CredentialStore for FlakyStore {
    async fn find_credential(&self, id: &TokenId) -> Result<Option<Credential>, StoreError> {
        self.state.credential_lookups.fetch_add(1, Ordering::SeqCst);
        self.state.check().await?;
        let credential = self.inner.find_credential(id).await;
        if self
            .state
            .hold_next_credential
            .swap(false, Ordering::SeqCst)
        {
            self.state.credential_held.notify_one();
            self.state.credential_released.notified().await;
        }
        let delay = self.state.credential_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        credential
    }
    async fn live_tokens(&self) -> Result<Vec<(TokenId, Option<u32>)>, StoreError> {
        self.state.check().await?;
        self.inner.live_tokens().await
    }
    async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<FeedEntry>, StoreError> {
        self.state.check().await?;
        self.inner.changes_after(after, limit).await
    }
    async fn latest_change(&self) -> Result<i64, StoreError> {
        self.state.check().await?;
        self.inner.latest_change().await
    }
    async fn backfill_secret_tag(&self, id: &TokenId, tag: u32) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.backfill_secret_tag(id, tag).await
    }
    async fn record_last_used(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.record_last_used(uses).await
    }
    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.record_usage(deltas).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.ping().await
    }
}

#[async_trait]
impl AdminStore for FlakyStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        self.state.check().await?;
        Ok(Box::new(FlakyTx {
            inner: self.inner.begin_write().await?,
            state: Arc::clone(&self.state),
        }))
    }
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.state.check().await?;
        self.inner.list_plans().await
    }
    async fn get_plan(&self, name: &str) -> Result<Option<Plan>, StoreError> {
        self.state.check().await?;
        self.inner.get_plan(name).await
    }
    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.state.check().await?;
        self.inner.get_account(id).await
    }
    async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.state.check().await?;
        self.inner.list_tokens(account_id).await
    }
    async fn get_token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.state.check().await?;
        self.inner.get_token(id).await
    }
    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.state.check().await?;
        self.inner.prune_changes(before).await
    }
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.state.check().await?;
        self.inner.audit_events(query).await
    }
    async fn prune_audit(&self, before: OffsetDateTime, max: u32) -> Result<u64, StoreError> {
        self.state.check().await?;
        self.inner.prune_audit(before, max).await
    }
    async fn usage_series(
        &self,
        token_id: &TokenId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageHour>, StoreError> {
        self.state.check().await?;
        self.inner.usage_series(token_id, since).await
    }
    async fn usage_totals(
        &self,
        token_ids: &[TokenId],
        since: OffsetDateTime,
    ) -> Result<Vec<(TokenId, u64)>, StoreError> {
        self.state.check().await?;
        self.inner.usage_totals(token_ids, since).await
    }
    async fn prune_usage(&self, before: OffsetDateTime, max: u32) -> Result<u64, StoreError> {
        self.state.check().await?;
        self.inner.prune_usage(before, max).await
    }
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.state.check().await?;
        let value = self.inner.get_setting(key).await;
        let barrier = {
            let mut held = self.state.setting_reads.lock().unwrap();
            match held.as_mut() {
                Some((barrier, remaining)) if *remaining > 0 => {
                    *remaining -= 1;
                    Some(Arc::clone(barrier))
                }
                _ => None,
            }
        };
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
        value
    }
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.put_setting(key, value).await
    }
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        self.state.check().await?;
        self.inner.put_setting_if_absent(key, value).await
    }
}

#[async_trait]
impl TokenStore for FlakyStore {
    async fn migrate(&self) -> Result<usize, StoreError> {
        self.state.check().await?;
        self.inner.migrate().await
    }
    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        self.state.check().await?;
        self.inner.pending_migrations().await
    }
}

/// A transaction whose steps and commit fail while the store does.
struct FlakyTx {
    inner: Box<dyn WriteTx>,
    state: Arc<Faults>,
}

#[async_trait]
impl WriteTx for FlakyTx {
    async fn plan(&mut self, name: &str) -> Result<Option<Plan>, StoreError> {
        self.state.check().await?;
        self.inner.plan(name).await
    }
    async fn upsert_plan(&mut self, plan: &Plan) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.upsert_plan(plan).await
    }
    async fn account(&mut self, id: &str) -> Result<Option<Account>, StoreError> {
        self.state.check().await?;
        self.inner.account(id).await
    }
    async fn insert_account(&mut self, account: &Account) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.insert_account(account).await
    }
    async fn set_account_plan(
        &mut self,
        id: &str,
        plan: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.set_account_plan(id, plan, now).await
    }
    async fn token(&mut self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.state.check().await?;
        self.inner.token(id).await
    }
    async fn window_of(&mut self, id: &TokenId) -> Result<Option<TokenId>, StoreError> {
        self.state.check().await?;
        self.inner.window_of(id).await
    }
    async fn live_predecessors(
        &mut self,
        id: &TokenId,
        now: OffsetDateTime,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.state.check().await?;
        self.inner.live_predecessors(id, now).await
    }
    async fn insert_token(&mut self, token: &NewToken) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.insert_token(token).await
    }
    async fn count_live_tokens(
        &mut self,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        self.state.check().await?;
        self.inner.count_live_tokens(account_id, now).await
    }
    async fn update_token(
        &mut self,
        id: &TokenId,
        update: TokenUpdate<'_>,
    ) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.update_token(id, update).await
    }
    async fn record_change(
        &mut self,
        change: &Change,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.record_change(change, at).await
    }
    async fn record_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        self.state.check().await?;
        if self.state.failing_audit.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(std::io::Error::other(
                "injected fault writing the audit event",
            )));
        }
        self.inner.record_audit(event).await
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.state.check().await?;
        self.inner.commit().await
    }
}
