//! The leak report GitHub sends and the feedback we answer with: a JSON
//! array of matches, parsed with a bound on its length, and one
//! `{"token_hash", "token_type", "label"}` entry per match.
//!
//! This module owns the report's and the feedback's wire shapes. It must not
//! decide whether a reported string is ours or revoke anything (`manage`
//! does), must not let a reported token leak (redacting `Debug`, zeroed on
//! drop, errors by position only), and sends a token back only hashed.
//! Verify the signature (`keys.rs`) before parsing.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroize;

use crate::manage::token_hash;

/// The most matches [`parse_report`] accepts in one request.
///
/// GitHub batches matches; 10,000 is far above what it sends in one request
/// and bounds the work (one lookup each) a single signed request can cause.
pub(crate) const MAX_REPORT_ENTRIES: usize = 10_000;

/// One match in a report: `{"token", "type", "url", "source"}`.
///
/// The token is secret: `Debug` redacts it and it is zeroed on drop; read it
/// with [`expose_token`](Self::expose_token) only to check and revoke it.
/// Missing or `null` `type`, `url` and `source` read as `""`.
#[derive(Clone, Deserialize)]
pub(crate) struct ReportedToken {
    token: String,
    #[serde(rename = "type", default, deserialize_with = "string_or_null")]
    token_type: String,
    #[serde(default, deserialize_with = "string_or_null")]
    url: String,
    #[serde(default, deserialize_with = "string_or_null")]
    source: String,
}

impl ReportedToken {
    /// The reported string: possibly one of our tokens, possibly anything.
    pub(crate) fn expose_token(&self) -> &str {
        &self.token
    }

    /// The secret type name registered with GitHub (`type`).
    pub(crate) fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The public URL where the match was found (may be empty).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Where on GitHub it was found, e.g. `content`, `commit`, `issue_comment`, `npm`.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The feedback entry for this match.
    pub(crate) fn feedback(&self, label: Label) -> Feedback {
        Feedback::new(&self.token, self.token_type.clone(), label)
    }
}

impl Drop for ReportedToken {
    fn drop(&mut self) {
        self.token.zeroize();
    }
}

impl fmt::Debug for ReportedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportedToken")
            .field("token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .finish()
    }
}

fn string_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// Why a (correctly signed) report body was rejected: answer 400.
///
/// Positions only: serde_json's messages can quote the input, which may hold a
/// token, so they are never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReportError {
    /// Not JSON (or truncated, or trailing data), at this position.
    #[error("report is not valid JSON (line {line}, column {column})")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// JSON, but not an array of `{"token": string, "type", "url", "source"}`.
    #[error(
        "report is not an array of {{\"token\", \"type\", \"url\", \"source\"}} (line {line}, column {column})"
    )]
    Shape {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// More than [`MAX_REPORT_ENTRIES`] matches.
    #[error("report has more than {max} matches")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
}

/// Parses a report body: a JSON array of `{"token", "type", "url", "source"}`
/// with at most [`MAX_REPORT_ENTRIES`] entries (stopping at the first one over).
/// An empty array is a valid, empty report. Verify the signature first.
pub(crate) fn parse_report(body: &[u8]) -> Result<Vec<ReportedToken>, ReportError> {
    let over_limit = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = BoundedReport {
        over_limit: &over_limit,
    }
    .deserialize(&mut deserializer)
    .and_then(|tokens| deserializer.end().map(|()| tokens));
    parsed.map_err(|e| {
        if over_limit.get() {
            return ReportError::TooManyEntries {
                max: MAX_REPORT_ENTRIES,
            };
        }
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Data => ReportError::Shape { line, column },
            _ => ReportError::Syntax { line, column },
        }
    })
}

/// Deserialises the array, refusing the entry after the limit instead of
/// growing without bound.
struct BoundedReport<'a> {
    over_limit: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BoundedReport<'_> {
    type Value = Vec<ReportedToken>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedReport<'_> {
    type Value = Vec<ReportedToken>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of secret scanning matches")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tokens = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(token) = seq.next_element::<ReportedToken>()? {
            if tokens.len() == MAX_REPORT_ENTRIES {
                self.over_limit.set(true);
                return Err(A::Error::custom("too many matches"));
            }
            tokens.push(token);
        }
        Ok(tokens)
    }
}

// ---------------------------------------------------------------------------
// Feedback
// ---------------------------------------------------------------------------

/// Whether a reported string was a real credential of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Label {
    /// One of our tokens (live, or already revoked).
    TruePositive,
    /// Anything else: malformed, failing the checksum, or unknown.
    FalsePositive,
}

/// One entry of the answer to GitHub: `{"token_hash", "token_type", "label"}`.
///
/// The token goes back hashed (GitHub also accepts `token_raw`; we never send
/// a plaintext token anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Feedback {
    /// Lowercase hex SHA-256 of the reported string, exactly as reported.
    pub token_hash: String,
    /// The `type` of the match, echoed.
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: Label,
}

impl Feedback {
    /// Feedback for a reported string (hashed here) of a given type.
    pub(crate) fn new(token: &str, token_type: impl Into<String>, label: Label) -> Self {
        Self {
            token_hash: token_hash(token),
            token_type: token_type.into(),
            label,
        }
    }
}
