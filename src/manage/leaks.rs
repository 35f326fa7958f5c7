//! Leaked tokens: a token found where it should not be (a public repository,
//! a paste, a support ticket) is revoked at once, with a `token.leaked`
//! audit event saying where it was found.
//!
//! A reported string is ours only if it is a well-formed token of this
//! format, its id exists, and its secret is the token's (the tag, then
//! argon2 for tokens made before tags): a made-up string with a real,
//! public token id revokes nothing.

use serde_json::json;

use super::ManageError;
use super::operations::Management;
use crate::token::TokenId;

/// A leaked token, and where it was found.
#[derive(Clone, Copy)]
pub struct LeakReport<'a> {
    /// The reported string.
    pub token: &'a str,
    /// Where it was found (a URL), if known.
    pub url: &'a str,
    /// What found it (e.g. `content`, `commit` from GitHub; free text otherwise).
    pub source: &'a str,
    /// The kind of secret the reporter thinks it is (GitHub's `type`), if any.
    pub kind: &'a str,
}

impl std::fmt::Debug for LeakReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakReport")
            .field("url", &self.url)
            .field("source", &self.source)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What a leak report found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeakOutcome {
    /// One of ours, live until now: revoked.
    Revoked(TokenId),
    /// One of ours, already revoked (or expired and now revoked too).
    AlreadyRevoked(TokenId),
    /// Not a token of ours (malformed, unknown id, or another secret).
    NotOurs,
}

impl LeakOutcome {
    /// Whether the reported string is a token of ours (a true positive).
    pub fn is_ours(&self) -> bool {
        !matches!(self, LeakOutcome::NotOurs)
    }
}

impl Management<'_> {
    /// Revokes a leaked token at once (reason `leaked`), recording where it
    /// was found. Reports of strings that are not our tokens change nothing.
    pub async fn revoke_leaked(&self, report: LeakReport<'_>) -> Result<LeakOutcome, ManageError> {
        let manager = self.manager();
        let Ok(parsed) = manager.parts.format.parse(report.token) else {
            return Ok(LeakOutcome::NotOurs);
        };
        let id = parsed.id();
        let credential = manager
            .within(manager.parts.store.find_credential(&id))
            .await?;
        let Some(credential) = credential else {
            return Ok(LeakOutcome::NotOurs);
        };
        // The tag first (no argon2 for a secret it rules out), then argon2
        // (tokens made before tags have none).
        let tag_differs = credential
            .secret_tag
            .is_some_and(|stored| stored != parsed.secret_tag());
        let matches = !tag_differs
            && manager
                .parts
                .hasher
                .verify(parsed.secret().clone(), credential.secret_hash.clone())
                .await
                .map_err(|e| ManageError::Internal(e.to_string()))?;
        if !matches {
            return Ok(LeakOutcome::NotOurs);
        }
        if credential.revoked_at.is_some() {
            return Ok(LeakOutcome::AlreadyRevoked(id));
        }
        let details = json!({ "url": report.url, "source": report.source, "type": report.kind });
        self.revoke(&id, "leaked", "token.leaked", details).await?;
        // The audit event keeps the whole URL (where to look); the log line
        // is redacted like every logged path, in case it carries a token.
        let url = crate::redact::redact_token_shaped(report.url);
        tracing::warn!(token_id = %id, url = %url, "leaked token revoked");
        Ok(LeakOutcome::Revoked(id))
    }
}

/// Lowercase hex SHA-256 of a reported string: how a report's answer names
/// a token without repeating it (GitHub's `token_hash`).
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
