//! The configuration reference cannot drift from the loader: every key in
//! `docs/configuration.md`'s tables is a key the loader accepts, and every key the loader
//! accepts has a row. The loader is asked, not the source: each table is probed with an
//! unknown key, and its `unknown field ..., expected one of ...` answer lists the table's keys.

use std::collections::BTreeSet;
use std::path::Path;

const PROBE: &str = "zzz_probe";

/// How a key's value is written when it holds a table.
#[derive(Clone, Copy, Debug)]
enum Form {
    Table,
    ArrayOfTables,
}

/// The TOML that puts the `key = value` text `inner` inside the tables at `path`, each
/// level written in its form.
fn nest(path: &[(String, Form)], inner: String) -> String {
    path.iter()
        .rev()
        .fold(inner, |value, (key, form)| match form {
            Form::Table => format!("{key} = {{ {value} }}"),
            Form::ArrayOfTables => format!("{key} = [{{ {value} }}]"),
        })
}

/// The keys the loader lists for the table where `text` puts the probe key, or `None` when
/// the probe did not land in a table.
fn keys_of(text: &str) -> Option<Vec<String>> {
    let err = match gatehouse::config::parse(text, Path::new("probe.toml"), Path::new(".")) {
        Ok(_) => return None,
        Err(e) => e.to_string(),
    };
    let at = err.find(&format!("unknown field `{PROBE}`"))?;
    let rest = &err[at..];
    let expected = &rest[rest.find("expected")?..];
    let line = expected.lines().next().unwrap_or("");
    let keys: Vec<String> = line
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some(keys)
}

/// Every key path the loader accepts below the root, found by probing table after table.
fn accepted() -> BTreeSet<String> {
    let root = keys_of(&format!("{PROBE} = 1")).expect("the root table lists its keys");
    assert!(root.contains(&"listen".to_owned()), "{root:?}");
    let mut found = BTreeSet::new();
    let mut todo: Vec<Vec<(String, Form)>> = root
        .iter()
        .map(|k| vec![(k.clone(), Form::Table)])
        .collect();
    while let Some(path) = todo.pop() {
        let (last, _) = path.last().expect("paths are never empty").clone();
        let parent = &path[..path.len() - 1];
        let mut as_table = None;
        for form in [Form::Table, Form::ArrayOfTables] {
            let text = nest(
                parent,
                nest(&[(last.clone(), form)], format!("{PROBE} = 1")),
            );
            if let Some(keys) = keys_of(&text) {
                as_table = Some((form, keys));
                break;
            }
        }
        let dotted = path
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if path.len() > 1 {
            found.insert(dotted.clone());
        }
        if let Some((form, keys)) = as_table {
            assert!(!keys.is_empty(), "{dotted}: a table without keys");
            let mut here = path.clone();
            here.last_mut().expect("non-empty").1 = form;
            for k in keys {
                let mut next = here.clone();
                next.push((k, Form::Table));
                todo.push(next);
            }
        }
    }
    found
}

/// The keys in the reference's tables: rows starting with a backticked key.
fn documented() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md exists");
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            assert_eq!(cells.len(), 6, "a key row has four cells: {l}");
            cells[1].trim().trim_matches('`').to_owned()
        })
        .collect()
}

#[test]
fn the_configuration_reference_lists_exactly_the_keys_the_loader_accepts() {
    let accepted = accepted();
    // Sanity: the probe reaches nested tables and arrays of tables.
    for key in [
        "tls.session_cache_size",
        "server.client_ca",
        "policy.rules.to.paths",
        "policy.rules.when.key",
        "proxy.idle_timeout",
    ] {
        assert!(
            accepted.contains(key),
            "the probe missed {key}: {accepted:?}"
        );
    }
    let rows = documented();
    let documented: BTreeSet<String> = rows.iter().cloned().collect();
    assert_eq!(rows.len(), documented.len(), "a key has two rows");
    let missing: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "accepted but not documented: {missing:?}; documented but not accepted: {unknown:?}"
    );
}

#[test]
fn the_repository_documents_link_only_inside_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
        files.push(entry.expect("readable docs/").path());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable doc");
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("../shared") && !line.contains("SPEC.md"),
                "{}:{}: points outside the repository: {line}",
                file.display(),
                n + 1
            );
            // Relative links must name a file that exists.
            for link in line.split("](").skip(1) {
                let target = link.split(')').next().unwrap_or("");
                let target = target.split('#').next().unwrap_or("");
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let base = file.parent().expect("a doc has a directory");
                assert!(
                    base.join(target).exists(),
                    "{}:{}: broken link {target}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}
