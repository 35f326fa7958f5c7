use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use proptest::prelude::*;
use rand_core::OsRng;

use super::keys::{GITHUB_KEYS_URL, KeyFileError};
use super::report::{Feedback, MAX_REPORT_BYTES, MAX_REPORT_ENTRIES, ReportError};
use super::*;
use crate::manage::token_hash;

/// GitHub's documented sample request and the published keys it refers to
/// (`meta/public_keys/secret_scanning`, as quoted in GitHub's docs samples and
/// in Sentry's and Octokit.net's tests).
const GITHUB_KEY_FILE: &str = r#"{"public_keys":[
 {"key_identifier":"90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a",
  "key":"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----\n",
  "is_current":false},
 {"key_identifier":"bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c",
  "key":"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd\nAjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==\n-----END PUBLIC KEY-----\n",
  "is_current":true}]}"#;
const GITHUB_KEY_ID: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";
const GITHUB_OLD_KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
const GITHUB_BODY: &[u8] = br#"[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]"#;
const GITHUB_SIGNATURE: &str = "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg==";

// Real keys of other kinds (made with `openssl`), for the "not P-256" errors.
const SECP256K1_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEhscZqj2ivLJPzVWM2fGoP6O7qGo35oh5\nQzwpp81WsWFtNe6hUD9drO5Mo27oe59csTgAMG71UopvKwazEmMd3Q==\n-----END PUBLIC KEY-----\n";
const P384_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEo+thQejad1Rf3YAsESOZhS7QzNbh/3Mn\n7m89mCgswpfRJCmnlRQR8Kf/l1ZDFqVgV/eRZkyKidPUgJugC4HAqX6JTGJWhtJ2\nEAXwzB9bw0tbApRYDrJMxmb2UFXl7ETO\n-----END PUBLIC KEY-----\n";
const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAVGM6UvjzC1cvRbRcx3XdZcukzn9bVGV5eSaW+/8OnXA=\n-----END PUBLIC KEY-----\n";
const RSA_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCwf0X1zrrJc/B5t+DNSZrKs6lf\nDj9n+yxO1QxekMqG9Is9rZd0VuzMxmtFMKGhODAt0Upg1p+5KG/FMCX1sLKlD6Qm\n8og9XP85Pj6iqodylgtI2iwbRa8kzEkj8uenighOvmi1FFbjiK73LMpK2Zc2KonI\nFf8/dl+8XI0IUQn1MQIDAQAB\n-----END PUBLIC KEY-----\n";
const P256_COMPRESSED_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgADkbnE10UYK7gEMxgmfsaX3lW4tMdE\nwZ8cHTol7cq6wBY=\n-----END PUBLIC KEY-----\n";

fn pem_of(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM encoding")
}

fn key_file(entries: &[(&str, &str, bool)]) -> String {
    let keys: Vec<_> = entries
        .iter()
        .map(|(id, pem, current)| {
            serde_json::json!({"key_identifier": id, "key": pem, "is_current": current})
        })
        .collect();
    serde_json::json!({ "public_keys": keys }).to_string()
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// A generated key registered as "k1", and a second one as "k2".
fn two_keys() -> (SigningKey, SigningKey, GithubKeys) {
    let k1 = SigningKey::random(&mut OsRng);
    let k2 = SigningKey::random(&mut OsRng);
    let file = key_file(&[("k1", &pem_of(&k1), true), ("k2", &pem_of(&k2), false)]);
    let keys = GithubKeys::parse(&file).expect("valid key file");
    (k1, k2, keys)
}

fn report_body(n: usize) -> Vec<u8> {
    let entries: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "token": format!("iit_{i:070}"),
                "type": "tokengate_api_token",
                "url": format!("https://github.com/octocat/Hello-World/blob/main/f{i}.txt"),
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&entries).unwrap()
}

// --- GitHub's own sample -----------------------------------------------------

#[test]
fn githubs_documented_sample_request_verifies() {
    let keys = GithubKeys::parse(GITHUB_KEY_FILE).unwrap();
    assert_eq!(
        keys.key_identifiers().collect::<Vec<_>>(),
        [(GITHUB_OLD_KEY_ID, false), (GITHUB_KEY_ID, true)]
    );
    assert_eq!(
        keys.verify(GITHUB_KEY_ID, GITHUB_SIGNATURE, GITHUB_BODY),
        Ok(())
    );
    // The body with a trailing newline is another body.
    let mut with_newline = GITHUB_BODY.to_vec();
    with_newline.push(b'\n');
    assert_eq!(
        keys.verify(GITHUB_KEY_ID, GITHUB_SIGNATURE, &with_newline),
        Err(VerifyError::BadSignature)
    );
    // Signed by the current key, checked with the old one.
    assert_eq!(
        keys.verify(GITHUB_OLD_KEY_ID, GITHUB_SIGNATURE, GITHUB_BODY),
        Err(VerifyError::BadSignature)
    );
    let report = parse_report(GITHUB_BODY).unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].expose_token(), "some_token");
    assert_eq!(report[0].token_type(), "some_type");
    assert_eq!(report[0].url(), "https://example.com/base-repo-url/");
    assert_eq!(report[0].source(), "commit");
}

// --- Signature check -------------------------------------------------------

#[test]
fn a_body_signed_by_a_listed_key_verifies() {
    let (k1, k2, keys) = two_keys();
    let body = report_body(3);
    assert_eq!(keys.verify("k1", &sign(&k1, &body), &body), Ok(()));
    // A key that is no longer current still verifies what it signed.
    assert_eq!(keys.verify("k2", &sign(&k2, &body), &body), Ok(()));
    // Surrounding whitespace in header values is ignored.
    assert_eq!(
        keys.verify(" k1 ", &format!(" {} ", sign(&k1, &body)), &body),
        Ok(())
    );
}

#[test]
fn unpadded_base64_is_accepted() {
    let (k1, _, keys) = two_keys();
    let body = b"[]";
    let signature = sign(&k1, body);
    assert_eq!(
        keys.verify("k1", signature.trim_end_matches('='), body),
        Ok(())
    );
}

#[test]
fn high_s_and_low_s_forms_both_verify() {
    // ECDSA (r, s) and (r, n - s) are both valid; GitHub's signer does not
    // normalise S, so rejecting high S would drop about half of its requests.
    let (k1, _, keys) = two_keys();
    let body = report_body(1);
    let signature: Signature = k1.sign(&body);
    let negated = Signature::from_scalars(signature.r(), -signature.s()).unwrap();
    for sig in [signature, negated] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        assert_eq!(keys.verify("k1", &b64, &body), Ok(()));
    }
}

#[test]
fn a_tampered_body_is_a_bad_signature() {
    let (k1, _, keys) = two_keys();
    let body = report_body(2);
    let signature = sign(&k1, &body);
    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    assert_eq!(
        keys.verify("k1", &signature, &tampered),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        keys.verify("k1", &signature, &body[..body.len() - 1]),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        keys.verify("k1", &signature, b""),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_wrong_key_id_is_unknown() {
    let (k1, _, keys) = two_keys();
    let body = report_body(1);
    let signature = sign(&k1, &body);
    for id in ["k3", "K1", "k1x", GITHUB_KEY_ID, "k1\0"] {
        assert_eq!(
            keys.verify(id, &signature, &body),
            Err(VerifyError::UnknownKey),
            "{id:?}"
        );
    }
}

#[test]
fn missing_headers_are_named() {
    let (k1, _, keys) = two_keys();
    let body = report_body(1);
    let signature = sign(&k1, &body);
    assert_eq!(
        keys.verify("", &signature, &body),
        Err(VerifyError::MissingKeyIdentifier)
    );
    assert_eq!(
        keys.verify("k1", "", &body),
        Err(VerifyError::MissingSignature)
    );
    assert_eq!(
        keys.verify("k1", "  ", &body),
        Err(VerifyError::MissingSignature)
    );
}

#[test]
fn garbage_signatures_are_encoding_or_format_errors() {
    let (k1, _, keys) = two_keys();
    let body = report_body(1);
    for not_base64 in ["!!!!", "MEQC IQDa", "MEQCIQDa\u{e9}", "%%%%%%%%"] {
        assert_eq!(
            keys.verify("k1", not_base64, &body),
            Err(VerifyError::SignatureEncoding),
            "{not_base64:?}"
        );
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let good_der = {
        let signature: Signature = k1.sign(&body);
        signature.to_der().as_bytes().to_vec()
    };
    let mut trailing = good_der.clone();
    trailing.push(0);
    let raw_64_bytes = {
        // The fixed-size r||s form (JWS style) is not DER.
        let signature: Signature = k1.sign(&body);
        signature.to_bytes().to_vec()
    };
    for not_der in [
        b64(b"hello world"),
        b64(&[0x30, 0x00]),
        b64(&good_der[..good_der.len() - 1]),
        b64(&trailing),
        b64(&raw_64_bytes),
        // r = 0, s = 1: DER-shaped but out of range.
        b64(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),
        "A".repeat(400),
    ] {
        assert_eq!(
            keys.verify("k1", &not_der, &body),
            Err(VerifyError::SignatureFormat),
            "{not_der:?}"
        );
    }
}

#[test]
fn a_signature_by_another_key_is_a_bad_signature() {
    let (k1, k2, keys) = two_keys();
    let stranger = SigningKey::random(&mut OsRng);
    let body = report_body(1);
    // Signed by k2 but claiming k1.
    assert_eq!(
        keys.verify("k1", &sign(&k2, &body), &body),
        Err(VerifyError::BadSignature)
    );
    // Signed by a key nobody listed.
    assert_eq!(
        keys.verify("k1", &sign(&stranger, &body), &body),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(keys.verify("k1", &sign(&k1, &body), &body), Ok(()));
}

// --- Key file ----------------------------------------------------------------

#[test]
fn non_p256_keys_are_rejected_naming_the_key() {
    let good = pem_of(&SigningKey::random(&mut OsRng));
    for (pem, expected) in [
        (SECP256K1_PEM, "an EC key on curve secp256k1 (1.3.132.0.10)"),
        (P384_PEM, "an EC key on curve P-384 (1.3.132.0.34)"),
        (ED25519_PEM, "an Ed25519 key (algorithm 1.3.101.112)"),
        (RSA_PEM, "an RSA key (algorithm 1.2.840.113549.1.1.1)"),
    ] {
        let file = key_file(&[("good", &good, false), ("odd-one", pem, true)]);
        let err = GithubKeys::parse(&file).unwrap_err();
        match &err {
            KeyFileError::NotP256 {
                key_identifier,
                algorithm,
            } => {
                assert_eq!(key_identifier, "odd-one");
                assert_eq!(algorithm, expected);
            }
            other => panic!("{expected}: {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("odd-one") && message.contains("P-256"),
            "{message}"
        );
    }
}

#[test]
fn a_compressed_p256_key_is_accepted() {
    let keys = GithubKeys::parse(&key_file(&[("c", P256_COMPRESSED_PEM, true)])).unwrap();
    assert_eq!(keys.key_identifiers().count(), 1);
}

#[test]
fn pem_line_breaks_do_not_matter() {
    let key = SigningKey::random(&mut OsRng);
    let pem = pem_of(&key);
    let crlf = pem.replace('\n', "\r\n");
    let one_line = pem
        .lines()
        .map(|l| {
            if l.starts_with("-----") {
                format!("{l}\n")
            } else {
                l.to_owned()
            }
        })
        .collect::<String>();
    let body = b"[]";
    for variant in [crlf, one_line, format!("\n  {pem}  \n")] {
        let keys = GithubKeys::parse(&key_file(&[("k", &variant, true)])).unwrap();
        assert_eq!(keys.verify("k", &sign(&key, body), body), Ok(()));
    }
}

#[test]
fn malformed_keys_are_rejected_naming_the_key() {
    let good = pem_of(&SigningKey::random(&mut OsRng));
    let private_label = good.replace("PUBLIC KEY", "PRIVATE KEY");
    let truncated = good.replace("-----END PUBLIC KEY-----", "");
    for bad in ["", "not a key", &truncated, &private_label, &good[27..]] {
        let file = key_file(&[("bad-key", bad, true)]);
        match GithubKeys::parse(&file) {
            Err(KeyFileError::Pem { key_identifier }) => assert_eq!(key_identifier, "bad-key"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A P-256 SubjectPublicKeyInfo whose point is not on the curve.
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(
            good.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let off_curve = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    match GithubKeys::parse(&key_file(&[("off-curve", &off_curve, true)])) {
        Err(KeyFileError::InvalidPoint { key_identifier }) => {
            assert_eq!(key_identifier, "off-curve")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_invalid_and_odd_key_files_are_rejected() {
    assert!(matches!(GithubKeys::parse(""), Err(KeyFileError::Empty)));
    assert!(matches!(
        GithubKeys::parse(" \n\t"),
        Err(KeyFileError::Empty)
    ));
    for invalid in [
        "{",
        "[]",
        "{}",
        "null",
        r#"{"public_keys": {}}"#,
        "<html>",
        r#"{"public_keys":[{"key":"x"}]}"#,
    ] {
        match GithubKeys::parse(invalid) {
            Err(e @ KeyFileError::Json(_)) => {
                assert!(e.to_string().contains(GITHUB_KEYS_URL), "{e}")
            }
            other => panic!("{invalid:?}: {other:?}"),
        }
    }
    assert!(matches!(
        GithubKeys::parse(r#"{"public_keys": []}"#),
        Err(KeyFileError::NoKeys)
    ));
    let pem = pem_of(&SigningKey::random(&mut OsRng));
    assert!(matches!(
        GithubKeys::parse(&key_file(&[("", &pem, true)])),
        Err(KeyFileError::EmptyIdentifier)
    ));
    match GithubKeys::parse(&key_file(&[("same", &pem, true), ("same", &pem, false)])) {
        Err(KeyFileError::DuplicateKey { key_identifier }) => assert_eq!(key_identifier, "same"),
        other => panic!("{other:?}"),
    }
    // Extra fields and a missing is_current are fine.
    let lenient = format!(
        r#"{{"public_keys":[{{"key_identifier":"x","key":{},"extra":1}}],"more":true}}"#,
        serde_json::to_string(&pem).unwrap()
    );
    let keys = GithubKeys::parse(&lenient).unwrap();
    assert_eq!(keys.key_identifiers().collect::<Vec<_>>(), [("x", false)]);
}

// --- Report ------------------------------------------------------------------

#[test]
fn a_report_of_1000_tokens_parses_fast() {
    let body = report_body(1000);
    let started = Instant::now();
    let report = parse_report(&body).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.len(), 1000);
    assert_eq!(report[999].expose_token(), format!("iit_{:070}", 999));
    assert_eq!(report[999].source(), "content");
    println!(
        "parse_report: 1,000 matches ({} bytes) in {elapsed:?}",
        body.len()
    );
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[test]
fn the_entry_limit_is_enforced() {
    assert_eq!(
        parse_report(&report_body(MAX_REPORT_ENTRIES))
            .unwrap()
            .len(),
        MAX_REPORT_ENTRIES
    );
    assert_eq!(
        parse_report(&report_body(MAX_REPORT_ENTRIES + 1)).unwrap_err(),
        ReportError::TooManyEntries {
            max: MAX_REPORT_ENTRIES
        }
    );
    assert_eq!(parse_report(b"[]").unwrap().len(), 0);
}

/// `[{"token":"x"}]` was accepted with an empty type, although the README
/// says such entries get 400.
#[test]
fn an_entry_without_its_four_string_fields_is_refused_naming_its_index() {
    let ok = r#"{"token":"t","type":"x","url":"","source":"content","new_field":[1]}"#;
    assert_eq!(parse_report(format!("[{ok}]").as_bytes()).unwrap().len(), 1);
    for (entry, field) in [
        (r#"{"token":"x"}"#, Some("type")),
        (r#"{"type":"x","url":"u","source":"s"}"#, Some("token")),
        (
            r#"{"token":"t","type":"x","url":null,"source":"s"}"#,
            Some("url"),
        ),
        (r#"{"token":"t","type":"x","url":"u"}"#, Some("source")),
        (r#"{"token":"t","type":1,"url":"u","source":"s"}"#, None),
        (r#""iit_x""#, None),
        ("null", None),
    ] {
        let body = format!("[{ok},{ok},{entry}]");
        let error = parse_report(body.as_bytes()).unwrap_err();
        assert_eq!(error, ReportError::Entry { index: 2, field }, "{entry}");
        let message = error.to_string();
        assert!(message.starts_with("entry 2 of the report"), "{message}");
        if let Some(field) = field {
            assert!(
                message.contains(&format!("\"{field}\" is missing")),
                "{message}"
            );
        }
    }
}

/// The documented maximum fits the body limit with GitHub-length URLs
/// (10,000 such entries were ~2.5 MB against a 1 MB limit).
#[test]
fn the_most_entries_with_long_github_urls_fit_the_body_limit() {
    let url = format!(
        "https://github.com/{}/{}/blob/{}/{}",
        "o".repeat(39),
        "r".repeat(100),
        "0123456789abcdef0123456789abcdef01234567",
        "p".repeat(400)
    );
    assert!(url.len() >= 600, "{}", url.len());
    let entries: Vec<_> = (0..MAX_REPORT_ENTRIES)
        .map(|i| {
            serde_json::json!({
                "token": format!("iit_{i:070}"),
                "type": "tokengate_api_token",
                "url": url,
                "source": "content",
            })
        })
        .collect();
    let body = serde_json::to_vec(&entries).unwrap();
    assert!(body.len() <= MAX_REPORT_BYTES, "{} bytes", body.len());
    assert_eq!(parse_report(&body).unwrap().len(), MAX_REPORT_ENTRIES);
    let error = parse_report(&report_body(MAX_REPORT_ENTRIES + 1)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("at most 1000 matches per request"),
        "{error}"
    );
}

#[test]
fn malformed_reports_are_rejected_without_echoing_input() {
    let secret = "iit_SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRET";
    let syntax = [
        String::new(),
        format!("[{{\"token\":\"{secret}\"}}"),
        format!("[{{\"token\":\"{secret}\"}}] x"),
    ];
    let shape = [
        format!("\"{secret}\""),
        format!("[\"{secret}\"]"),
        format!("{{\"token\":\"{secret}\"}}"),
        format!("[{{\"type\":\"{secret}\"}}]"),
        format!("[{{\"token\":1,\"url\":\"{secret}\"}}]"),
        format!("[{{\"token\":\"a\",\"url\":[\"{secret}\"]}}]"),
    ];
    let cases = syntax
        .iter()
        .map(|b| (b, true))
        .chain(shape.iter().map(|b| (b, false)));
    for (body, is_syntax) in cases {
        let err = parse_report(body.as_bytes()).unwrap_err();
        let matched = if is_syntax {
            matches!(err, ReportError::Syntax { .. })
        } else {
            matches!(err, ReportError::Shape { .. } | ReportError::Entry { .. })
        };
        assert!(matched, "{body}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

#[test]
fn reported_tokens_are_redacted_in_debug() {
    let report = parse_report(GITHUB_BODY).unwrap();
    let shown = format!("{report:?}");
    assert!(!shown.contains("some_token"), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains("some_type"),
        "{shown}"
    );
}

// --- Feedback ----------------------------------------------------------------

#[test]
fn feedback_serialises_to_the_protocol_fields() {
    let report = parse_report(GITHUB_BODY).unwrap();
    let feedback = vec![
        report[0].feedback(Label::TruePositive),
        Feedback::new("abc", "tokengate_api_token", Label::FalsePositive),
    ];
    assert_eq!(
        serde_json::to_string(&feedback).unwrap(),
        concat!(
            r#"[{"token_hash":"9a45520a1213f15016d2d768b5fb3d904492a44ee274b44d4de8803e00fb536a","token_type":"some_type","label":"true_positive"},"#,
            r#"{"token_hash":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","token_type":"tokengate_api_token","label":"false_positive"}]"#
        )
    );
    // Exactly the reported string is hashed (no trimming, UTF-8 bytes).
    assert_eq!(
        token_hash(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_ne!(token_hash("abc "), token_hash("abc"));
}

// --- Never panics ------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn verify_never_panics(id in ".{0,80}", sig in ".{0,200}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let keys = GithubKeys::parse(GITHUB_KEY_FILE).unwrap();
        let _ = keys.verify(&id, &sig, &body);
        let _ = keys.verify(GITHUB_KEY_ID, &sig, &body);
    }

    #[test]
    fn verify_never_panics_on_base64_of_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let keys = GithubKeys::parse(GITHUB_KEY_FILE).unwrap();
        let sig = base64::engine::general_purpose::STANDARD.encode(&bytes);
        prop_assert!(keys.verify(GITHUB_KEY_ID, &sig, GITHUB_BODY).is_err());
    }

    #[test]
    fn parse_report_and_key_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), text in ".{0,300}") {
        let _ = parse_report(&bytes);
        let _ = parse_report(text.as_bytes());
        let _ = GithubKeys::parse(&text);
    }
}
