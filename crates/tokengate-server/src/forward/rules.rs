//! Scopes per route (`FORWARD_AUTH_ROUTES`): a TOML file of `[[route]]`
//! tables, the first match wins.
//!
//! ```toml
//! [[route]]
//! path = "/api/v1/reports/**"   # `*` one segment, `**` the rest (or nothing)
//! methods = ["GET"]             # optional: every method when absent
//! scopes = ["reports:read"]     # every one of them is needed
//! ```
//!
//! A path no rule matches needs a valid token and no scope. Patterns and
//! requests go through the same normalization (`path.rs`): case does not
//! matter, a trailing `/` neither. A rule for `GET` covers `HEAD` too (most
//! frameworks answer `HEAD` with the `GET` handler).

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::path::normalize;

/// The route rules, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteRules {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    pattern: Vec<Segment>,
    /// Upper case; `None`: every method.
    methods: Option<Vec<String>>,
    scopes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: the rest of the path, possibly nothing.
    Rest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    route: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: Spanned<String>,
    methods: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
}

impl RouteRules {
    /// The rules of the file at `path`; the error names the file, the line
    /// and the fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read FORWARD_AUTH_ROUTES {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| format!("invalid FORWARD_AUTH_ROUTES {}: {e}", path.display()))
    }

    /// The rules in `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            let message = e.message().trim_end();
            let fix = "each rule is a [[route]] table with path = \"/...\", optional methods = [\"GET\", ...] and scopes = [\"name\", ...]";
            match line {
                Some(line) => format!("line {line}: {message}; {fix}"),
                None => format!("{message}; {fix}"),
            }
        })?;
        let rules = file
            .route
            .into_iter()
            .map(|raw| Rule::parse(raw, text))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Every scope the rules name, once each.
    pub fn scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self
            .rules
            .iter()
            .flat_map(|rule| rule.scopes.iter().cloned())
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The scopes a request needs: those of the first rule matching
    /// `method` and `normalized_path` (from [`normalize`]), none if no
    /// rule matches.
    pub fn required_scopes(&self, method: &str, normalized_path: &str) -> &[String] {
        let segments: Vec<&str> = normalized_path
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        self.rules
            .iter()
            .find(|rule| rule.covers_method(method) && rule.matches(&segments))
            .map_or(&[], |rule| &rule.scopes)
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Rule {
    fn parse(raw: RawRule, text: &str) -> Result<Self, String> {
        let at = |span: std::ops::Range<usize>| line_of(text, span.start);
        let pattern = parse_pattern(raw.path.get_ref()).map_err(|e| {
            format!(
                "line {}: path {:?}: {e}",
                at(raw.path.span()),
                raw.path.get_ref()
            )
        })?;
        let methods = match raw.methods {
            None => None,
            Some(methods) => {
                let line = at(methods.span());
                let methods = methods.into_inner();
                if methods.is_empty() {
                    return Err(format!(
                        "line {line}: methods is empty: leave it out for every method, or name them, e.g. methods = [\"GET\"]"
                    ));
                }
                let mut upper = Vec::with_capacity(methods.len());
                for method in methods {
                    let name = method.get_ref().to_ascii_uppercase();
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err(format!(
                            "line {}: {:?} is not an HTTP method: use names such as \"GET\" or \"POST\"",
                            at(method.span()),
                            method.get_ref()
                        ));
                    }
                    upper.push(name);
                }
                Some(upper)
            }
        };
        let mut scopes = Vec::with_capacity(raw.scopes.len());
        for scope in raw.scopes {
            if !tokengate::__private::is_valid_scope(scope.get_ref()) {
                return Err(format!(
                    "line {}: scope {:?} is not a valid name: use 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-'",
                    at(scope.span()),
                    scope.get_ref()
                ));
            }
            scopes.push(scope.into_inner());
        }
        Ok(Self {
            pattern,
            methods,
            scopes,
        })
    }

    fn covers_method(&self, method: &str) -> bool {
        let Some(methods) = &self.methods else {
            return true;
        };
        methods.iter().any(|m| {
            m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
        })
    }

    fn matches(&self, segments: &[&str]) -> bool {
        let mut rest = segments;
        for (i, segment) in self.pattern.iter().enumerate() {
            match segment {
                Segment::Rest => return i + 1 == self.pattern.len(),
                Segment::One => match rest.split_first() {
                    Some((_, tail)) => rest = tail,
                    None => return false,
                },
                Segment::Literal(literal) => match rest.split_first() {
                    Some((first, tail)) if first == literal => rest = tail,
                    _ => return false,
                },
            }
        }
        rest.is_empty()
    }
}

/// A path pattern, normalized like a request path.
fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let normal = normalize(pattern).map_err(|e| {
        format!("{e}; write the path as the upstream routes it, e.g. \"/api/v1/reports/*\"")
    })?;
    if pattern.contains('?') {
        return Err("a pattern has no query ('?')".into());
    }
    let parts: Vec<&str> = normal
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match *part {
            "**" if i == last => Ok(Segment::Rest),
            "**" => Err("'**' (the rest of the path) can only be the last segment".into()),
            "*" => Ok(Segment::One),
            part if part.contains('*') => Err(format!(
                "segment {part:?}: '*' stands for a whole segment (\"/a/*/b\"), not part of one"
            )),
            part => Ok(Segment::Literal(part.to_owned())),
        })
        .collect()
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RULES: &str = r#"
[[route]]
path = "/api/v1/admin/**"
scopes = ["admin:all"]

[[route]]
path = "/api/v1/reports/*"
methods = ["GET"]
scopes = ["reports:read"]

[[route]]
path = "/api/v1/reports/*"
methods = ["post", "DELETE"]
scopes = ["reports:write", "reports:read"]

[[route]]
path = "/api/v1/public"
"#;

    fn rules() -> RouteRules {
        RouteRules::parse(RULES).unwrap()
    }

    /// What a request needs, through the same normalization as the server.
    fn needs(method: &str, uri: &str) -> Option<Vec<String>> {
        normalize(uri)
            .ok()
            .map(|path| rules().required_scopes(method, &path).to_vec())
    }

    #[test]
    fn first_match_wins_and_unmatched_paths_need_no_scope() {
        let rules = rules();
        assert_eq!(rules.len(), 4);
        assert_eq!(
            rules.scopes(),
            ["admin:all", "reports:read", "reports:write"]
        );
        assert_eq!(needs("GET", "/api/v1/admin").unwrap(), ["admin:all"]);
        assert_eq!(needs("PUT", "/api/v1/admin/a/b/c").unwrap(), ["admin:all"]);
        assert_eq!(needs("GET", "/api/v1/reports/7").unwrap(), ["reports:read"]);
        assert_eq!(
            needs("HEAD", "/api/v1/reports/7").unwrap(),
            ["reports:read"]
        );
        assert_eq!(
            needs("POST", "/api/v1/reports/7?x=1").unwrap(),
            ["reports:write", "reports:read"]
        );
        // No rule: a valid token, no scope.
        assert!(needs("PATCH", "/api/v1/reports/7").unwrap().is_empty());
        assert!(needs("GET", "/api/v1/reports").unwrap().is_empty());
        assert!(needs("GET", "/api/v1/reports/7/pages").unwrap().is_empty());
        assert!(needs("GET", "/api/v1/public").unwrap().is_empty());
        assert!(needs("GET", "/").unwrap().is_empty());
    }

    /// Each trick against a scoped rule either needs the scope or is refused.
    #[test]
    fn no_trick_reaches_a_scoped_route_without_its_scope() {
        let tricks = [
            "/API/v1/Admin/users",
            "/api/v1/admin/",
            "/api/v1/admin%2Fusers",
            "/api/v1/%61dmin/users",
            "/api/v1//admin/users",
            "//api/v1/admin",
            "/api/v1/./admin/users",
            "/api/v1/public/../admin/users",
            "/api/v1/public/%2e%2e/admin",
            "/api/v1/admin;jsessionid=1/users",
            "/api/v1/admin%3B/users",
            "/api/v1\\admin\\users",
            "/api/v1/admin%5Cusers",
            "/api/v1/admin%252Fusers",
            "/api/v1/adm%C4%B1n",
            "/api/v1/admin#frag",
        ];
        for trick in tricks {
            match needs("GET", trick) {
                None => {}
                Some(scopes) => assert_eq!(scopes, ["admin:all"], "{trick}"),
            }
        }
    }

    #[test]
    fn a_malformed_file_names_the_line_and_the_fix() {
        let cases = [
            ("[[route]]\npath = 3\n", "line 2"),
            ("[[route]]\npath = \"/a\"\nscope = [\"x\"]\n", "line 3"),
            ("[[route]]\npath = \"/a/**/b\"\n", "line 2"),
            ("[[route]]\npath = \"/a/b*\"\n", "line 2"),
            ("[[route]]\npath = \"a\"\n", "line 2"),
            ("[[route]]\npath = \"/a/../b\"\n", "line 2"),
            (
                "\n[[route]]\npath = \"/a\"\nmethods = [\"G T\"]\n",
                "line 4",
            ),
            ("[[route]]\npath = \"/a\"\nmethods = []\n", "line 3"),
            (
                "[[route]]\npath = \"/a\"\n\nscopes = [\"ok\", \"Not Valid\"]\n",
                "line 4",
            ),
            ("[[route]\npath = \"/a\"\n", "line 1"),
        ];
        for (text, line) in cases {
            let error = RouteRules::parse(text).unwrap_err();
            assert!(error.contains(line), "{text:?}: {error}");
        }
        let error = RouteRules::parse("[[route]]\npath = \"/a/**/b\"\n").unwrap_err();
        assert!(error.contains("'**'"), "{error}");
        assert!(RouteRules::parse("").unwrap().is_empty());
    }

    proptest! {
        /// `**` matches its prefix and everything below; `*` exactly one segment.
        #[test]
        fn wildcards_match_what_they_say(
            prefix in prop::collection::vec("[a-z0-9]{1,5}", 0..4),
            rest in prop::collection::vec("[a-z0-9]{1,5}", 0..4),
        ) {
            let base = format!("/{}", prefix.join("/"));
            let rules = RouteRules::parse(&format!(
                "[[route]]\npath = \"{}/**\"\nscopes = [\"s\"]\n[[route]]\npath = \"{}/*\"\nscopes = [\"t\"]\n",
                base.trim_end_matches('/'), base.trim_end_matches('/'),
            )).unwrap();
            let mut path = base.clone();
            for part in &rest {
                if !path.ends_with('/') { path.push('/'); }
                path.push_str(part);
            }
            let normal = normalize(&path).unwrap();
            prop_assert_eq!(rules.required_scopes("GET", &normal), ["s".to_owned()]);
            let one = RouteRules::parse(&format!(
                "[[route]]\npath = \"{}/*\"\nscopes = [\"t\"]\n", base.trim_end_matches('/'),
            )).unwrap();
            let expected: &[String] = if rest.len() == 1 { &["t".to_owned()] } else { &[] };
            prop_assert_eq!(one.required_scopes("GET", &normal), expected);
        }
    }
}
