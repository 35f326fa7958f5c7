//! `Authorization: Bearer <token>` parsing (RFC 6750 §2.1, RFC 9110 §11).
//!
//! Strict on purpose: exactly one `Authorization` field; the scheme `Bearer`
//! in any case; one or more spaces; a `token68` (`A-Z a-z 0-9 - . _ ~ + /`
//! followed by optional `=`); nothing else. Tokens are accepted only from the
//! header, never from a query parameter or a cookie, where they would end up
//! in access logs and browser history.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

/// Why no bearer token could be taken from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub enum BearerError {
    /// No `Authorization` header at all.
    Missing,
    /// Anything else: another scheme, bad characters, two headers, ...
    Malformed,
}

/// The bearer token of a request, or why there is none: `bEaReR   abc.def~`
/// is `abc.def~`; no header is [`BearerError::Missing`]; `Basic ...`, two
/// headers or bad characters are [`BearerError::Malformed`].
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    let value = single_authorization(headers)?;
    parse_bearer(value.as_bytes()).ok_or(BearerError::Malformed)
}

/// The request's only `Authorization` field; two or more are [`BearerError::Malformed`].
pub(crate) fn single_authorization(headers: &HeaderMap) -> Result<&HeaderValue, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Malformed);
    }
    Ok(value)
}

/// Parses one `Authorization` field value; `None` unless it is `Bearer 1*SP token68`.
pub(crate) fn parse_bearer(value: &[u8]) -> Option<&str> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    if spaces == 0 {
        return None;
    }
    let token = &rest[spaces..];
    if !is_token68(token) {
        return None;
    }
    // token68 is ASCII, so this cannot fail.
    std::str::from_utf8(token).ok()
}

/// Whether a field value uses the `Bearer` scheme at all (well-formed or
/// not). RFC 6750 §3.1: a request that uses another scheme carries no bearer
/// credentials, so its 401 names no error code.
pub(crate) fn is_bearer_scheme(value: &[u8]) -> bool {
    const SCHEME: &[u8] = b"bearer";
    value.len() >= SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && value
            .get(SCHEME.len())
            .is_none_or(|&b| b == b' ' || b == b'\t')
}

/// The bytes of a token68 before its `=` padding, as a table: one load per
/// byte, no branch (this runs on every request).
const TOKEN68_BODY: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        #[expect(clippy::cast_possible_truncation, reason = "i < 256")]
        let b = i as u8;
        table[i] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    table
};

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &[u8]) -> bool {
    let body_len = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // A fold, not `all`: no early exit, so the compiler vectorises it.
    body_len > 0
        && token[..body_len]
            .iter()
            .fold(true, |ok, &b| ok & TOKEN68_BODY[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_rfc_6750_forms() {
        for (value, token) in [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER abc", "abc"),
            ("Bearer    abc", "abc"),
            ("Bearer a-b.c_d~e+f/g==", "a-b.c_d~e+f/g=="),
        ] {
            assert_eq!(parse_bearer(value.as_bytes()), Some(token), "{value}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for value in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer  ",
            "Bearerabc",
            "Bearer\tabc",
            "Bearer abc def",
            "Bearer abc ",
            "Bearer =abc",
            "Bearer =",
            "Bearer ==",
            "Bearer a=b",
            "Bearer ab,c",
            "Basic abc",
            "Token abc",
            "Bearer \"abc\"",
            "Bearer a\u{e9}b",
            " Bearer abc",
            "Bearer: abc",
        ] {
            assert_eq!(parse_bearer(value.as_bytes()), None, "{value:?}");
        }
        assert_eq!(parse_bearer(b"Bearer a\0b"), None);
        assert_eq!(parse_bearer(b"Bearer \xff\xfe"), None);
    }

    #[test]
    fn two_authorization_headers_are_malformed() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers), Err(BearerError::Malformed));
    }

    #[test]
    fn no_authorization_header_is_missing_and_one_is_taken_as_is() {
        let mut headers = HeaderMap::new();
        assert_eq!(single_authorization(&headers), Err(BearerError::Missing));
        assert_eq!(bearer_token(&headers), Err(BearerError::Missing));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(
            single_authorization(&headers),
            Ok(&HeaderValue::from_static("Basic abc"))
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer a.b"));
        assert_eq!(bearer_token(&headers), Ok("a.b"));
    }

    /// The scheme alone decides, well-formed or not: `Bearer` in any case,
    /// then the end of the value, a space or a tab.
    #[test]
    fn bearer_scheme_is_recognised_even_when_malformed() {
        for value in [
            "Bearer abc",
            "Bearer",
            "bEaReR",
            "Bearer ",
            "Bearer\tabc",
            "Bearer a b c",
            "BEARER \"abc\"",
        ] {
            assert!(is_bearer_scheme(value.as_bytes()), "{value:?}");
        }
        for value in [
            "",
            "Bear",
            "Beare",
            "Bearerabc",
            "Bearer:abc",
            "Bearer,abc",
            " Bearer abc",
            "Basic abc",
            "Basic",
            "Tokens abc",
        ] {
            assert!(!is_bearer_scheme(value.as_bytes()), "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_only_returns_token68(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Some(token) = parse_bearer(&bytes) {
                prop_assert!(is_token68(token.as_bytes()));
                prop_assert!(bytes.len() > token.len() + 6);
            }
        }

        /// The table agrees with RFC 7235's grammar, written out plainly.
        #[test]
        fn token68_table_matches_the_grammar(
            bytes in prop::collection::vec(
                prop_oneof![Just(b'='), Just(b'a'), Just(b'~'), Just(b' '), any::<u8>()],
                0..12,
            )
        ) {
            let body_len = bytes
                .iter()
                .take_while(|&&b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
                })
                .count();
            let expected = body_len > 0 && bytes[body_len..].iter().all(|&b| b == b'=');
            prop_assert_eq!(is_token68(&bytes), expected);
        }
    }
}
