//! The shared SQL's column lists, and how a row reads back into a value:
//! a token, a plan, an account, an audit event; scopes as one column;
//! `$n` placeholders.
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
    let details = row.text(8)?;
    Ok(AuditEvent {
        id: row.int(0)?,
        at: row.time(1)?,
        action: row.text(2)?,
        actor: row.text(3)?,
        account_id: row.opt_text(4)?,
        token_id: row
            .opt_text(5)?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))
            })
            .transpose()?,
        source_ip: row.opt_text(6)?,
        request_id: row.opt_text(7)?,
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
        id: row.token_id(0)?,
        account_id: row.text(1)?,
        name: row.text(2)?,
        hint: row.text(3)?,
        created_at: row.time(4)?,
        last_used_at: row.opt_time(5)?,
        expires_at: row.opt_time(6)?,
        revoked_at: row.opt_time(7)?,
        revoked_reason: row.opt_text(8)?,
        replaced_by: row
            .opt_text(9)?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad token id {id:?}")))
            })
            .transpose()?,
        scopes: scopes_from_column(&row.text(10)?),
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

/// Reads a plan from columns `at..at + 5`.
pub(super) fn plan_from_row(row: &Row, at: usize) -> Result<Plan, StoreError> {
    Ok(Plan {
        name: row.text(at)?,
        api_access: row.bool(at + 1)?,
        requests_per_hour: row.u32(at + 2)?,
        account_requests_per_hour: row.opt_u32(at + 3)?,
        max_tokens: row.opt_u32(at + 4)?,
    })
}

pub(super) fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.text(0)?,
        plan: row.text(1)?,
        created_at: row.time(2)?,
        updated_at: row.time(3)?,
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
