//! What both SQL backends share outside the statements: running the
//! embedded migrations, and implementing the store traits for a backend
//! type by delegating to its `SqlStore`.

use super::StoreError;

/// Applies `migrator`'s pending migrations; returns how many it applied.
pub(crate) async fn run_migrations<DB>(
    migrator: &sqlx::migrate::Migrator,
    pool: &sqlx::Pool<DB>,
) -> Result<usize, StoreError>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate;
    async fn applied<DB>(pool: &sqlx::Pool<DB>) -> Result<usize, StoreError>
    where
        DB: sqlx::Database,
        DB::Connection: Migrate,
    {
        let mut connection = pool.acquire().await.map_err(StoreError::unavailable)?;
        connection
            .ensure_migrations_table()
            .await
            .map_err(StoreError::unavailable)?;
        let applied = connection
            .list_applied_migrations()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(applied.len())
    }
    let before = applied(pool).await?;
    migrator.run(pool).await.map_err(StoreError::unavailable)?;
    Ok(applied(pool).await?.saturating_sub(before))
}

/// How many of `migrator`'s migrations are not applied in `pool`'s database.
/// Reads only: `table_exists` says whether sqlx's `_sqlx_migrations` table is
/// there (each backend asks its own catalog), so nothing is created.
pub(crate) async fn pending_migrations<DB>(
    migrator: &sqlx::migrate::Migrator,
    pool: &sqlx::Pool<DB>,
    table_exists: bool,
) -> Result<usize, StoreError>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate;
    let applied: std::collections::HashSet<i64> = if table_exists {
        let mut connection = pool.acquire().await.map_err(StoreError::unavailable)?;
        connection
            .list_applied_migrations()
            .await
            .map_err(StoreError::unavailable)?
            .into_iter()
            .map(|migration| migration.version)
            .collect()
    } else {
        Default::default()
    };
    Ok(migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count())
}

/// Implements [`CredentialStore`] and [`AdminStore`] for a backend type by
/// delegating to its `sql: SqlStore<_>` field.
macro_rules! delegate_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::CredentialStore for $store {
            async fn find_credential(
                &self,
                id: &$crate::token::TokenId,
            ) -> Result<Option<$crate::store::Credential>, $crate::store::StoreError> {
                self.sql.find_credential(id).await
            }
            async fn live_tokens(
                &self,
            ) -> Result<Vec<($crate::token::TokenId, Option<u32>)>, $crate::store::StoreError> {
                self.sql.live_tokens().await
            }
            async fn changes_after(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::FeedEntry>, $crate::store::StoreError> {
                self.sql.changes_after(after, limit).await
            }
            async fn backfill_secret_tag(
                &self,
                id: &$crate::token::TokenId,
                tag: u32,
            ) -> Result<(), $crate::store::StoreError> {
                self.sql.backfill_secret_tag(id, tag).await
            }
            async fn latest_change(&self) -> Result<i64, $crate::store::StoreError> {
                self.sql.latest_change().await
            }
            async fn record_last_used(
                &self,
                uses: &[($crate::token::TokenId, time::OffsetDateTime)],
            ) -> Result<(), $crate::store::StoreError> {
                self.sql.record_last_used(uses).await
            }
            async fn record_usage(
                &self,
                deltas: &[$crate::store::UsageDelta],
            ) -> Result<(), $crate::store::StoreError> {
                self.sql.record_usage(deltas).await
            }
            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                self.sql.ping().await
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::AdminStore for $store {
            async fn begin_write(
                &self,
            ) -> Result<Box<dyn $crate::store::WriteTx>, $crate::store::StoreError> {
                self.sql.begin_write().await
            }
            async fn list_plans(
                &self,
            ) -> Result<Vec<$crate::store::Plan>, $crate::store::StoreError> {
                self.sql.list_plans().await
            }
            async fn get_plan(
                &self,
                name: &str,
            ) -> Result<Option<$crate::store::Plan>, $crate::store::StoreError> {
                self.sql.get_plan(name).await
            }
            async fn get_account(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::Account>, $crate::store::StoreError> {
                self.sql.get_account(id).await
            }
            async fn list_tokens(
                &self,
                account_id: &str,
            ) -> Result<Vec<$crate::store::TokenRecord>, $crate::store::StoreError> {
                self.sql.list_tokens(account_id).await
            }
            async fn get_token(
                &self,
                id: &$crate::token::TokenId,
            ) -> Result<Option<$crate::store::TokenRecord>, $crate::store::StoreError> {
                self.sql.get_token(id).await
            }
            async fn prune_changes(
                &self,
                before: time::OffsetDateTime,
            ) -> Result<u64, $crate::store::StoreError> {
                self.sql.prune_changes(before).await
            }
            async fn audit_events(
                &self,
                query: &$crate::store::AuditQuery,
            ) -> Result<Vec<$crate::store::AuditEvent>, $crate::store::StoreError> {
                self.sql.audit_events(query).await
            }
            async fn prune_audit(
                &self,
                before: time::OffsetDateTime,
                max: u32,
            ) -> Result<u64, $crate::store::StoreError> {
                self.sql.prune_audit(before, max).await
            }
            async fn usage_series(
                &self,
                token_id: &$crate::token::TokenId,
                since: time::OffsetDateTime,
            ) -> Result<Vec<$crate::store::UsageHour>, $crate::store::StoreError> {
                self.sql.usage_series(token_id, since).await
            }
            async fn usage_totals(
                &self,
                token_ids: &[$crate::token::TokenId],
                since: time::OffsetDateTime,
            ) -> Result<Vec<($crate::token::TokenId, u64)>, $crate::store::StoreError> {
                self.sql.usage_totals(token_ids, since).await
            }
            async fn prune_usage(
                &self,
                before: time::OffsetDateTime,
                max: u32,
            ) -> Result<u64, $crate::store::StoreError> {
                self.sql.prune_usage(before, max).await
            }
            async fn get_setting(
                &self,
                key: &str,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                self.sql.get_setting(key).await
            }
            async fn put_setting(
                &self,
                key: &str,
                value: &str,
            ) -> Result<(), $crate::store::StoreError> {
                self.sql.put_setting(key, value).await
            }
            async fn put_setting_if_absent(
                &self,
                key: &str,
                value: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                self.sql.put_setting_if_absent(key, value).await
            }
        }
    };
}
pub(crate) use delegate_store;
