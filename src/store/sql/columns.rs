//! The shared SQL's column lists, and how a row reads back into a value:
//! a token, a plan, an account, an audit event, each read by column name;
//! scopes as one column; `$n` placeholders.
//!
//! This module owns the mapping between rows and the store's values, so
//! each statement in `credential.rs`, `admin.rs` and `write.rs` names its
//! columns once and reads them one way. It must not run a statement nor
//! know a dialect: how a value is encoded is the driver's.

use crate::store::driver::Row;
use crate::store::{Account, AuditEvent, Plan, StoreError, TokenRecord};

pub(super) const TOKEN_COLUMNS: &str = "id, account_id, name, hint, created_at, last_used_at, \
                                        expires_at, revoked_at, revoked_reason, replaced_by, scopes";
pub(super) const PLAN_COLUMNS: &str =
    "name, api_access, requests_per_hour, account_requests_per_hour, max_tokens";
pub(super) const ACCOUNT_COLUMNS: &str = "id, plan, created_at, updated_at";
pub(super) const AUDIT_COLUMNS: &str =
    "id, at, action, actor, account_id, token_id, source_ip, request_id, details";

pub(super) fn audit_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
    let details = row.text("details")?;
    Ok(AuditEvent {
        id: row.int("id")?,
        at: row.time("at")?,
        action: row.text("action")?,
        actor: row.text("actor")?,
        account_id: row.opt_text("account_id")?,
        token_id: row
            .opt_text("token_id")?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))
            })
            .transpose()?,
        source_ip: row.opt_text("source_ip")?,
        request_id: row.opt_text("request_id")?,
        details: serde_json::from_str(&details)
            .map_err(|_| StoreError::Corrupt("audit details are not JSON".into()))?,
    })
}

/// `$n, $n+1, ...` placeholders for `count` values starting at `first`.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.token_id("id")?,
        account_id: row.text("account_id")?,
        name: row.text("name")?,
        hint: row.text("hint")?,
        created_at: row.time("created_at")?,
        last_used_at: row.opt_time("last_used_at")?,
        expires_at: row.opt_time("expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        revoked_reason: row.opt_text("revoked_reason")?,
        replaced_by: row
            .opt_text("replaced_by")?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))
            })
            .transpose()?,
        scopes: scopes_from_column(&row.text("scopes")?),
    })
}

/// Scopes are stored as names separated by single spaces (`*` for every scope).
pub(super) fn scopes_column(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub(super) fn scopes_from_column(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a plan from the columns of [`PLAN_COLUMNS`].
pub(super) fn plan_from_row(row: &Row) -> Result<Plan, StoreError> {
    Ok(Plan {
        name: row.text("name")?,
        api_access: row.bool("api_access")?,
        requests_per_hour: row.u32("requests_per_hour")?,
        account_requests_per_hour: row.opt_u32("account_requests_per_hour")?,
        max_tokens: row.opt_u32("max_tokens")?,
    })
}

pub(super) fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.text("id")?,
        plan: row.text("plan")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(super) fn first<T>(
    rows: Vec<Row>,
    read: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    rows.first().map(read).transpose()
}

pub(super) fn all<T>(
    rows: Vec<Row>,
    read: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}
