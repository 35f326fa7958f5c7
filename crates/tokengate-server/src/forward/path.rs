//! The requested path as the upstream will see it, or a refusal: the one
//! normalization that both the route patterns and every request go through.
//!
//! An upstream decodes `%XX`, may treat `;` as a parameter, `\` as `/`,
//! `.` and `..` as steps, `//` as `/`, and may compare paths without regard
//! to case. Guessing which of these it does is how a scoped route gets
//! reached without its scope, so a path that would mean something different
//! under any of them is refused, and what is left is compared in lower case
//! (a case trick then reaches the same rule, scope and all).

/// Why a requested path is refused; the message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmbiguousPath {
    /// Not an absolute path (`/...`).
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    /// An escaped `/`, `\`, `%`, `;`, `?` or `#`, or a raw `#`.
    #[error("the path has a reserved character ('#', %2F, %5C, %25, %3B, %3F, %23)")]
    EncodedReserved,
    /// `\` (some servers read it as `/`).
    #[error("the path has a backslash")]
    Backslash,
    /// A `;` parameter (some servers strip it).
    #[error("the path has a ';' parameter")]
    Parameter,
    /// A `.` or `..` segment (also escaped).
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    /// An empty segment (`//`).
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
    /// A byte outside printable ASCII (also escaped).
    #[error("the path has a character outside printable ASCII")]
    NotAscii,
}

/// The path of `uri` (an origin-form request target, query allowed),
/// decoded and lower-cased, or why it is refused. A trailing `/` is
/// dropped (`/a/` is matched as `/a`), so an upstream that ignores it
/// reaches the same rule.
pub fn normalize(uri: &str) -> Result<String, AmbiguousPath> {
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    if !path.starts_with('/') {
        return Err(AmbiguousPath::NotAbsolute);
    }
    let decoded = decode(path)?;
    let mut normalized = String::with_capacity(decoded.len());
    let trimmed = decoded.strip_suffix('/').unwrap_or(&decoded);
    for segment in trimmed.split('/').skip(1) {
        match segment {
            "" => return Err(AmbiguousPath::EmptySegment),
            "." | ".." => return Err(AmbiguousPath::DotSegment),
            _ => {}
        }
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    Ok(normalized)
}

/// `%XX` decoded, lower-cased; reserved characters refused, raw or escaped.
fn decode(path: &str) -> Result<String, AmbiguousPath> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let (byte, escaped) = if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(AmbiguousPath::BadEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| AmbiguousPath::BadEscape)?;
            let value = u8::from_str_radix(hex, 16).map_err(|_| AmbiguousPath::BadEscape)?;
            i += 3;
            (value, true)
        } else {
            i += 1;
            (byte, false)
        };
        match byte {
            b'/' | b'%' | b'?' | b'#' | b';' | b'\\' if escaped => {
                return Err(AmbiguousPath::EncodedReserved);
            }
            b'\\' => return Err(AmbiguousPath::Backslash),
            b';' => return Err(AmbiguousPath::Parameter),
            b'#' => return Err(AmbiguousPath::EncodedReserved),
            0x21..=0x7e => out.push(char::from(byte.to_ascii_lowercase())),
            _ => return Err(AmbiguousPath::NotAscii),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_paths_are_lower_cased_without_query_or_trailing_slash() {
        assert_eq!(
            normalize("/api/v1/Reports?x=/admin").unwrap(),
            "/api/v1/reports"
        );
        assert_eq!(normalize("/api/v1/reports/").unwrap(), "/api/v1/reports");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/?q").unwrap(), "/");
        assert_eq!(normalize("/a%41%2d").unwrap(), "/aa-");
    }

    #[test]
    fn every_trick_is_refused() {
        use AmbiguousPath::*;
        let cases = [
            ("/api/v1/admin%2Fx", EncodedReserved),
            ("/api/v1/admin%2fx", EncodedReserved),
            ("/api/v1%5Cadmin", EncodedReserved),
            ("/api/v1\\admin", Backslash),
            ("/api/v1/./admin", DotSegment),
            ("/api/v1/x/../admin", DotSegment),
            ("/api/v1/%2e%2e/admin", DotSegment),
            ("/api/v1/.%2E/admin", DotSegment),
            ("/api/v1/admin/.", DotSegment),
            ("/api/v1//admin", EmptySegment),
            ("//api/v1/admin", EmptySegment),
            ("/api/v1/admin;x=1", Parameter),
            ("/api/v1;/admin", Parameter),
            ("/api/v1/admin%3Bx", EncodedReserved),
            ("/api/v1/admin%252F", EncodedReserved),
            ("/api/v1/admin%", BadEscape),
            ("/api/v1/admin%zz", BadEscape),
            ("/api/v1/admin%00", NotAscii),
            ("/api/v1/adm\u{0131}n", NotAscii),
            ("/api/v1/admin%C4%B1", NotAscii),
            ("/api/v1/ad min", NotAscii),
            ("api/v1/admin", NotAbsolute),
            ("http://host/api/v1/admin", NotAbsolute),
            ("*", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (path, why) in cases {
            assert_eq!(normalize(path), Err(why), "{path}");
        }
    }

    proptest! {
        /// What is accepted is already normal: no escape, no dot or empty
        /// segment, no reserved character, lower case, and stable.
        #[test]
        fn accepted_paths_are_normal(path in "/[a-zA-Z0-9%./;\\\\_~-]{0,24}") {
            if let Ok(normal) = normalize(&path) {
                prop_assert!(normal.starts_with('/'));
                prop_assert!(!normal.contains(['%', ';', '\\']));
                prop_assert!(!normal.contains("//"));
                prop_assert!(normal == "/" || !normal.ends_with('/'));
                prop_assert!(!normal.split('/').any(|s| s == "." || s == ".."));
                prop_assert_eq!(normal.to_ascii_lowercase(), normal.clone());
                prop_assert_eq!(normalize(&normal), Ok(normal.clone()));
            }
        }
    }
}
