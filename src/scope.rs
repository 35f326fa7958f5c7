//! Scopes: what a token may do. A token carries a set of scope names
//! chosen at creation (`[a-z0-9_.:-]`, 1–64 characters, at most 32), or
//! every scope (`*`). This module owns the names and their rules
//! (validation against the declared scopes, the stored form); it knows
//! nothing of requests. The route layer that requires a scope is
//! `require_scope.rs`.

use std::sync::Arc;

/// The scope that stands for every scope.
pub(crate) const ALL: &str = "*";
/// Most scopes one token may carry.
pub(crate) const MAX_SCOPES: usize = 32;
/// Longest scope name.
const MAX_SCOPE_CHARS: usize = 64;

/// A token's scopes: every scope, or a sorted set of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scopes {
    All,
    Only(Arc<[Box<str>]>),
}

/// Why a requested set of scopes is refused; the message names the scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScopeError {
    #[error(
        "scope {0:?} is not a valid name: use 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-'"
    )]
    Malformed(String),
    #[error("unknown scope {scope:?}; known scopes: {known}")]
    Unknown { scope: String, known: String },
    #[error("a token can carry at most {MAX_SCOPES} scopes")]
    TooMany,
    #[error("scopes must not be empty: leave them out for a token with every scope")]
    Empty,
    #[error("\"*\" (every scope) cannot be combined with other scopes")]
    AllAndMore,
}

/// Whether `name` is a well-formed scope name. `const`, so
/// `require_scope!` checks its scope when the program compiles.
pub(crate) const fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_SCOPE_CHARS {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-'))
        {
            return false;
        }
        i += 1;
    }
    true
}

impl Scopes {
    /// The scopes a new token asks for: `None` is every scope; otherwise
    /// each must be well formed and one of `known`.
    pub(crate) fn requested(
        requested: Option<&[String]>,
        known: &[String],
    ) -> Result<Self, ScopeError> {
        let Some(requested) = requested else {
            return Ok(Scopes::All);
        };
        match requested {
            [] => return Err(ScopeError::Empty),
            [only] if only == ALL => return Ok(Scopes::All),
            _ if requested.iter().any(|s| s == ALL) => return Err(ScopeError::AllAndMore),
            _ => {}
        }
        let mut names: Vec<Box<str>> = Vec::with_capacity(requested.len());
        for scope in requested {
            if !is_valid_name(scope) {
                let shown: String = scope.chars().take(MAX_SCOPE_CHARS + 1).collect();
                return Err(ScopeError::Malformed(shown));
            }
            if !known.iter().any(|k| k == scope) {
                let known = if known.is_empty() {
                    "none are declared".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(ScopeError::Unknown {
                    scope: scope.clone(),
                    known,
                });
            }
            names.push(scope.as_str().into());
        }
        names.sort();
        names.dedup();
        if names.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        Ok(Scopes::Only(names.into()))
    }

    /// Scopes as stored (`["*"]` or the names); anything unreadable grants nothing.
    pub(crate) fn from_names(names: &[String]) -> Self {
        if names.iter().any(|n| n == ALL) {
            return Scopes::All;
        }
        let mut names: Vec<Box<str>> = names
            .iter()
            .filter(|n| is_valid_name(n))
            .map(|n| n.as_str().into())
            .collect();
        names.sort();
        names.dedup();
        Scopes::Only(names.into())
    }

    /// The names, `["*"]` for every scope.
    pub(crate) fn names(&self) -> Vec<String> {
        match self {
            Scopes::All => vec![ALL.to_owned()],
            Scopes::Only(names) => names.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// Whether these scopes include `scope`.
    pub(crate) fn allows(&self, scope: &str) -> bool {
        match self {
            Scopes::All => true,
            Scopes::Only(names) => names.binary_search_by(|n| (**n).cmp(scope)).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["providers:read".into(), "tests:read".into()]
    }

    #[test]
    fn requested_scopes_are_checked_sorted_and_deduplicated() {
        assert_eq!(Scopes::requested(None, &known()), Ok(Scopes::All));
        assert_eq!(
            Scopes::requested(Some(&["*".into()]), &known()),
            Ok(Scopes::All)
        );
        let scopes = Scopes::requested(
            Some(&[
                "tests:read".into(),
                "providers:read".into(),
                "tests:read".into(),
            ]),
            &known(),
        )
        .unwrap();
        assert_eq!(scopes.names(), ["providers:read", "tests:read"]);
        assert!(scopes.allows("tests:read") && !scopes.allows("tests:write"));
        assert!(Scopes::All.allows("anything"));
        for (bad, expected) in [
            (vec![], ScopeError::Empty),
            (
                vec!["*".into(), "tests:read".into()],
                ScopeError::AllAndMore,
            ),
            (vec!["Tests".into()], ScopeError::Malformed("Tests".into())),
            (
                vec!["tests:write".into()],
                ScopeError::Unknown {
                    scope: "tests:write".into(),
                    known: "providers:read, tests:read".into(),
                },
            ),
        ] {
            assert_eq!(Scopes::requested(Some(&bad), &known()), Err(expected));
        }
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert_eq!(
            Scopes::requested(Some(&many), &many),
            Err(ScopeError::TooMany)
        );
        assert!(Scopes::requested(Some(&many[..32]), &many).is_ok());
    }

    #[test]
    fn names_are_bounded_to_the_documented_alphabet() {
        assert!(is_valid_name("a") && is_valid_name("x.y:z-1_2"));
        assert!(is_valid_name(&"a".repeat(64)) && !is_valid_name(&"a".repeat(65)));
        for bad in ["", "A", "a b", "a/b", "é", "*"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn stored_names_round_trip_and_garbage_grants_nothing() {
        let scopes = Scopes::from_names(&["b".into(), "a".into()]);
        assert_eq!(scopes.names(), ["a", "b"]);
        assert_eq!(Scopes::from_names(&["*".into()]), Scopes::All);
        let junk = Scopes::from_names(&["NOT VALID".into()]);
        assert!(!junk.allows("NOT VALID"));
    }
}
