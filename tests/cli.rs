//! The command line of SPEC §1, black-box: help and usage, `gatehouse check` and
//! `gatehouse authz`, with the real `gatehouse` binary run as a child process (bounded by a
//! deadline and killed by its own handle if it overstays) and certificates made by
//! `gatehouse cert` in a temp dir. `gatehouse cert` itself is tested in `cert_*.rs`,
//! `gatehouse demo` in `demo.rs`.
//!
//! Exit status: 0 success, 1 error (config, I/O), 2 usage.

mod common;

use common::binary::{Run, Setup, gatehouse, gatehouse_in, gh, reference_config, s};

// === help and usage ===

#[test]
fn help_of_every_command_exits_0_and_shows_an_example() {
    let mut missing = Vec::new();
    for command in [
        "",
        "run",
        "check",
        "authz",
        "demo",
        "echo",
        "bench",
        "verify",
        "cert",
        "cert ca",
        "cert server",
        "cert client",
    ] {
        let run = gh(&format!("{command} --help"));
        run.ok();
        if !run.stdout.contains("Example") {
            missing.push(format!("gatehouse {command} --help").replace("  ", " "));
        }
    }
    assert!(missing.is_empty(), "no `Example` in: {missing:?}");
    // The echo routes are printed whole: clap's help template eats `{n}`-like words.
    let root = gh("--help");
    let echo_line = root
        .stdout
        .lines()
        .find(|l| l.contains("/bytes/"))
        .unwrap_or_default();
    assert!(echo_line.contains("/delay/"), "{}", root.stdout);
}

#[test]
fn version_exits_0() {
    let run = gh("--version");
    run.ok();
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let authz = "authz -c gatehouse.toml";
    for line in [
        String::new(),
        "frobnicate".into(),
        "check".into(),
        "check -c".into(),
        "check -c gatehouse.toml --bogus".into(),
        "run".into(),
        format!("{authz} --host test.com --path /"),
        format!("{authz} --method GET --path /"),
        format!("{authz} --method GET --host test.com"),
        format!("{authz} --method GET --host h --path / --cert c.crt --principal test.client"),
        "cert".into(),
        format!("cert ca --out {d} --key-type dsa"),
        format!("cert ca --out {d} --days soon"),
        format!("cert server --ca {d} --out {d}"),
        format!("cert server --ca {d} --out {d} --dns a.com --ip not-an-ip"),
        "echo --listen not-an-address".into(),
    ] {
        let run = gh(&line);
        run.expect_code(2);
        assert!(
            !run.stderr.is_empty(),
            "gatehouse {line}: no message on stderr"
        );
    }
    // The refused cert commands wrote nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// === gatehouse check ===

#[test]
fn check_prints_the_summary_for_the_reference_config() {
    let setup = Setup::new();
    // From another directory: relative paths resolve against the config file's directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let run = gatehouse_in(Some(elsewhere.path()), &["check", "-c", s(&setup.config())]);
    run.ok();
    let out = &run.stdout;
    assert!(
        out.ends_with('\n'),
        "the summary's last line has no newline: {out:?}"
    );
    for want in [
        "listeners",
        "0.0.0.0:8443",
        "0.0.0.0:8080",
        "127.0.0.1:9901",
        "servers",
        "test.com",
        "*.mtls.example.com",
        "CN=test.com",
        "routes",
        "http://127.0.0.1:8000",
        "policies",
        "deny-test-client-teapot",
    ] {
        assert!(out.contains(want), "summary lacks {want:?}:\n{out}");
    }
    // The server certificate's subject, with its days to expiry on the same line.
    let line = out
        .lines()
        .find(|l| l.contains("CN=test.com"))
        .unwrap_or_else(|| panic!("no server subject line:\n{out}"));
    let numbers: Vec<i64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        line.contains("day") && numbers.iter().any(|d| (363..=365).contains(d)),
        "want days to expiry on {line:?}"
    );
}

#[test]
fn check_a_kubernetes_credential_dir() {
    let setup = Setup::new();
    let certs = setup.certs();
    let secret = setup.path("secrets/test-com");
    std::fs::create_dir_all(&secret).unwrap();
    for (from, to) in [
        ("server.crt", "tls.crt"),
        ("server.key", "tls.key"),
        ("ca.crt", "ca.crt"),
    ] {
        std::fs::copy(certs.join(from), secret.join(to)).unwrap();
    }
    let text = reference_config()
        .replacen(
            "cert = \"certs/server.crt\"",
            "credential_dir = \"secrets/test-com\"",
            1,
        )
        .replacen("key = \"certs/server.key\"", "", 1)
        .replacen("client_ca = \"certs/ca.crt\"", "", 1);
    let config = setup.write("k8s.toml", &text);
    let run = setup.check(&config);
    run.ok();
    assert!(run.stdout.contains("CN=test.com"), "{}", run.stdout);

    // client_auth = "required" with no CA in the secret cannot work: refused at load.
    std::fs::remove_file(secret.join("ca.crt")).unwrap();
    let run = setup.check(&config);
    run.expect_code(1);
    assert!(run.stderr.contains("CA"), "{}", run.stderr);
}

#[test]
fn check_missing_cert_file_exits_1_naming_it() {
    let setup = Setup::new();
    let config = setup.write_config_variant("a.toml", "certs/server.crt", "certs/nonexistent.crt");
    let run = setup.check(&config);
    run.expect_code(1);
    assert!(run.stderr.contains("nonexistent.crt"), "{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "no summary on failure: {}",
        run.stdout
    );

    let config = setup.write_config_variant("b.toml", "certs/ca.crt", "certs/no-ca.crt");
    let run = setup.check(&config);
    run.expect_code(1);
    assert!(run.stderr.contains("no-ca.crt"), "{}", run.stderr);
}

#[test]
fn check_key_not_matching_cert_exits_1() {
    let setup = Setup::new();
    let c = setup.certs();
    let c = s(&c);
    gh(&format!(
        "cert server --ca {c} --out {c} --name other --dns test.com"
    ))
    .ok();
    let config = setup.write_config_variant("mismatch.toml", "certs/server.key", "certs/other.key");
    let run = setup.check(&config);
    run.expect_code(1);
    assert!(run.stderr.contains("other.key"), "{}", run.stderr);
    assert!(
        run.stderr.contains("does not match"),
        "the message must say the key does not match the certificate: {}",
        run.stderr
    );
}

#[test]
fn check_garbage_pem_exits_1_naming_the_file() {
    let setup = Setup::new();
    let good_cert = std::fs::read_to_string(setup.certs().join("server.crt")).unwrap();
    let truncated = &good_cert[..good_cert.len() / 3];
    let cases = [
        ("certs/server.crt", "this is not a certificate\n"),
        ("certs/server.crt", truncated),
        (
            "certs/server.crt",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        ),
        (
            "certs/server.key",
            "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
        ),
        ("certs/server.key", "garbage\n"),
        ("certs/ca.crt", "garbage\n"),
    ];
    for (i, (file, text)) in cases.iter().enumerate() {
        let bad = format!("bad{i}.pem");
        setup.write(&bad, text);
        let config = setup.write_config_variant(&format!("bad{i}.toml"), file, &bad);
        let run = setup.check(&config);
        run.expect_code(1);
        assert!(
            run.stderr.contains(&bad),
            "case {i} ({file}): {}",
            run.stderr
        );
    }
}

#[test]
fn check_syntax_error_names_file_and_line() {
    let setup = Setup::new();
    let config =
        setup.write_config_variant("syntax.toml", "path_prefix = \"/\"", "path_prefix = \"/");
    let run = setup.check(&config);
    run.expect_code(1);
    assert!(run.stderr.contains("syntax.toml"), "{}", run.stderr);
    let line = 1 + reference_config()
        .lines()
        .position(|l| l.starts_with("path_prefix"))
        .unwrap();
    assert!(
        run.stderr.contains(&format!("line {line}")) && run.stderr.contains("column"),
        "want line {line} and a column: {}",
        run.stderr
    );
}

#[test]
fn check_semantic_error_names_file_and_field_path() {
    let setup = Setup::new();
    let config = setup.write_config_variant(
        "semantic.toml",
        "to.paths = [\"/status/418\"]",
        "to.paths = [\"/status/418\", \"/a\", \"*a*\"]",
    );
    let run = setup.check(&config);
    run.expect_code(1);
    let want = "semantic.toml: policy[0].rules[0].to.paths[2]: \"*a*\": \
                '*' is allowed only at the start or end";
    assert!(run.stderr.contains(want), "{}", run.stderr);
}

#[test]
fn check_missing_config_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let run = gh(&format!("check -c {}", s(&dir.path().join("nope.toml"))));
    run.expect_code(1);
    assert!(run.stderr.contains("nope.toml"), "{}", run.stderr);
}

// === gatehouse authz ===

const TEAPOT: &str = "--method GET --host test.com --path /status/418";

#[track_caller]
fn assert_deny_by_teapot(run: &Run) {
    run.ok();
    let first = run.first_line();
    assert!(
        first.starts_with("DENY") && first.contains("deny-test-client-teapot"),
        "want DENY by deny-test-client-teapot for {:?}, got:\n{}",
        run.args,
        run.stdout
    );
}

#[track_caller]
fn assert_allow(run: &Run) {
    run.ok();
    assert!(
        run.first_line().starts_with("ALLOW"),
        "want ALLOW for {:?}, got:\n{}",
        run.args,
        run.stdout
    );
}

#[test]
fn authz_reference_deny_policy() {
    let setup = Setup::new();
    assert_deny_by_teapot(&setup.authz(&format!("--principal test.client {TEAPOT}")));
    assert_allow(
        &setup.authz("--principal test.client --method GET --host test.com --path /status/200"),
    );
    // Another principal, or none: no deny matches and there is no allow policy.
    assert_allow(&setup.authz(&format!("--principal other.client {TEAPOT}")));
    assert_allow(&setup.authz(TEAPOT));
    // Method and host do not matter to this policy; a port in the host is ignored.
    assert_deny_by_teapot(&setup.authz(
        "--principal test.client --method DELETE --host x.mtls.example.com:8443 \
         --path /status/418",
    ));
}

#[test]
fn authz_cert_gives_the_same_decision_as_its_principal() {
    let setup = Setup::new();
    let c = setup.certs();
    let c = s(&c);
    assert_deny_by_teapot(&setup.authz(&format!("--cert {c}/client.crt {TEAPOT}")));
    assert_allow(&setup.authz(&format!(
        "--cert {c}/client.crt --method GET --host test.com --path /status/200"
    )));
    // A client certificate without a SPIFFE URI SAN has no principal.
    gh(&format!(
        "cert client --ca {c} --out {c} --name dns-only --dns test.client"
    ))
    .ok();
    assert_allow(&setup.authz(&format!("--cert {c}/dns-only.crt {TEAPOT}")));
}

/// `authz` normalizes the path as the proxy does, so spellings that reach `/status/418`
/// after normalization are denied too (and the query string is never matched).
#[test]
fn authz_normalizes_like_the_proxy() {
    let setup = Setup::new();
    let client = setup.certs().join("client.crt");
    let mut failures = Vec::new();
    for path in [
        "/status/418",
        "/status//418",
        "//status///418",
        "/status/%2e/418",
        "/status/%2E%2E/status/418",
        "/status/./418",
        "/status/x/../418",
        "/status/x/..;y/418",
        "/status\\418",
        "/%73tatus/%34%31%38",
        "/status/418?x=1",
        "/status/418?/status/200",
        "/status/418#frag",
    ] {
        let run = setup.authz(&format!(
            "--cert {} --method GET --host test.com --path {path}",
            s(&client)
        ));
        run.ok();
        let first = run.first_line();
        if !(first.starts_with("DENY") && first.contains("deny-test-client-teapot")) {
            failures.push(format!("{path} (want DENY): {}", run.stdout.trim_end()));
        }
    }
    // Not the same path after normalization: allowed.
    for path in [
        "/status/4180",
        "/status/418/",
        "/status/418/.",
        "/Status/418",
        "/status/%34%31%38x",
    ] {
        let run = setup.authz(&format!(
            "--principal test.client --method GET --host test.com --path {path}"
        ));
        run.ok();
        if !run.first_line().starts_with("ALLOW") {
            failures.push(format!("{path} (want ALLOW): {}", run.stdout.trim_end()));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong decisions:\n{}",
        failures.join("\n")
    );
}

/// SPEC §1: the first line starts with `ALLOW`, `DENY` or `REFUSED <status>`, whatever the
/// path. A path the proxy refuses (400) or redirects (escaped slash, 307) says so, and is
/// never reported as allowed.
#[test]
fn authz_first_line_is_allow_deny_or_refused_for_every_path() {
    let setup = Setup::new();
    let mut failures = Vec::new();
    for path in [
        "/status%2F418",
        "/status%2f418",
        "/status/%5C418",
        "/status/%zz",
        "/status/%00",
        "/status/a b",
    ] {
        let run = gatehouse(&[
            "authz",
            "-c",
            s(&setup.config()),
            "--principal",
            "test.client",
            "--method",
            "GET",
            "--host",
            "test.com",
            "--path",
            path,
        ]);
        if run.code != Some(0) {
            let err = run.stderr.trim_end();
            failures.push(format!("{path}: exit {:?}: {err}", run.code));
            continue;
        }
        let first = run.first_line();
        let want = if path.contains("%2F") || path.contains("%2f") || path.contains("%5C") {
            "REFUSED 307"
        } else if path.contains("%zz") || path.contains("%00") || path.contains(' ') {
            "REFUSED 400"
        } else {
            "DENY"
        };
        if !first.starts_with(want) {
            failures.push(format!("{path}: first line is {first:?}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn authz_allow_policy_without_identity_denies() {
    let setup = Setup::new();
    let config = setup.write_config_variant(
        "allow.toml",
        "name = \"deny-test-client-teapot\"\naction = \"deny\"",
        "name = \"allow-test-client\"\naction = \"allow\"",
    );
    let run = setup.authz_with(&config, TEAPOT);
    run.ok();
    let first = run.first_line();
    assert!(first.starts_with("DENY"), "{}", run.stdout);
    assert!(first.contains("no ALLOW policy matched"), "{}", run.stdout);

    let run = setup.authz_with(&config, &format!("--principal other.client {TEAPOT}"));
    run.ok();
    assert!(run.first_line().starts_with("DENY"), "{}", run.stdout);

    let client = setup.certs().join("client.crt");
    let run = setup.authz_with(&config, &format!("--cert {} {TEAPOT}", s(&client)));
    assert_allow(&run);
    assert!(
        run.first_line().contains("allow-test-client"),
        "{}",
        run.stdout
    );
}

#[test]
fn authz_headers_sni_and_source_ip_feed_the_rules() {
    let setup = Setup::new();
    let extra = r#"
[[policy]]
name = "deny-staging-header"
action = "deny"
  [[policy.rules]]
  when = [{ key = "request.headers[x-env]", values = ["staging"] }]

[[policy]]
name = "deny-internal-sni"
action = "deny"
  [[policy.rules]]
  when = [{ key = "connection.sni", values = ["internal.mtls.example.com"] }]

[[policy]]
name = "deny-blocked-net"
action = "deny"
  [[policy.rules]]
  from.ip_blocks = ["203.0.113.0/24"]
"#;
    let config = setup.write("when.toml", &(reference_config() + extra));
    let base = "--method GET --host test.com --path /";
    let decide = |more: &str| {
        let run = setup.authz_with(&config, &format!("{base} {more}"));
        run.ok();
        run.first_line().to_owned()
    };
    assert!(decide("").starts_with("ALLOW"));
    assert!(decide("--header x-env=prod").starts_with("ALLOW"));
    let first = decide("--header X-Env=staging");
    assert!(
        first.starts_with("DENY") && first.contains("deny-staging-header"),
        "{first}"
    );
    let first = decide("--sni internal.mtls.example.com");
    assert!(
        first.starts_with("DENY") && first.contains("deny-internal-sni"),
        "{first}"
    );
    let first = decide("--source-ip 203.0.113.9");
    assert!(
        first.starts_with("DENY") && first.contains("deny-blocked-net"),
        "{first}"
    );
}

#[test]
fn authz_unreadable_cert_exits_1() {
    let setup = Setup::new();
    let missing = setup.certs().join("nope.crt");
    let run = setup.authz(&format!("--cert {} {TEAPOT}", s(&missing)));
    run.expect_code(1);
    assert!(run.stderr.contains("nope.crt"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let garbage = setup.write("garbage.crt", "not a certificate\n");
    let run = setup.authz(&format!("--cert {} {TEAPOT}", s(&garbage)));
    run.expect_code(1);
    assert!(run.stderr.contains("garbage.crt"), "{}", run.stderr);
}

#[test]
fn authz_bad_config_exits_1() {
    let setup = Setup::new();
    let bad = setup.write_config_variant("bad.toml", "action = \"deny\"", "action = \"block\"");
    let run = setup.authz_with(&bad, &format!("--principal test.client {TEAPOT}"));
    run.expect_code(1);
    assert!(run.stderr.contains("policy[0].action"), "{}", run.stderr);

    let no_cert = setup.write_config_variant("nocert.toml", "certs/server.crt", "certs/gone.crt");
    let run = setup.authz_with(&no_cert, TEAPOT);
    run.expect_code(1);
    assert!(run.stderr.contains("gone.crt"), "{}", run.stderr);

    let run = setup.authz_with(&setup.path("absent.toml"), TEAPOT);
    run.expect_code(1);
}

#[test]
fn authz_bad_arguments_exit_2() {
    let setup = Setup::new();
    let config = setup.config();
    let c = s(&config);
    for extra in [
        &["--header", "x-env"][..],
        &["--header", "bad name=x"][..],
        &["--principal", "test.client", "--cert", "certs/client.crt"][..],
        &["--source-ip", "not-an-ip"][..],
    ] {
        let mut args = vec!["authz", "-c", c];
        args.extend(TEAPOT.split_whitespace());
        args.extend_from_slice(extra);
        let run = gatehouse(&args);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{:?}: {}", run.args, run.stdout);
    }
    let bad_method = [
        "authz", "-c", c, "--method", "GE T", "--host", "h", "--path", "/",
    ];
    gatehouse(&bad_method).expect_code(2);
}
