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
        "if manager.account(\"acct_42\").await?.is_none() {",
    ] {
        assert!(embed.contains(needed), "{needed} is not in:\n{embed}");
    }
}

/// Every `$VARIABLE` a README shell block uses was set earlier in the README
/// (a newcomer pastes the blocks in order), except the few it says to bring.
#[test]
fn readme_shell_variables_are_set_before_use() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // Brought by the reader, as the README says where they are used.
    // `PWD` is the shell's own.
    let mut set: Vec<String> = ["GITHUB_TOKEN", "HOME", "PWD"].map(String::from).to_vec();
    let name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    for (info, lines) in fenced(&readme) {
        if !matches!(info, "sh" | "bash" | "shell") {
            continue;
        }
        for line in lines {
            let code = line.split(" # ").next().unwrap_or_default();
            // Uses first: `A=$(cmd $A)` needs A from before.
            for (at, _) in code.match_indices('$') {
                let rest = code[at + 1..].trim_start_matches('{');
                let name: String = rest.chars().take_while(|&c| name_char(c)).collect();
                if name.len() > 1 && !name.starts_with(|c: char| c.is_ascii_digit()) {
                    assert!(
                        set.contains(&name),
                        "${name} is used before the README sets it: {line}"
                    );
                }
            }
            for word in code.split_whitespace() {
                if let Some((name, _)) = word.split_once('=')
                    && !name.is_empty()
                    && name.chars().all(name_char)
                {
                    set.push(name.to_owned());
                }
            }
        }
    }
}

/// The configuration table lists each variable once, and `.env.example`
/// gives the admin token the same minimum; the lock file a server keeps is
/// ignored by git; the quick start names what the browser tests need.
#[test]
fn readme_configuration_and_setup_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("## Configuration").unwrap()..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    let mut variables: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    let listed = variables.len();
    assert!(listed > 20, "{variables:?}");
    variables.sort_unstable();
    variables.dedup();
    assert_eq!(variables.len(), listed, "a variable is listed twice");

    let admin_row = section
        .lines()
        .find(|line| line.starts_with("| `ADMIN_TOKEN`"))
        .unwrap();
    let minimum = |text: &str, after: &str| -> u32 {
        let rest = &text[text.find(after).unwrap() + after.len()..];
        let digits: String = rest
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    assert_eq!(
        minimum(admin_row, "≥"),
        minimum(&example, "at least"),
        "ADMIN_TOKEN's minimum differs between the README and .env.example"
    );

    let ignored = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    for pattern in ["*.db", "*.db-wal", "*.db-shm", "*.db.lock"] {
        assert!(
            ignored.lines().any(|line| line == pattern),
            "{pattern} is not in .gitignore"
        );
    }

    let quick_start = &readme[readme.find("## Quick start").unwrap()..];
    let quick_start = &quick_start[..quick_start[3..].find("\n## ").unwrap()];
    assert!(
        quick_start.contains("chromium-driver"),
        "the quick start does not name the browser tests' chromium-driver"
    );
}
