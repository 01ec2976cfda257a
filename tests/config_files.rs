//! Every config file in the repository is tested (STYLE "Config: raw vs validated"):
//! `config/**/*.toml` must parse, and every `tests/fixtures/invalid/*.toml` must fail with
//! the text of its `# expect:` lines. `config::parse` never reads the certificate files a
//! config names, so neither the examples nor the fixtures need a PKI.

use std::path::{Path, PathBuf};

use gatehouse::config::{self, ConfigError, Credentials};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `*.toml` files under `dir`, recursively, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(toml_files(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `config::parse` on a file, with the file's directory as the base for relative paths.
fn parse_file(path: &Path) -> Result<config::Config, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    config::parse(&text, path, path.parent().unwrap())
}

/// The `# expect: ...` lines at the top of a fixture (the first line must be one).
fn expectations(path: &Path, text: &str) -> Vec<String> {
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("# expect: "),
        "{}: the first line must be `# expect: <error text>`, found {first:?}",
        path.display()
    );
    text.lines()
        .map_while(|l| l.strip_prefix("# expect: "))
        .map(|e| e.trim_end().to_owned())
        .inspect(|e| assert!(!e.is_empty(), "{}: empty `# expect:`", path.display()))
        .collect()
}

#[test]
fn every_shipped_config_parses() {
    let files = toml_files(&repo().join("config"));
    assert!(
        files.iter().any(|f| f.ends_with("config/gatehouse.toml")),
        "config/gatehouse.toml is missing: {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = parse_file(file) {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn there_are_at_least_ten_examples_and_all_parse() {
    let examples = toml_files(&repo().join("config/examples"));
    assert!(
        examples.len() >= 10,
        "want at least 10 example configs, found {}: {examples:?}",
        examples.len()
    );
    for file in &examples {
        let config = parse_file(file).unwrap_or_else(|e| panic!("{}:\n{e}", file.display()));
        assert!(!config.servers.is_empty(), "{}", file.display());
    }
}

/// SPEC §2: the reference configuration is accepted exactly as written, and relative paths
/// resolve against the config file's directory (not the working directory).
#[test]
fn reference_config_loads_with_paths_relative_to_its_directory() {
    let path = repo().join("config/gatehouse.toml");
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let dir = repo().join("config");
    assert_eq!(config.listen.https.to_string(), "0.0.0.0:8443");
    assert_eq!(
        config.listen.http.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:8080")
    );
    assert_eq!(
        config.listen.admin.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9901")
    );
    assert_eq!(config.servers.len(), 1);
    assert_eq!(config.servers[0].names, ["test.com", "*.mtls.example.com"]);
    match &config.servers[0].credentials {
        Credentials::Files {
            cert,
            key,
            client_ca,
            client_crl,
        } => {
            assert_eq!(
                std::path::absolute(cert).unwrap(),
                std::path::absolute(dir.join("certs/server.crt")).unwrap()
            );
            assert_eq!(
                std::path::absolute(key).unwrap(),
                std::path::absolute(dir.join("certs/server.key")).unwrap()
            );
            assert_eq!(
                client_ca
                    .as_deref()
                    .map(|p| std::path::absolute(p).unwrap()),
                Some(std::path::absolute(dir.join("certs/ca.crt")).unwrap())
            );
            assert!(client_crl.is_empty());
        }
        other => panic!("want cert/key files, got {other:?}"),
    }
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].path_prefix, "/");
    assert_eq!(
        config.routes[0].upstream.to_string(),
        "http://127.0.0.1:8000"
    );
    assert_eq!(config.policies.len(), 1);
    assert_eq!(config.policies.name(0), "deny-test-client-teapot");
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_error() {
    let dir = repo().join("tests/fixtures/invalid");
    let fixtures = toml_files(&dir);
    assert!(
        fixtures.len() >= 25,
        "want at least 25 invalid fixtures, found {}",
        fixtures.len()
    );
    let mut failures = Vec::new();
    for file in &fixtures {
        let text = std::fs::read_to_string(file).unwrap();
        let expects = expectations(file, &text);
        let Err(err) = parse_file(file) else {
            failures.push(format!("{}: parsed, but should fail", file.display()));
            continue;
        };
        let shown = err.to_string();
        let name = file.file_name().unwrap().to_string_lossy();
        // SPEC §2: every error names the file.
        if !shown.contains(name.as_ref()) {
            failures.push(format!(
                "{}: error does not name the file:\n{shown}",
                file.display()
            ));
        }
        // SPEC §2: syntax errors name the file, line and column.
        if matches!(err, ConfigError::Syntax { .. })
            && !(shown.contains("line") && shown.contains("column"))
        {
            failures.push(format!(
                "{}: syntax error without line and column:\n{shown}",
                file.display()
            ));
        }
        for expect in &expects {
            if !shown.contains(expect.as_str()) {
                failures.push(format!(
                    "{}: want {expect:?} in the error, got:\n{shown}",
                    file.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The fixtures' `# expect:` lines carry field paths (`server[0].hosts`, ...) for semantic
/// errors: each semantic error line reads `<file>: <field path>: <message>`.
#[test]
fn semantic_errors_read_file_then_field_path_then_message() {
    let file = repo().join("tests/fixtures/invalid/policy-star-in-the-middle.toml");
    let err = parse_file(&file).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: policy[1].rules[0].to.paths[2]: \"*a*\": '*' is allowed only at the start or end",
            file.display()
        )
    );
}

#[test]
fn all_problems_in_a_file_are_reported_at_once() {
    let text = r#"
[listen]
https = "localhost:8443"

[[server]]
hosts = ["test.com"]
cert = "certs/server.crt"
key = "certs/server.key"
client_ca = "certs/ca.crt"

[[route]]
path_prefix = "/"
upstream = "https://127.0.0.1:8000"

[[policy]]
name = "deny-teapot"
action = "deny"
  [[policy.rules]]
  to.paths = ["/status/*18*"]
"#;
    let path = Path::new("/etc/gatehouse/multi.toml");
    let err = config::parse(text, path, Path::new("/etc/gatehouse")).unwrap_err();
    let ConfigError::Invalid { errors, .. } = &err else {
        panic!("want a semantic error, got {err:?}");
    };
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listen.https",
            "route[0].upstream",
            "policy[0].rules[0].to.paths[0]"
        ]
    );
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    for (line, field) in lines.iter().zip(&paths) {
        assert!(
            line.starts_with(&format!("/etc/gatehouse/multi.toml: {field}: ")),
            "{line}"
        );
    }
}

/// A syntax error names the file and the line and column of the problem (SPEC §2).
#[test]
fn syntax_errors_name_file_line_and_column() {
    let text = "[listen]\nhttps = \"127.0.0.1:8443\"\n\n[[server]\nhosts = [\"test.com\"]\n";
    let path = Path::new("/etc/gatehouse/broken.toml");
    let err = config::parse(text, path, Path::new("/etc/gatehouse")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.starts_with("/etc/gatehouse/broken.toml: "), "{shown}");
    assert!(shown.contains("line 4, column"), "{shown}");
}

/// SPEC §2's "further sections, all optional", written out with their documented defaults, are
/// accepted.
#[test]
fn spec_optional_sections_with_their_defaults_are_accepted() {
    let text = std::fs::read_to_string(repo().join("config/gatehouse.toml")).unwrap()
        + r#"
[proxy]
path_normalization = "merge_slashes"
escaped_slashes = "redirect"
headers_with_underscores = "drop"
forward_client_cert = "sanitize_set"
proxy_protocol = false
handshake_timeout = "10s"
request_header_timeout = "10s"
idle_timeout = "5m"
drain_timeout = "30s"
max_request_header_bytes = 65536
max_connections = 10000
h2_max_concurrent_streams = 100
h2_stream_window = 65536
h2_connection_window = 1048576

[runtime]
workers = 0

[log]
level = "info"
format = "text"
access_log = true

[reload]
watch = true
"#;
    let path = Path::new("/etc/gatehouse/gatehouse.toml");
    let config =
        config::parse(&text, path, Path::new("/etc/gatehouse")).unwrap_or_else(|e| panic!("{e}"));
    let p = &config.proxy;
    assert_eq!(p.handshake_timeout, std::time::Duration::from_secs(10));
    assert_eq!(p.idle_timeout, std::time::Duration::from_secs(300));
    assert_eq!(p.max_request_header_bytes, 65536);
    assert_eq!(p.h2_connection_window, 1_048_576);

    // The same values are the defaults when the sections are left out.
    let bare = std::fs::read_to_string(repo().join("config/gatehouse.toml")).unwrap();
    let defaults = config::parse(&bare, path, Path::new("/etc/gatehouse")).unwrap();
    assert_eq!(defaults.proxy, config.proxy);
    assert_eq!(defaults.log, config.log);
    assert_eq!(defaults.workers, 0);
    assert_eq!(defaults.tls.session_cache_size, 10_000);

    // `[reload] watch = false`: only SIGHUP reloads (SPEC §3).
    let no_watch = bare + "\n[reload]\nwatch = false\n";
    if let Err(e) = config::parse(&no_watch, path, Path::new("/etc/gatehouse")) {
        panic!("[reload] watch = false must be accepted: {e}");
    }
}
