//! GitHub's signing keys and the signature check: a key file in the
//! format GitHub publishes, parsed into ECDSA P-256 verifying keys, and the
//! check of `Github-Public-Key-Signature` over the raw request body.
//!
//! This module owns what a valid key and a valid signature are, and names
//! the offending `key_identifier` in every key file error. It must not read
//! the key file or the request (the server does that), and no error of a
//! request's signature may echo the request.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use p256::NistP256;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::der::Decode;
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{AssociatedOid, ObjectIdentifier};
use serde::Deserialize;

use crate::config_error::ConfigError;

/// Where GitHub publishes its secret scanning keys (the key file's format).
pub(crate) const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

/// A DER ECDSA P-256 signature is at most 72 bytes, 96 base64 characters.
const MAX_SIGNATURE_BASE64_CHARS: usize = 128;

/// id-ecPublicKey (RFC 5480), the SubjectPublicKeyInfo algorithm of any EC key.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Standard alphabet; padding accepted but not required (GitHub sends it).
const SIGNATURE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
#[non_exhaustive]
pub(crate) enum KeyFileError {
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
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::parse(json).map_err(|e| ConfigError::GithubKeys(Box::new(e)))
    }

    /// [`GithubKeys::from_json`], with the reason a file was rejected.
    pub(crate) fn parse(json: &str) -> Result<Self, KeyFileError> {
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
        let (key, signature) = self.key_and_signature(key_identifier, signature_b64)?;
        // SHA-256 of the raw body; high-S signatures are valid ECDSA and accepted
        // (GitHub's signer does not normalise S).
        key.verify(body, &signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Everything [`verify`](Self::verify) checks before it needs the body:
    /// both headers there, a known key, a well-formed signature. A request
    /// that fails this is refused before its body is read.
    pub(crate) fn check_headers(
        &self,
        key_identifier: &str,
        signature_b64: &str,
    ) -> Result<(), VerifyError> {
        self.key_and_signature(key_identifier, signature_b64)
            .map(|_| ())
    }

    fn key_and_signature(
        &self,
        key_identifier: &str,
        signature_b64: &str,
    ) -> Result<(&VerifyingKey, Signature), VerifyError> {
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
        Ok((&key.key, signature))
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
