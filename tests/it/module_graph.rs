//! The library's top-level modules depend on each other one way: counting
//! `crate::<module>` references (and `use crate::{a, b::c}` groups, and
//! names the crate root re-exports, such as `crate::TokenGate`) between
//! them finds no cycle. A cycle fails the test and is printed, with the
//! files that make each edge.
//!
//! Test code (`#[cfg(test)] mod ...` to the end of a file) is left out:
//! a test may use what sits above the module it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module -> module it refers to -> files that refer.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() >= 10,
        "expected the library's modules under {}, found {:?}",
        src.display(),
        graph.keys().collect::<Vec<_>>()
    );
    if let Some(cycle) = find_cycle(&graph) {
        let mut edges = String::new();
        for pair in cycle.windows(2) {
            let files = &graph[&pair[0]][&pair[1]];
            edges.push_str(&format!("\n  {} -> {}  ({:?})", pair[0], pair[1], files));
        }
        panic!(
            "the library's modules form a cycle: {}{edges}\nmove the shared type to the lower module (or a leaf)",
            cycle.join(" -> ")
        );
    }
}

/// The check finds a cycle when there is one, and reads `use` groups.
#[test]
fn the_module_graph_check_finds_a_planted_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("lib.rs", "mod a;\nmod b;\nmod c;\npub use c::Thing;\n");
    write("a.rs", "use crate::{b::X, token};\n");
    write("b.rs", "fn f() -> crate::Thing { todo!() }\n");
    write(
        "c.rs",
        "// crate::a in a comment does not count\nuse crate::{\n    a::{self, Y},\n};\n",
    );
    write("token.rs", "");
    let graph = module_graph(dir.path());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );

    write(
        "c.rs",
        "#[cfg(test)]\nmod tests {\n    use crate::a::Y;\n}\n",
    );
    assert_eq!(find_cycle(&module_graph(dir.path())), None);
}

fn module_graph(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let stem = path.file_stem()?.to_str()?.to_owned();
            (path.is_dir() || path.extension()? == "rs").then_some(stem)
        })
        .filter(|name| name != "lib")
        .collect();
    let reexports = root_reexports(&lib);
    let mut graph = Graph::new();
    for module in &modules {
        graph.entry(module.clone()).or_default();
    }
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let Some(first) = relative.iter().next().and_then(|c| c.to_str()) else {
            continue;
        };
        let from = first.trim_end_matches(".rs");
        if !modules.contains(from) {
            continue;
        }
        let text = non_test_code(&std::fs::read_to_string(&file).unwrap());
        for name in crate_references(&text) {
            let to = if modules.contains(&name) {
                name
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                continue;
            };
            if to != from {
                graph
                    .entry(from.to_owned())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(relative.display().to_string());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// `pub use module::{A, B}` in the crate root: name -> module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let lib = without_comments(lib);
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !item.is_empty() {
                names.insert(item.to_owned(), module.trim().to_owned());
            }
        }
    }
    names
}

/// The code before the first `#[cfg(test)]` module, without comments.
fn non_test_code(text: &str) -> String {
    let mut kept = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        kept.push(line);
    }
    without_comments(&kept.join("\n"))
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment after each `crate::`, and each top-level name of
/// a `crate::{...}` group.
fn crate_references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut at_item_start = true;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_item_start = true,
                    c if at_item_start && (c.is_alphanumeric() || c == '_') => item.push(c),
                    _ if at_item_start && !item.is_empty() => {
                        names.push(std::mem::take(&mut item));
                        at_item_start = false;
                    }
                    _ => {}
                }
            }
            if !item.is_empty() {
                names.push(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// A cycle in `graph` (its first module repeated at the end), if any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// No type's inherent `impl` blocks are spread over more than two files,
/// and no type has more than 20 public methods (test hooks included): a
/// type that does more is several owners in one.
#[test]
fn types_have_one_home_and_a_small_surface() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut public_methods: BTreeMap<String, usize> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        let text = non_test_code(&std::fs::read_to_string(&file).unwrap());
        for (name, methods) in inherent_impls(&text) {
            files_of
                .entry(name.clone())
                .or_default()
                .insert(relative.clone());
            *public_methods.entry(name).or_default() += methods;
        }
    }
    assert!(
        files_of.contains_key("TokenGate") && files_of.contains_key("Manager"),
        "the impls were not found: {files_of:?}"
    );
    let spread: Vec<_> = files_of.iter().filter(|(_, f)| f.len() > 2).collect();
    assert!(
        spread.is_empty(),
        "impl blocks spread over more than two files: {spread:?}"
    );
    let large: Vec<_> = public_methods.iter().filter(|(_, n)| **n > 20).collect();
    assert!(
        large.is_empty(),
        "types with more than 20 public methods: {large:?}"
    );
}

/// Each top-level inherent `impl Type {` (not `impl Trait for Type`) in
/// `text`: the type's name and how many `pub fn`s the block holds.
fn inherent_impls(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for line in text.lines() {
        if let Some((_, methods)) = current.as_mut() {
            if line == "}" {
                found.extend(current.take());
            } else if ["    pub fn ", "    pub async fn ", "    pub const fn "]
                .iter()
                .any(|start| line.starts_with(start))
            {
                *methods += 1;
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("impl") else {
            continue;
        };
        if !line.ends_with('{') || line.contains(" for ") {
            continue;
        }
        let rest = match rest.strip_prefix('<') {
            Some(generic) => generic.split_once("> ").map_or("", |(_, name)| name),
            None => rest.trim_start(),
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            current = Some((name, 0));
        }
    }
    found
}

#[test]
fn inherent_impls_are_found_with_their_public_methods() {
    let text = "impl Gate {\n    pub fn a() {}\n    pub(crate) fn b() {}\n    pub async fn c() {}\n}\n\
                impl<'m> Management<'m> {\n    pub const fn d() {}\n}\n\
                impl std::fmt::Debug for Gate {\n    pub fn e() {}\n}\n";
    assert_eq!(
        inherent_impls(text),
        vec![("Gate".to_owned(), 2), ("Management".to_owned(), 1)]
    );
}
