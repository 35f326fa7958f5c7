//! The seam between the shared SQL (`sql/`) and a database: values,
//! rows, and the few operations a backend must provide. A backend (see
//! `sqlite.rs`, `postgres.rs`) binds [`Value`]s to its native types, reads
//! rows back into them, and says how a write transaction starts.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Column, ColumnIndex, Row as _, TypeInfo, ValueRef};
use time::OffsetDateTime;

use super::StoreError;
use crate::token::TokenId;

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A null text or number.
    Null,
    /// A null timestamp (PostgreSQL wants nulls typed).
    NullTime,
    /// A null integer.
    NullInt,
    Bool(bool),
    Int(i64),
    Text(String),
    Time(OffsetDateTime),
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<OffsetDateTime> for Value {
    fn from(t: OffsetDateTime) -> Self {
        Value::Time(t)
    }
}

impl From<&TokenId> for Value {
    fn from(id: &TokenId) -> Self {
        Value::Text(id.to_string())
    }
}

impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Value::NullInt, Value::Int)
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Self {
        value.map_or(Value::Null, Value::Text)
    }
}

impl From<Option<OffsetDateTime>> for Value {
    fn from(value: Option<OffsetDateTime>) -> Self {
        value.map_or(Value::NullTime, Value::Time)
    }
}

/// One result row: its columns' names (shared by the rows of one result)
/// and values. Read by column name, so a statement's column list and the
/// code that reads it cannot drift apart by position.
#[derive(Debug)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Self {
        Self { columns, values }
    }

    pub(super) fn get(&self, column: &str) -> Result<&Value, StoreError> {
        self.columns
            .iter()
            .position(|name| name == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?} in the row")))
    }

    pub(super) fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            other => Err(StoreError::Corrupt(format!("expected text, got {other:?}"))),
        }
    }

    pub(super) fn text(&self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {column:?} is null")))
    }

    pub(super) fn int(&self, column: &str) -> Result<i64, StoreError> {
        match self.get(column)? {
            Value::Int(n) => Ok(*n),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }

    pub(super) fn u32(&self, column: &str) -> Result<u32, StoreError> {
        let n = self.int(column)?;
        u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} is out of range")))
    }

    pub(super) fn bool(&self, column: &str) -> Result<bool, StoreError> {
        match self.get(column)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(n) => Ok(*n != 0),
            other => Err(StoreError::Corrupt(format!(
                "expected a boolean, got {other:?}"
            ))),
        }
    }

    pub(super) fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        match self.get(column)? {
            Value::Null | Value::NullTime => Ok(None),
            Value::Time(t) => Ok(Some(*t)),
            Value::Text(text) => {
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt(format!("bad timestamp {text:?}")))
            }
            other => Err(StoreError::Corrupt(format!(
                "expected a timestamp, got {other:?}"
            ))),
        }
    }

    pub(super) fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        self.opt_time(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {column:?} is null")))
    }

    pub(super) fn opt_u32(&self, column: &str) -> Result<Option<u32>, StoreError> {
        match self.get(column)? {
            Value::Null | Value::NullInt => Ok(None),
            _ => self.u32(column).map(Some),
        }
    }

    pub(super) fn token_id(&self, column: &str) -> Result<TokenId, StoreError> {
        let text = self.text(column)?;
        text.parse()
            .map_err(|_| StoreError::Corrupt(format!("bad token id {text:?}")))
    }
}

/// A connection inside a transaction (or a one-statement autocommit one).
#[async_trait]
pub(crate) trait Conn: Send {
    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError>;
    async fn fetch(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// What differs between databases.
#[async_trait]
pub(crate) trait Driver: Send + Sync + 'static {
    /// Runs one statement on the pool and returns its rows.
    async fn fetch(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError>;
    /// Runs one statement on the pool and returns the rows it changed.
    async fn execute(&self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError>;
    /// Starts a write transaction that orders the change feed.
    async fn begin_write(&self) -> Result<Box<dyn Conn>, StoreError>;
    /// Checks that the database is still the one this driver opened (a file
    /// can be deleted or replaced underneath it); readiness calls it.
    fn check_database(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// How one sqlx database binds [`Value`]s and reads a column back; the
/// rest of the glue (`fetch_with`, `execute_with`) is shared.
pub(crate) trait Dialect: sqlx::Database {
    /// `args` as this database's arguments.
    fn bind<'q>(args: Vec<Value>) -> Result<Self::Arguments<'q>, StoreError>;
    /// Column `i` of `row`, not null, whose type is named `type_name`.
    fn read(row: &Self::Row, i: usize, type_name: &str) -> Result<Value, StoreError>;
    /// How many rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

/// One row in the store's [`Value`]s, its columns named by `columns`.
fn decode<DB: Dialect>(row: &DB::Row, columns: &Arc<[String]>) -> Result<Row, StoreError>
where
    usize: ColumnIndex<DB::Row>,
{
    let mut values = Vec::with_capacity(columns.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i).map_err(StoreError::unavailable)?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let type_name = raw.type_info().name().to_owned();
            DB::read(row, i, &type_name)?
        };
        values.push(value);
    }
    Ok(Row::new(Arc::clone(columns), values))
}

/// Runs `sql` with `args` on `executor` (a pool or a transaction) and
/// returns its rows.
pub(crate) async fn fetch_with<'e, 'q: 'e, DB, E>(
    executor: E,
    sql: &'q str,
    args: Vec<Value>,
) -> Result<Vec<Row>, StoreError>
where
    DB: Dialect,
    DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    E: 'e + sqlx::Executor<'e, Database = DB>,
    usize: ColumnIndex<DB::Row>,
{
    let rows = sqlx::query_with(sql, DB::bind(args)?)
        .fetch_all(executor)
        .await
        .map_err(StoreError::unavailable)?;
    let columns: Arc<[String]> = rows
        .first()
        .map(|row| {
            row.columns()
                .iter()
                .map(|column| column.name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    rows.iter().map(|row| decode::<DB>(row, &columns)).collect()
}

/// Runs `sql` with `args` on `executor` and returns the rows it changed.
pub(crate) async fn execute_with<'e, 'q: 'e, DB, E>(
    executor: E,
    sql: &'q str,
    args: Vec<Value>,
) -> Result<u64, StoreError>
where
    DB: Dialect,
    DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    E: 'e + sqlx::Executor<'e, Database = DB>,
{
    sqlx::query_with(sql, DB::bind(args)?)
        .execute(executor)
        .await
        .map(|done| DB::rows_affected(&done))
        .map_err(StoreError::unavailable)
}
