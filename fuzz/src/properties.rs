//! The properties that the fuzz targets check, shared word for word by the
//! cargo-fuzz targets (nightly, `fuzz/fuzz_targets/`) and by their stable
//! proptest equivalent (`tests/fuzz_equivalent.rs`, included with `#[path]`).
//!
//! Each function takes arbitrary bytes and panics when a property fails. The
//! oracles are written independently of `src/` (a plain reading of the
//! documented format and of RFC 6750), so a disagreement is a bug in one of
//! the two, never "the code agrees with itself".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use tokengate::test_util::{BearerError, bearer_token, parse_bearer, parse_token, token_id_bytes};
use tokengate::{TokenFormat, TokenId};

/// Valid prefixes of every length class: the default, short, long, maximal.
pub const PREFIXES: [&str; 4] = ["iit_", "sk_", "acme_live_", "a1234567890abcd_"];

/// The URL-safe base64 alphabet, for building and mutating tokens.
pub const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters after the prefix: 20 (id) + 44 (secret) + 6 (CRC-32).
const BODY_CHARS: usize = 70;

/// Arbitrary bytes as a token (when they are UTF-8), in every prefix, plus
/// a prefix and a token id taken from the input itself.
pub fn token_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for prefix in PREFIXES {
        check_token_text(&TokenFormat::new(prefix).unwrap(), text);
    }
    // A prefix chosen by the input: whatever `new` accepts must behave too.
    let chosen = text.find('_').map(|end| &text[..=end]);
    if let Some((prefix, format)) = chosen.and_then(|p| Some((p, TokenFormat::new(p).ok()?))) {
        assert_eq!(format.prefix(), prefix);
        assert_eq!(format.token_len(), prefix.len() + BODY_CHARS);
        check_token_text(&format, text);
    }
    // A token id has exactly one spelling: parsing and printing round-trip.
    if let Ok(id) = text.parse::<TokenId>() {
        assert_eq!(id.to_string(), text);
        assert_eq!(URL_SAFE_NO_PAD.encode(token_id_bytes(&id)), text);
    }
}

fn check_token_text(format: &TokenFormat, text: &str) {
    let shape = format.check_shape(text);
    let expected = reference_decode(format.prefix(), text.as_bytes());
    assert_eq!(format.is_well_formed(text), shape.is_ok());
    assert_eq!(
        shape.is_ok(),
        expected.is_some(),
        "check_shape disagrees with the documented format: {shape:?} for {text:?}"
    );
    match parse_token(format, text) {
        Ok(parsed) => {
            let (id, secret) = expected.expect("parse accepted what the format rejects");
            assert_eq!(parsed.id_bytes, id);
            assert_eq!(parsed.secret, &secret[..]);
            // Debug never shows the secret part.
            let shown = parsed.debug;
            let secret_text = &text[format.prefix().len() + 20..format.prefix().len() + 64];
            assert!(!shown.contains(secret_text), "{shown}");
        }
        Err(e) => assert_eq!(shape, Err(e)),
    }
}

/// The documented format, read independently of `src/token.rs`: prefix,
/// then 70 URL-safe base64 characters: id (15 bytes), secret (33 bytes),
/// CRC-32 (big-endian) of everything before it. Every part must be the one
/// canonical spelling of its bytes. Returns the id and secret bytes.
pub fn reference_decode(prefix: &str, text: &[u8]) -> Option<([u8; 15], [u8; 33])> {
    let body = text.strip_prefix(prefix.as_bytes())?;
    if body.len() != BODY_CHARS {
        return None;
    }
    let part = |range: std::ops::Range<usize>| -> Option<Vec<u8>> {
        let chars = &body[range];
        let bytes = URL_SAFE_NO_PAD.decode(chars).ok()?;
        // Canonical: re-encoding gives back the very same characters.
        (URL_SAFE_NO_PAD.encode(&bytes).as_bytes() == chars).then_some(bytes)
    };
    let id: [u8; 15] = part(0..20)?.try_into().ok()?;
    let secret: [u8; 33] = part(20..64)?.try_into().ok()?;
    let checksum: [u8; 4] = part(64..70)?.try_into().ok()?;
    let covered = &text[..text.len() - 6];
    (u32::from_be_bytes(checksum) == crc32fast::hash(covered)).then_some((id, secret))
}

/// Builds a token by the documented recipe from the input's bytes, checks that
/// it parses back to the same id and secret, then changes one character
/// (position and replacement also from the input) and checks the change is
/// rejected offline: CRC-32 catches every burst of up to 32 bits, so every
/// single-character change must be caught.
pub fn token_round_trip(data: &[u8]) {
    let [choice, rest @ ..] = data else {
        return;
    };
    if rest.len() < 48 {
        return;
    }
    let prefix = PREFIXES[usize::from(*choice) % PREFIXES.len()];
    let format = TokenFormat::new(prefix).unwrap();
    let (id, rest) = rest.split_at(15);
    let (secret, rest) = rest.split_at(33);
    let mut text = String::from(prefix);
    URL_SAFE_NO_PAD.encode_string(id, &mut text);
    URL_SAFE_NO_PAD.encode_string(secret, &mut text);
    let checksum = crc32fast::hash(text.as_bytes());
    URL_SAFE_NO_PAD.encode_string(checksum.to_be_bytes(), &mut text);
    assert_eq!(text.len(), format.token_len());

    let parsed = parse_token(&format, &text).expect("a token built by the recipe parses");
    assert_eq!(&parsed.id_bytes[..], id);
    assert_eq!(parsed.secret, secret);
    assert_eq!(
        parsed.id.to_string(),
        &text[prefix.len()..prefix.len() + 20]
    );

    if let [position, replacement, ..] = rest {
        let position = usize::from(*position) % text.len();
        let replacement = ALPHABET[usize::from(*replacement) % ALPHABET.len()];
        let mut changed = text.clone().into_bytes();
        if changed[position] != replacement {
            changed[position] = replacement;
            let changed = String::from_utf8(changed).unwrap();
            assert!(
                !format.is_well_formed(&changed),
                "a one-character change at {position} passed: {changed}"
            );
        }
    }
}

/// Arbitrary bytes as one `Authorization` field value.
pub fn bearer_value(data: &[u8]) {
    let token = parse_bearer(data);
    assert_eq!(token, reference_parse_bearer(data), "{data:?}");
    if let Some(token) = token {
        // A substring of the input (borrowed from it), and its very end.
        let start = (token.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
        assert!(start <= data.len() && start + token.len() == data.len());
        assert_eq!(&data[start..], token.as_bytes());
        assert!(data[..6].eq_ignore_ascii_case(b"bearer"));
        assert!(start > 6 && data[6..start].iter().all(|&b| b == b' '));
        assert!(is_token68(token.as_bytes()), "{token:?}");
        // Whatever follows the header parse must not panic either.
        let _ = TokenFormat::default().check_shape(token);
    }
    // Through a real header map: one field parses the same, two never do.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.clone());
        assert_eq!(bearer_token(&headers).ok(), token);
        if token.is_none() {
            assert_eq!(bearer_token(&headers), Err(BearerError::Malformed));
        }
        headers.append(AUTHORIZATION, value);
        assert_eq!(bearer_token(&headers), Err(BearerError::Malformed));
    }
}

/// RFC 6750 §2.1, read independently of `src/bearer.rs`:
/// `"Bearer" 1*SP b64token`, the scheme in any case, where
/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn reference_parse_bearer(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = text.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    if token.len() == rest.len() {
        return None;
    }
    is_token68(token.as_bytes()).then_some(token)
}

/// `b64token` of RFC 6750 (`token68` of RFC 9110).
pub fn is_token68(token: &[u8]) -> bool {
    let body_end = token
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |last| last + 1);
    let body = &token[..body_end];
    !body.is_empty()
        && body.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}
