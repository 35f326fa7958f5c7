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

/// What a newcomer pastes from the README does what it says: `cargo install`
/// builds with the tested dependency versions (`--locked`; without it cargo
/// ignores Cargo.lock and resolves anew), and the embedding snippet is a
/// whole program that prints where it listens.
#[test]
fn readme_installs_locked_and_its_library_snippet_is_a_program() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let installs: Vec<&str> = readme
        .lines()
        .filter(|line| line.trim_start().starts_with("cargo install"))
        .collect();
    assert!(!installs.is_empty(), "no install line in the README");
    for line in installs {
        assert!(line.contains(" --locked "), "not locked: {line}");
    }
    let embed = fenced(&readme)
        .into_iter()
        .find(|(info, lines)| {
            info.starts_with("rust") && lines.join("\n").contains("spawn_maintenance")
        })
        .expect("the embedding snippet")
        .1
        .join("\n");
    for needed in [
        "#[tokio::main]",
        "async fn main()",
        "println!(\"listening on http://{}\", listener.local_addr()?);",
        "if gate.account(\"acct_42\").await?.is_none() {",
    ] {
        assert!(embed.contains(needed), "{needed} is not in:\n{embed}");
    }
}
