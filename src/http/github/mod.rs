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
//!   `false_positive`; [`Feedback`] serialises to exactly that.
//!
//! This module does no I/O: the server reads the key file named by
//! `GITHUB_SECRET_SCANNING_KEYS`, the two headers and the body (with its own
//! size limit), and decides what to revoke.
//!
//! (GitHub's documented sample request verifies against its published key:
//! see the tests.)

use std::cell::Cell;
use std::fmt;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use p256::NistP256;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::der::Decode;
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{AssociatedOid, ObjectIdentifier};
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroize;

/// The request header naming the signing key (`key_identifier` in the key file).
pub(crate) const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
/// The request header carrying the base64 ASN.1 DER ECDSA signature of the body.
pub(crate) const SIGNATURE_HEADER: &str = "github-public-key-signature";
/// Where GitHub publishes its secret scanning keys (the key file's format).
pub(crate) const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";
/// The most matches [`parse_report`] accepts in one request.
///
/// GitHub batches matches; 10,000 is far above what it sends in one request
/// and bounds the work (one lookup each) a single signed request can cause.
pub(crate) const MAX_REPORT_ENTRIES: usize = 10_000;

/// A DER ECDSA P-256 signature is at most 72 bytes, 96 base64 characters.
const MAX_SIGNATURE_BASE64_CHARS: usize = 128;

/// id-ecPublicKey (RFC 5480), the SubjectPublicKeyInfo algorithm of any EC key.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Standard alphabet; padding accepted but not required (GitHub sends it).
const SIGNATURE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------
// Keys and the signature check
// ---------------------------------------------------------------------------

/// GitHub's secret scanning signing keys, parsed from a key file.
#[derive(Clone, Debug)]
pub struct GithubKeys {
    keys: Vec<GithubKey>,
}

#[derive(Clone, Debug)]
struct GithubKey {
    identifier: String,
    key: VerifyingKey,
    is_current: bool,
}

/// Why a key file was rejected. Each variant about one key names its `key_identifier`.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is empty or only whitespace.
    #[error("the GitHub secret scanning key file is empty")]
    Empty,
    /// Not JSON, or not `{"public_keys": [{"key_identifier", "key", "is_current"}]}`.
    #[error("the GitHub secret scanning key file is not in the format of {GITHUB_KEYS_URL} ({0})")]
    Json(#[from] serde_json::Error),
    /// `public_keys` is an empty list.
    #[error("the GitHub secret scanning key file lists no keys")]
    NoKeys,
    /// A key with an empty `key_identifier`.
    #[error("the GitHub secret scanning key file has a key with an empty key_identifier")]
    EmptyIdentifier,
    /// Two keys share one `key_identifier`.
    #[error("the GitHub secret scanning key file lists key {key_identifier} twice")]
    DuplicateKey {
        /// The repeated identifier.
        key_identifier: String,
    },
    /// `key` is not a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
    #[error(
        "GitHub secret scanning key {key_identifier}: \"key\" is not a PEM \"PUBLIC KEY\" (SubjectPublicKeyInfo)"
    )]
    Pem {
        /// The key's identifier.
        key_identifier: String,
    },
    /// A well-formed public key of another algorithm or curve.
    #[error(
        "GitHub secret scanning key {key_identifier} is {algorithm}, not ECDSA P-256 (prime256v1), which GitHub signs alerts with"
    )]
    NotP256 {
        /// The key's identifier.
        key_identifier: String,
        /// What the key is instead, e.g. `an EC key on curve P-384 (1.3.132.0.34)`.
        algorithm: String,
    },
    /// A P-256 key whose point is not on the curve.
    #[error("GitHub secret scanning key {key_identifier}: not a valid P-256 public key")]
    InvalidPoint {
        /// The key's identifier.
        key_identifier: String,
    },
}

/// Why a request's signature was rejected. Every variant means: answer 401,
/// change nothing. None of them echoes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifyError {
    /// The `Github-Public-Key-Identifier` header is missing or empty.
    #[error("missing Github-Public-Key-Identifier header")]
    MissingKeyIdentifier,
    /// The `Github-Public-Key-Signature` header is missing or empty.
    #[error("missing Github-Public-Key-Signature header")]
    MissingSignature,
    /// No key in the key file has that identifier (refresh the key file?).
    #[error("Github-Public-Key-Identifier names no known GitHub key")]
    UnknownKey,
    /// The signature header is not base64.
    #[error("Github-Public-Key-Signature is not base64")]
    SignatureEncoding,
    /// The decoded signature is not an ASN.1 DER ECDSA P-256 signature.
    #[error("Github-Public-Key-Signature is not an ASN.1 DER ECDSA P-256 signature")]
    SignatureFormat,
    /// A well-formed signature that does not match the body under that key.
    #[error("Github-Public-Key-Signature does not match the request body")]
    BadSignature,
}

#[derive(Deserialize)]
struct KeyFile {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

impl GithubKeys {
    /// Parses a key file in the format of GitHub's
    /// `meta/public_keys/secret_scanning` answer. Every key must be an ECDSA
    /// P-256 SubjectPublicKeyInfo in PEM; any other key fails the whole file,
    /// naming its `key_identifier`. Unknown fields are ignored.
    pub fn from_json(json: &str) -> Result<Self, KeyFileError> {
        if json.trim().is_empty() {
            return Err(KeyFileError::Empty);
        }
        let file: KeyFile = serde_json::from_str(json)?;
        if file.public_keys.is_empty() {
            return Err(KeyFileError::NoKeys);
        }
        let mut keys: Vec<GithubKey> = Vec::with_capacity(file.public_keys.len());
        for entry in file.public_keys {
            if entry.key_identifier.is_empty() {
                return Err(KeyFileError::EmptyIdentifier);
            }
            if keys.iter().any(|k| k.identifier == entry.key_identifier) {
                return Err(KeyFileError::DuplicateKey {
                    key_identifier: entry.key_identifier,
                });
            }
            let key = parse_p256_pem(&entry.key_identifier, &entry.key)?;
            keys.push(GithubKey {
                identifier: entry.key_identifier,
                key,
                is_current: entry.is_current,
            });
        }
        Ok(Self { keys })
    }

    /// Checks `Github-Public-Key-Signature` (`signature_b64`) over the raw
    /// request `body` with the key named by `Github-Public-Key-Identifier`
    /// (`key_identifier`). Pass `""` for a missing header. Never panics.
    pub(crate) fn verify(
        &self,
        key_identifier: &str,
        signature_b64: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let key_identifier = key_identifier.trim();
        let signature_b64 = signature_b64.trim();
        if key_identifier.is_empty() {
            return Err(VerifyError::MissingKeyIdentifier);
        }
        if signature_b64.is_empty() {
            return Err(VerifyError::MissingSignature);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.identifier == key_identifier)
            .ok_or(VerifyError::UnknownKey)?;
        if signature_b64.len() > MAX_SIGNATURE_BASE64_CHARS {
            // Longer than any DER P-256 signature: refuse before decoding.
            return Err(VerifyError::SignatureFormat);
        }
        let der = SIGNATURE_BASE64
            .decode(signature_b64)
            .map_err(|_| VerifyError::SignatureEncoding)?;
        let signature = Signature::from_der(&der).map_err(|_| VerifyError::SignatureFormat)?;
        // SHA-256 of the raw body; high-S signatures are valid ECDSA and accepted
        // (GitHub's signer does not normalise S).
        key.key
            .verify(body, &signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// The key identifiers in the file, each with its `is_current` flag.
    pub fn key_identifiers(&self) -> impl Iterator<Item = (&str, bool)> {
        self.keys
            .iter()
            .map(|k| (k.identifier.as_str(), k.is_current))
    }
}

fn parse_p256_pem(key_identifier: &str, pem: &str) -> Result<VerifyingKey, KeyFileError> {
    let pem_error = || KeyFileError::Pem {
        key_identifier: key_identifier.to_owned(),
    };
    let der = decode_public_key_pem(pem).ok_or_else(pem_error)?;
    let spki = SubjectPublicKeyInfoRef::from_der(&der).map_err(|_| pem_error())?;
    let curve = spki.algorithm.parameters_oid().ok();
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(NistP256::OID) {
        return Err(KeyFileError::NotP256 {
            key_identifier: key_identifier.to_owned(),
            algorithm: describe_algorithm(spki.algorithm.oid, curve),
        });
    }
    let public_key = p256::PublicKey::try_from(spki).map_err(|_| KeyFileError::InvalidPoint {
        key_identifier: key_identifier.to_owned(),
    })?;
    Ok(VerifyingKey::from(public_key))
}

/// The DER inside one `PUBLIC KEY` PEM block. Lenient about line length, `\r\n`
/// and surrounding whitespace (hand-edited files), strict about the label.
fn decode_public_key_pem(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let inner = pem.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    let base64: String = inner.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
}

/// A readable name for a SubjectPublicKeyInfo algorithm, for the error message.
fn describe_algorithm(algorithm: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> String {
    if algorithm == EC_PUBLIC_KEY {
        return match curve {
            Some(oid) => {
                let name = match oid.to_string().as_str() {
                    "1.3.132.0.34" => " P-384",
                    "1.3.132.0.35" => " P-521",
                    "1.3.132.0.10" => " secp256k1",
                    "1.2.840.10045.3.1.1" => " P-192",
                    "1.3.132.0.33" => " P-224",
                    _ => "",
                };
                format!("an EC key on curve{name} ({oid})")
            }
            None => "an EC key without a named curve".to_owned(),
        };
    }
    let name = match algorithm.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "an RSA key",
        "1.3.101.112" => "an Ed25519 key",
        "1.3.101.113" => "an Ed448 key",
        "1.2.840.10040.4.1" => "a DSA key",
        _ => "a key",
    };
    format!("{name} (algorithm {algorithm})")
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

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

pub(crate) use crate::manage::token_hash;

#[cfg(test)]
mod tests;
