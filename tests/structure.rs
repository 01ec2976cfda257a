//! The shape of `src/`, checked on every test run (the structure rules of the project):
//! - no import cycle between modules, at any depth: a module's `crate::` and `super::` paths
//!   (in `use` lines and in code) point only to modules that do not point back;
//! - the top-level modules keep to their layers ([`LAYERS`], the order `src/lib.rs` gives):
//!   a module uses modules of its own layer or below, never above;
//! - no file under `src/` over 500 lines;
//! - no function over 80 lines outside tests.
//!
//! The reader is deliberately small: rustfmt's layout (a function's closing brace at its
//! own indentation, test modules as `#[cfg(test)] mod tests` at a file's end or in a
//! `tests.rs`) is what it relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, bottom up (the map in `src/lib.rs` and `docs/architecture.md`).
const LAYERS: &[&[&str]] = &[
    &["host", "identity", "request"],
    &["authz"],
    &["config"],
    &["metrics", "tls", "upstream"],
    &["runtime"],
    &["conn", "routing"],
    &["access_log"],
    &["http"],
    &["server", "reload"],
    &["dev", "import"],
    &["cli"],
    &["bench"],
    &["commands"],
];

const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 80;

struct Module {
    /// The file's text without its test module and without comment lines.
    code: String,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rs_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files.sort();
    files
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → `` (the crate root).
fn module_path(file: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = file.strip_prefix(&src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn is_test_file(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "tests.rs")
        || file.components().any(|c| c.as_os_str() == "tests")
            && file.components().any(|c| c.as_os_str() == "src")
}

/// The text before a trailing `#[cfg(test)] mod tests`, without `//` comment lines.
fn production_code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn modules() -> BTreeMap<Vec<String>, Module> {
    let mut out = BTreeMap::new();
    for file in src_files() {
        // The binary's root is another crate (it names the library `gatehouse::`).
        if file.ends_with("src/main.rs") || is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        out.insert(
            module_path(&file),
            Module {
                code: production_code(&text),
            },
        );
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path a use-tree or expression names after `prefix::`: `a::b`, `a::{b, c::d}`.
fn paths_after(rest: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    paths_after(&group[start..i], base.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    paths_after(&group[start..i], base.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let name = ident_at(rest);
    if name.is_empty() || name == "self" {
        out.push(base);
        return;
    }
    let mut path = base;
    path.push(name.to_owned());
    match rest[name.len()..].strip_prefix("::") {
        Some(more) => paths_after(more, path, out),
        None => out.push(path),
    }
}

/// The modules `code` (of module `me`) refers to through `crate::` and `super::` paths.
fn references(me: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        paths_after(&code[at + "crate::".len()..], Vec::new(), &mut out);
    }
    for (at, _) in code.match_indices("super::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut base = me.to_vec();
        base.pop();
        let mut rest = &code[at + "super::".len()..];
        while let Some(more) = rest.strip_prefix("super::") {
            base.pop();
            rest = more;
        }
        paths_after(rest, base, &mut out);
    }
    out
}

/// The deepest module that `path` lies in (an item's path names its module first).
fn resolve<'m>(
    path: &[String],
    modules: &'m BTreeMap<Vec<String>, Module>,
) -> Option<&'m [String]> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k.as_slice()))
}

fn dependency_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (me, module) in &modules {
        let targets: BTreeSet<Vec<String>> = references(me, &module.code)
            .iter()
            .filter_map(|p| resolve(p, &modules))
            // A module may use its own items and its children's (it declares them).
            .filter(|t| !t.starts_with(me))
            .map(<[String]>::to_vec)
            .collect();
        graph.insert(me.clone(), targets);
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'g Vec<String>, (usize, usize)>,
        stack: Vec<&'g Vec<String>>,
        next: usize,
        found: Vec<Vec<Vec<String>>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g Vec<String>) -> usize {
            let mine = self.next;
            self.next += 1;
            self.index.insert(v, (mine, mine));
            self.stack.push(v);
            let mut low = mine;
            for w in &self.graph[v] {
                let w = self.graph.get_key_value(w).unwrap().0;
                match self.index.get(w) {
                    None => low = low.min(self.visit(w)),
                    Some(&(wi, _)) if self.stack.contains(&w) => low = low.min(wi),
                    Some(_) => {}
                }
            }
            self.index.insert(v, (mine, low));
            if low == mine {
                let at = self.stack.iter().position(|x| *x == v).unwrap();
                let comp: Vec<Vec<String>> = self.stack.drain(at..).cloned().collect();
                if comp.len() > 1 {
                    self.found.push(comp);
                }
            }
            low
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = dependency_graph();
    assert!(
        graph.len() > 30,
        "the reader found {} modules: is src/ where it looks?",
        graph.len()
    );
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edges > 50, "the reader found only {edges} dependencies");
    let found = cycles(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|comp| {
            let inner: Vec<String> = comp
                .iter()
                .map(|m| {
                    let back: Vec<String> = graph[m]
                        .iter()
                        .filter(|t| comp.contains(t))
                        .map(|t| name(t))
                        .collect();
                    format!("  {} -> {}", name(m), back.join(", "))
                })
                .collect();
            inner.join("\n")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles:\n{}",
        report.join("\n---\n")
    );
}

#[test]
fn top_level_modules_use_only_their_own_layer_and_below() {
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let graph = dependency_graph();
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        let Some(top) = from.first() else { continue };
        let Some(mine) = layer(top) else {
            wrong.push(format!(
                "{top}: not in LAYERS (place it in tests/structure.rs and lib.rs)"
            ));
            continue;
        };
        for t in targets {
            let Some(target) = t.first() else { continue };
            if layer(target).is_some_and(|theirs| theirs > mine) {
                wrong.push(format!("{} uses {} (a layer above)", name(from), name(t)));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_cycle_reader_sees_a_cycle() {
    // The reader itself, on a made-up crate: a → b → a is found, c → a is not a cycle.
    let me = |s: &str| vec![s.to_owned()];
    let mut graph = BTreeMap::new();
    let refs = |m: &str, code: &str| -> BTreeSet<Vec<String>> {
        references(&me(m), code)
            .into_iter()
            .map(|p| p[..1].to_vec())
            .filter(|t| *t != me(m))
            .collect()
    };
    graph.insert(me("a"), refs("a", "use crate::b::{X, y::Z};"));
    graph.insert(me("b"), refs("b", "fn f() { super::a::g() }"));
    graph.insert(me("c"), refs("c", "use crate::{a, b as B};"));
    assert_eq!(graph[&me("c")], [me("a"), me("b")].into());
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].iter().cloned().collect::<BTreeSet<_>>(),
        [me("a"), me("b")].into()
    );
}

#[test]
fn no_source_file_over_500_lines() {
    let long: Vec<String> = src_files()
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// `(name, first line, line count)` of every function with a body in `code`.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(at) = trimmed.find("fn ") else {
            continue;
        };
        let head = &trimmed[..at];
        let is_fn = head.split_whitespace().all(|w| {
            matches!(w, "pub" | "async" | "const" | "unsafe" | "extern" | "\"C\"")
                || w.starts_with("pub(")
        });
        if !is_fn {
            continue;
        }
        let fn_name = ident_at(&trimmed[at + 3..]).to_owned();
        // One-line functions, and declarations without a body.
        if trimmed.ends_with('}') || trimmed.ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (i + 1..lines.len()).find(|&j| lines[j] == close) {
            out.push((fn_name, i + 1, end - i + 1));
        }
    }
    out
}

#[test]
fn no_function_over_80_lines_outside_tests() {
    let mut long = Vec::new();
    let mut seen = 0;
    for file in src_files() {
        if is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let end = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
        for (name, line, count) in functions(&text[..end]) {
            seen += 1;
            if count > MAX_FN_LINES {
                long.push(format!(
                    "{}:{line}: fn {name}: {count} lines",
                    file.display()
                ));
            }
        }
    }
    assert!(seen > 300, "the reader found only {seen} functions");
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_reader_counts_lines() {
    let code = "fn a() {\n    x();\n}\n\n    pub(crate) async fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\nfn c() -> u8 { 1 }\n";
    assert_eq!(
        functions(code),
        vec![("a".to_owned(), 1, 3), ("b".to_owned(), 5, 5)]
    );
}
