//! The README's Rust snippets are the crate's doctests: each ```rust block
//! of README.md must be, line for line, the visible part of a doctest in
//! the library's documentation (which `cargo test` compiles and runs).

use std::path::Path;

/// The fenced code blocks of `text`: (info string, lines).
fn fenced(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => open = Some((info.trim(), Vec::new())),
            }
        } else if let Some((_, lines)) = &mut open {
            lines.push(line);
        }
    }
    blocks
}

/// Whether a block's info string makes it Rust (rustdoc's default is Rust).
fn is_rust(info: &str) -> bool {
    let lang = info.split(',').next().unwrap_or_default();
    lang.is_empty() || lang == "rust"
}

/// The doc-comment text (`//!` or `///`) of a source file, one line per line.
fn doc_text(source: &str) -> String {
    source
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            line.strip_prefix("//!")
                .or_else(|| line.strip_prefix("///"))
                .map(|rest| rest.strip_prefix(' ').unwrap_or(rest))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The visible lines of a doctest (rustdoc hides `# ` lines).
fn visible<'a>(block: &[&'a str]) -> Vec<&'a str> {
    block
        .iter()
        .copied()
        .filter(|line| !(line.trim_start().starts_with("# ") || line.trim() == "#"))
        .collect()
}

#[test]
fn readme_rust_snippets_are_compiled_doctests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut doctests = Vec::new();
    for file in ["src/lib.rs", "src/http/settings/mod.rs"] {
        let docs = doc_text(&std::fs::read_to_string(root.join(file)).unwrap());
        for (info, block) in fenced(&docs) {
            if is_rust(info) {
                doctests.push(visible(&block).join("\n"));
            }
        }
    }
    let snippets: Vec<_> = fenced(&readme)
        .into_iter()
        .filter(|(info, _)| info.starts_with("rust"))
        .map(|(_, lines)| lines)
        .collect();
    assert!(
        snippets.len() >= 2,
        "the README's Rust snippets were not found"
    );
    for snippet in snippets {
        let snippet = snippet.join("\n");
        assert!(
            doctests
                .iter()
                .any(|doctest| doctest.trim() == snippet.trim()),
            "this README snippet is not a doctest of the library (copy it from, or to, \
             src/lib.rs or settings_router's docs):\n{snippet}"
        );
    }
}
