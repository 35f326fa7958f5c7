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
/// GitHub batches matches, far fewer than this in one request. The limit
/// bounds the work (one lookup each) a single signed request can cause, and
/// it fits the 1 MB body limit ([`MAX_REPORT_BYTES`]) with room for long
/// GitHub URLs: 1,000 entries of up to 1 KB each (a token, its type, a
/// 600-character URL, the source and the JSON around them).
pub(crate) const MAX_REPORT_ENTRIES: usize = 1_000;

/// The largest report body read, in bytes: 1 MB, the server's body limit.
pub(crate) const MAX_REPORT_BYTES: usize = 1024 * 1024;

/// The four fields every entry must have, as strings.
const ENTRY_FIELDS: [&str; 4] = ["token", "type", "url", "source"];

/// One match in a report: `{"token", "type", "url", "source"}`.
///
/// The token is secret: `Debug` redacts it and it is zeroed on drop; read it
/// with [`expose_token`](Self::expose_token) only to check and revoke it.
/// All four fields are required strings (`url` may be empty, as GitHub
/// documents); [`parse_report`] refuses an entry without one.
#[derive(Clone, Deserialize)]
pub(crate) struct ReportedToken {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "type", default)]
    token_type: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

impl ReportedToken {
    /// The reported string: possibly one of our tokens, possibly anything.
    pub(crate) fn expose_token(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// The secret type name registered with GitHub (`type`).
    pub(crate) fn token_type(&self) -> &str {
        self.token_type.as_deref().unwrap_or_default()
    }

    /// The public URL where the match was found (may be empty).
    pub(crate) fn url(&self) -> &str {
        self.url.as_deref().unwrap_or_default()
    }

    /// Where on GitHub it was found, e.g. `content`, `commit`, `issue_comment`, `npm`.
    pub(crate) fn source(&self) -> &str {
        self.source.as_deref().unwrap_or_default()
    }

    /// The feedback entry for this match.
    pub(crate) fn feedback(&self, label: Label) -> Feedback {
        Feedback::new(self.expose_token(), self.token_type().to_owned(), label)
    }

    /// The first of the four fields that is missing or `null`.
    fn missing_field(&self) -> Option<&'static str> {
        let present = [
            self.token.is_some(),
            self.token_type.is_some(),
            self.url.is_some(),
            self.source.is_some(),
        ];
        ENTRY_FIELDS
            .iter()
            .zip(present)
            .find_map(|(field, present)| (!present).then_some(*field))
    }
}

impl Drop for ReportedToken {
    fn drop(&mut self) {
        if let Some(token) = &mut self.token {
            token.zeroize();
        }
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
    /// An entry without one of the four fields as a string (missing,
    /// `null`, or another type), or not an object.
    #[error(
        "entry {index} of the report (counting from 0) needs \"token\", \"type\", \"url\" and \"source\" as strings{}",
        field.map(|field| format!(": \"{field}\" is missing or null")).unwrap_or_default()
    )]
    Entry {
        /// Its position in the array, from 0.
        index: usize,
        /// The missing (or `null`) field, if that is what is wrong.
        field: Option<&'static str>,
    },
    /// More than [`MAX_REPORT_ENTRIES`] matches: answer 413.
    #[error(
        "Report too large: at most {max} matches per request (and {} MB); send the rest in another request",
        MAX_REPORT_BYTES / (1024 * 1024)
    )]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
}

/// Parses a report body: a JSON array of `{"token", "type", "url", "source"}`
/// with at most [`MAX_REPORT_ENTRIES`] entries (stopping at the first one over).
/// An empty array is a valid, empty report. Verify the signature first.
pub(crate) fn parse_report(body: &[u8]) -> Result<Vec<ReportedToken>, ReportError> {
    let refused = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = BoundedReport { refused: &refused }
        .deserialize(&mut deserializer)
        .and_then(|tokens| deserializer.end().map(|()| tokens));
    let tokens = parsed.map_err(|e| {
        if let Some(refused) = refused.get() {
            return refused;
        }
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Data => ReportError::Shape { line, column },
            _ => ReportError::Syntax { line, column },
        }
    })?;
    // Checked once the JSON is known to be whole: a truncated body is a
    // syntax error, not a missing field.
    for (index, entry) in tokens.iter().enumerate() {
        if let Some(field) = entry.missing_field() {
            return Err(ReportError::Entry {
                index,
                field: Some(field),
            });
        }
    }
    Ok(tokens)
}

/// Deserialises the array, refusing the entry after the limit instead of
/// growing without bound, and an entry without its four string fields.
struct BoundedReport<'a> {
    /// Why it stopped, when that is not a JSON error of its own.
    refused: &'a Cell<Option<ReportError>>,
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
        loop {
            let index = tokens.len();
            let refuse = |error: ReportError| {
                self.refused.set(Some(error));
                A::Error::custom("refused")
            };
            let entry = match seq.next_element::<ReportedToken>() {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(tokens),
                // A field of another type, or an entry that is not an object
                // (serde's "invalid type: ..."); anything else is the JSON's.
                Err(e) if e.to_string().starts_with("invalid type") => {
                    return Err(refuse(ReportError::Entry { index, field: None }));
                }
                Err(e) => return Err(e),
            };
            if index == MAX_REPORT_ENTRIES {
                return Err(refuse(ReportError::TooManyEntries {
                    max: MAX_REPORT_ENTRIES,
                }));
            }
            tokens.push(entry);
        }
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
