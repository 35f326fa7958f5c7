//! What reaches a log never holds a token: paths, query strings and header
//! values are passed through [`redact_token_shaped`] first.
//!
//! A token is `<prefix><70 URL-safe base64 characters>`, and its secret part
//! alone is 44 of them. A run of URL-safe base64 characters (`A-Z a-z 0-9 -
//! _`, also when percent-encoded) is replaced by `[redacted]` when it is
//!
//! - 40 or more characters long: a whole token, a token without its prefix,
//!   its secret part, or a token with a few characters cut off; or
//! - a prefix-like start (a lowercase letter, up to 15 of `a-z 0-9 _`, then
//!   `_`, as in `iit_`) followed by more than 20 characters (a token id):
//!   a truncated or made-up token.
//!
//! Token ids (20 characters), request ids (32 hex digits) and UUIDs (36
//! characters with dashes) stay readable. The rule does not depend on the
//! configured prefix, so it also covers a token minted under another prefix,
//! or a webhook secret (`whsec_...`).

use std::borrow::Cow;

/// Shortest run of URL-safe base64 characters that is redacted: a little
/// under a token's 44-character secret part.
const MIN_SECRET_RUN: usize = 40;

/// Longest prefix-like start of a run (a token prefix has 2–16 characters).
const MAX_PREFIX: usize = 16;

/// Shortest rest of a run after a prefix-like start that is redacted: more
/// than a token id alone (20 characters, public).
const MIN_AFTER_PREFIX: usize = 21;

/// What a redacted run is replaced with.
const REDACTED: &str = "[redacted]";

/// `text` with every token-shaped run of URL-safe base64 characters (plain
/// or `%XX`-encoded; see the module docs) replaced by `[redacted]`;
/// borrowed when there is none.
///
/// Use it on anything a client chose that goes into a log line: a path, a
/// query string, a header value.
///
/// # Example
///
/// ```
/// use tokengate::http::redact_token_shaped;
///
/// let token = format!("iit_{}", "A".repeat(70));
/// let path = format!("/settings/api-tokens/tokens/{token}");
/// assert_eq!(redact_token_shaped(&path), "/settings/api-tokens/tokens/[redacted]");
/// // Token ids are public, and stay.
/// assert_eq!(redact_token_shaped("/admin/tokens/Zm9vYmFyYmF6cXV4cXV1"), "/admin/tokens/Zm9vYmFyYmF6cXV4cXV1");
/// ```
pub fn redact_token_shaped(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut redacted: Option<String> = None;
    // Bytes of `text` already copied into `redacted`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let mut characters = 0;
        // The run's first characters, decoded, to look for a prefix.
        let mut head = [0u8; MAX_PREFIX];
        while let Some((len, decoded)) = run_character(bytes, i) {
            if let Some(slot) = head.get_mut(characters) {
                *slot = decoded;
            }
            i += len;
            characters += 1;
        }
        if characters == 0 {
            // Not part of a run: an escape of another character as a whole
            // (`%2F`), or one byte (possibly inside a multi-byte character:
            // runs only start and end on ASCII, so slices stay on boundaries).
            i += if is_escape(bytes, i) { 3 } else { 1 };
        } else if characters >= MIN_SECRET_RUN || after_prefix(&head, characters) {
            let out = redacted.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = i;
        }
    }
    match redacted {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// Whether a run of `characters` starting with `head` has a prefix-like
/// start followed by at least [`MIN_AFTER_PREFIX`] characters.
fn after_prefix(head: &[u8; MAX_PREFIX], characters: usize) -> bool {
    if characters < MIN_AFTER_PREFIX + 2 || !head[0].is_ascii_lowercase() {
        return false;
    }
    head.iter()
        .take(characters)
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
        .enumerate()
        .any(|(at, b)| *b == b'_' && at >= 1 && characters - at > MIN_AFTER_PREFIX)
}

/// The run character at `i` (`A` or `%41`), if any: its length in bytes and
/// the character.
fn run_character(bytes: &[u8], i: usize) -> Option<(usize, u8)> {
    let byte = *bytes.get(i)?;
    if is_url_safe_base64(byte) {
        return Some((1, byte));
    }
    if byte != b'%' {
        return None;
    }
    let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
    let decoded = u8::from_str_radix(hex, 16).ok()?;
    is_url_safe_base64(decoded).then_some((3, decoded))
}

/// Whether a `%XX` escape starts at `i`.
fn is_escape(bytes: &[u8], i: usize) -> bool {
    bytes[i] == b'%'
        && bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
}

fn is_url_safe_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenFormat;

    fn token() -> String {
        TokenFormat::default()
            .generate()
            .token
            .expose_secret()
            .to_owned()
    }

    #[test]
    fn tokens_and_their_secret_parts_are_redacted_wherever_they_are() {
        let token = token();
        let secret = &token[24..68];
        let encoded: String = token.bytes().map(|b| format!("%{b:02X}")).collect();
        for (text, expected) in [
            (format!("/x/{token}"), "/x/[redacted]".to_owned()),
            (
                format!("/x/{token}/y?a=1"),
                "/x/[redacted]/y?a=1".to_owned(),
            ),
            (
                format!("token={token}&b={secret}"),
                "token=[redacted]&b=[redacted]".to_owned(),
            ),
            (token[4..].to_owned(), "[redacted]".to_owned()),
            // Made up or truncated, after a prefix.
            (
                "?access_token=iit_notarealtokeninthequery".to_owned(),
                "?access_token=[redacted]".to_owned(),
            ),
            (format!("/x/{}", &token[..30]), "/x/[redacted]".to_owned()),
            (
                "whsec_aGVsbG8gd29ybGQgc2VjcmV0".to_owned(),
                "[redacted]".to_owned(),
            ),
            (format!("é{secret}é"), "é[redacted]é".to_owned()),
            (format!("/x/{encoded}"), "/x/[redacted]".to_owned()),
            // An escaped `/` ends a run: both parts are still token-shaped.
            (
                format!("/x/{}%2F{}", &token[..30], &token[30..]),
                "/x/[redacted]%2F[redacted]".to_owned(),
            ),
        ] {
            assert_eq!(redact_token_shaped(&text), expected, "{text}");
            assert!(matches!(redact_token_shaped(&text), Cow::Owned(_)));
        }
    }

    #[test]
    fn ids_and_ordinary_text_are_kept_as_they_are() {
        let token = token();
        for text in [
            "/admin/tokens/".to_owned() + &token[4..24],
            "6f1c0b3e9a2d4c5b8e7f0a1b2c3d4e5f".to_owned(),
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6".to_owned(),
            "/settings/api-tokens/tokens?limit=10".to_owned(),
            "A".repeat(39),
            "/admin/accounts/acct_1/tokens".to_owned(),
            "/admin/audit?account_id=acct_1&action=token.created".to_owned(),
            "iit_".to_owned() + &token[4..24],
            "ab_cdefghijklmnopqrs".to_owned(),
            String::new(),
            "100%".to_owned(),
            "%zz%4".to_owned(),
        ] {
            assert!(
                matches!(redact_token_shaped(&text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
        assert_eq!(redact_token_shaped(&"A".repeat(40)), REDACTED);
    }
}
