//! The seam between the shared SQL (`sql/`) and a database: values,
//! rows, and the few operations a backend must provide. A backend (see
//! `sqlite.rs`, `postgres.rs`) binds [`Value`]s to its native types, reads
//! rows back into them, and says how a write transaction starts.

use async_trait::async_trait;
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

/// One result row, columns in `SELECT` order.
#[derive(Debug)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    pub(super) fn get(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column {i}")))
    }

    pub(super) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            other => Err(StoreError::Corrupt(format!("expected text, got {other:?}"))),
        }
    }

    pub(super) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is null")))
    }

    pub(super) fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.get(i)? {
            Value::Int(n) => Ok(*n),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }

    pub(super) fn u32(&self, i: usize) -> Result<u32, StoreError> {
        let n = self.int(i)?;
        u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} is out of range")))
    }

    pub(super) fn bool(&self, i: usize) -> Result<bool, StoreError> {
        match self.get(i)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(n) => Ok(*n != 0),
            other => Err(StoreError::Corrupt(format!(
                "expected a boolean, got {other:?}"
            ))),
        }
    }

    pub(super) fn opt_time(&self, i: usize) -> Result<Option<OffsetDateTime>, StoreError> {
        match self.get(i)? {
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

    pub(super) fn time(&self, i: usize) -> Result<OffsetDateTime, StoreError> {
        self.opt_time(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is null")))
    }

    pub(super) fn opt_u32(&self, i: usize) -> Result<Option<u32>, StoreError> {
        match self.get(i)? {
            Value::Null | Value::NullInt => Ok(None),
            _ => self.u32(i).map(Some),
        }
    }

    pub(super) fn token_id(&self, i: usize) -> Result<TokenId, StoreError> {
        let text = self.text(i)?;
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
