//! GitHub's secret scanning partner protocol: the signing keys, the signature
//! check, the leak report and the feedback answer.
//!
//! GitHub scans public repositories, gists, issues, pull requests and npm packages
//! for the token regex a partner registered and POSTs every match to the
//! partner's endpoint:
//!
//! ```http
//! POST /leaks/github HTTP/2
//! Content-Type: application/json
//! Github-Public-Key-Identifier: bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c
//! Github-Public-Key-Signature: MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg==
//!
//! [{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]
//! ```
//!
//! - The signature is ECDSA over NIST P-256 with SHA-256 of the **raw body
//!   bytes** (never re-serialised JSON), ASN.1 DER encoded, then standard
//!   base64 (with padding).
//! - The key is the one whose `key_identifier` equals the identifier header, in
//!   the list GitHub publishes at `https://api.github.com/meta/public_keys/secret_scanning`:
//!   `{"public_keys": [{"key_identifier": "...", "key": "-----BEGIN PUBLIC KEY-----...", "is_current": true}]}`.
//!   Every listed key is accepted (a rotated-out key, `is_current: false`,
//!   may still sign requests in flight).
//! - The body is a JSON array of `{"token", "type", "url", "source"}`.
//! - The partner may answer with feedback: a JSON array of
//!   `{"token_hash", "token_type", "label"}`, `label` being `true_positive` or
//!   `false_positive`; [`Feedback`](report::Feedback) serialises to exactly that.
//!
//! This module does no I/O: the server reads the key file named by
//! `GITHUB_SECRET_SCANNING_KEYS`, the two headers and the body (with its own
//! size limit), and decides what to revoke.
//!
//! (GitHub's documented sample request verifies against its published key:
//! see the tests.)
//!
//! `keys.rs` parses the key file and checks a request's signature;
//! `report.rs` parses the report and builds the feedback.

mod keys;
mod report;

pub use keys::GithubKeys;
pub(crate) use keys::VerifyError;
pub(crate) use report::{Label, MAX_REPORT_BYTES, MAX_REPORT_ENTRIES, ReportError, parse_report};

/// The request header naming the signing key (`key_identifier` in the key file).
pub(crate) const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
/// The request header carrying the base64 ASN.1 DER ECDSA signature of the body.
pub(crate) const SIGNATURE_HEADER: &str = "github-public-key-signature";

#[cfg(test)]
mod tests;
