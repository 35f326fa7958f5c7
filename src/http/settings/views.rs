//! The settings API's JSON: the views it answers with (the account, a
//! token, a new token shown once) and the bodies it accepts.
//!
//! This module owns the wire shapes and their OpenAPI schemas, and the one
//! rule that is about a body's shape (`expires_at` or an `expires_in_days`
//! preset). It must not read the store or decide anything about the
//! signed-in account: the handlers in `api.rs` do that, and `TokenGate`
//! owns the lifecycle rules. Only [`SettingsNewToken`] holds a plaintext
//! token, and it has no `Debug`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::http::envelope::ApiError;
use crate::store::TokenRecord;
use crate::token::PlaintextToken;

/// The expiry presets of `expires_in_days`, in days.
const EXPIRY_PRESETS: [i64; 4] = [7, 30, 60, 90];

/// The signed-in account: its plan and what the plan allows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettingsAccount {
    /// The signed-in account's id.
    #[schema(example = "acct_42")]
    pub(super) account_id: String,
    /// The account's plan, or null for an account tokengate does not know yet
    /// (it has no API access until an operator puts it on a plan).
    #[schema(example = "pro")]
    pub(super) plan: Option<String>,
    /// Whether the plan may call the API (and so create tokens).
    pub(super) api_access: bool,
    /// Requests per token in any rolling hour (0 without API access).
    #[schema(example = 1000)]
    pub(super) requests_per_hour: u32,
    /// Requests per rolling hour for all the account's tokens together, if the plan sets a ceiling.
    pub(super) account_requests_per_hour: Option<u32>,
    /// Most live tokens the plan allows, if it sets a cap.
    pub(super) max_tokens: Option<u32>,
    /// Tokens that work now (not revoked, expired or replaced by a rotation).
    pub(super) live_tokens: usize,
    /// The scopes a new token can be limited to (the gate's declared
    /// scopes); empty when the API has none.
    pub(super) scopes: Vec<String>,
}

/// One of the account's tokens, never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettingsToken {
    /// The public token id.
    #[schema(example = "J_5Z2qBcVZzDTNAxMf0J")]
    pub(super) id: String,
    /// The token's label.
    #[schema(example = "CI")]
    pub(super) name: String,
    /// The last four characters of the token.
    #[schema(example = "81Dw")]
    pub(super) hint: String,
    /// Creation time, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: OffsetDateTime,
    /// Last authenticated use (up to a few seconds behind), or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) last_used_at: Option<OffsetDateTime>,
    /// When it stops working, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) expires_at: Option<OffsetDateTime>,
    /// When it was revoked, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) revoked_at: Option<OffsetDateTime>,
    /// `revoked` or `rotated`, or null; `rotated` without `revoked_at` still
    /// works until `expires_at` (a grace period).
    pub(super) revoked_reason: Option<String>,
    /// For a rotated token, the id of its successor.
    pub(super) replaced_by: Option<String>,
    /// What the token may do; `["*"]` is everything.
    #[schema(example = json!(["*"]))]
    pub(super) scopes: Vec<String>,
    /// Requests admitted in the last 24 hours (counted up to 10 s ago);
    /// absent in the answer to a change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) requests_24h: Option<u64>,
}

impl From<TokenRecord> for SettingsToken {
    fn from(record: TokenRecord) -> Self {
        Self {
            id: record.id.to_string(),
            name: record.name,
            hint: record.hint,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            revoked_reason: record.revoked_reason,
            replaced_by: record.replaced_by.map(|id| id.to_string()),
            scopes: record.scopes,
            requests_24h: None,
        }
    }
}

/// A new token: the only answer that holds its plaintext.
// No `Debug`: it would print the token.
#[derive(Serialize, ToSchema)]
pub(crate) struct SettingsNewToken {
    /// The public token id.
    #[schema(example = "J_5Z2qBcVZzDTNAxMf0J")]
    pub(super) id: String,
    /// The token's label.
    pub(super) name: String,
    /// The plaintext token. Shown once: it cannot be retrieved again.
    pub(super) token: String,
    /// The last four characters of the token.
    pub(super) hint: String,
    /// Creation time, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: OffsetDateTime,
    /// Expiry, RFC 3339 UTC, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) expires_at: Option<OffsetDateTime>,
    /// What the token may do; `["*"]` is everything.
    pub(super) scopes: Vec<String>,
    /// For a rotation: the replaced token, with its new expiry or revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) replaces: Option<SettingsToken>,
}

impl SettingsNewToken {
    pub(super) fn new(
        record: TokenRecord,
        token: &PlaintextToken,
        replaces: Option<TokenRecord>,
    ) -> Self {
        Self {
            id: record.id.to_string(),
            name: record.name,
            // The one deliberate exposure of the plaintext.
            token: token.expose_secret().to_owned(),
            hint: record.hint,
            created_at: record.created_at,
            expires_at: record.expires_at,
            scopes: record.scopes,
            replaces: replaces.map(SettingsToken::from),
        }
    }
}

/// `POST {prefix}/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsCreateBody {
    /// A label, 1–200 characters.
    #[schema(min_length = 1, max_length = 200, example = "CI deploy")]
    pub(super) name: String,
    /// Expiry, RFC 3339, in the future; null or absent: no expiry.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-01-01T00:00:00Z")]
    pub(super) expires_at: Option<OffsetDateTime>,
    /// Instead of `expires_at`: expire in 7, 30, 60 or 90 days.
    #[schema(example = 30)]
    #[serde(default)]
    pub(super) expires_in_days: Option<i64>,
    /// What the token may do; absent or `["*"]`: everything.
    #[serde(default)]
    pub(super) scopes: Option<Vec<String>>,
}

/// `POST {prefix}/tokens/{id}/rotate` body (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsRotateBody {
    /// Seconds the old token keeps working (0, the default, stops it at once; at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2_592_000, example = 3600)]
    pub(super) grace_seconds: Option<u64>,
    /// Expiry of the new token, RFC 3339 (default: the old token's expiry).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) expires_at: Option<OffsetDateTime>,
}

impl SettingsCreateBody {
    /// The expiry asked for, from `expires_at` or `expires_in_days`.
    pub(super) fn expiry(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, ApiError> {
        match (self.expires_at, self.expires_in_days) {
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "Give expires_at or expires_in_days, not both".into(),
            )),
            (None, Some(days)) if EXPIRY_PRESETS.contains(&days) => {
                Ok(Some(now + time::Duration::days(days)))
            }
            (None, Some(_)) => Err(ApiError::BadRequest(
                "expires_in_days must be 7, 30, 60 or 90".into(),
            )),
            (at, None) => Ok(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use time::macros::datetime;

    use super::*;

    fn body(json: &str) -> SettingsCreateBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn expiry_from_a_date_or_a_preset() {
        let now = datetime!(2026-06-01 12:00 UTC);
        assert_eq!(body(r#"{"name": "a"}"#).expiry(now).unwrap(), None);
        assert_eq!(
            body(r#"{"name": "a", "expires_at": null}"#)
                .expiry(now)
                .unwrap(),
            None
        );
        assert_eq!(
            body(r#"{"name": "a", "expires_at": "2027-01-01T00:00:00Z"}"#)
                .expiry(now)
                .unwrap(),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(
            body(r#"{"name": "a", "expires_in_days": 30}"#)
                .expiry(now)
                .unwrap(),
            Some(datetime!(2026-07-01 12:00 UTC))
        );
        for bad in [
            r#"{"name": "a", "expires_in_days": 31}"#,
            r#"{"name": "a", "expires_in_days": 30, "expires_at": "2027-01-01T00:00:00Z"}"#,
        ] {
            assert_eq!(
                body(bad).expiry(now).unwrap_err().status_code(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
