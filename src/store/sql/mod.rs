//! The SQL of both built-in backends, written once.
//!
//! Every statement here runs unchanged on SQLite and PostgreSQL (numbered
//! `$n` parameters, `ON CONFLICT`, `UPDATE ... FROM (VALUES ...)`). What the
//! two databases do differently sits behind [`Driver`]: how values are
//! encoded (SQLite keeps timestamps as fixed-width RFC 3339 text,
//! PostgreSQL as `TIMESTAMPTZ`), how a write transaction starts (SQLite's
//! `BEGIN IMMEDIATE`, PostgreSQL's feed lock), and the migrations.
//! [`SqlStore`] implements the store traits on top of any driver; this
//! module must not contain a business rule (those are in `manage.rs`).
//!
//! One file per trait: `credential.rs` ([`CredentialStore`], the
//! authentication path), `admin.rs` ([`AdminStore`], the administration's
//! reads), `write.rs` ([`WriteTx`], a write transaction's steps), and
//! `columns.rs`, the column lists and how a row reads back into a value.
//!
//! [`CredentialStore`]: super::CredentialStore
//! [`AdminStore`]: super::AdminStore
//! [`WriteTx`]: super::WriteTx
//! [`Driver`]: super::driver::Driver

mod admin;
mod columns;
mod credential;
mod outbox;
mod webhooks;
mod write;

pub(crate) use webhooks::delegate_webhooks;

/// The store traits, implemented once over any [`Driver`](super::driver::Driver).
#[derive(Debug, Clone)]
pub(crate) struct SqlStore<D> {
    pub(crate) driver: D,
}

/// Rows per `UPDATE ... FROM (VALUES ...)` of last-use times.
pub(super) const LAST_USED_BATCH: usize = 400;
/// Rows per multi-row `INSERT` of usage counts.
pub(super) const USAGE_BATCH: usize = 200;
