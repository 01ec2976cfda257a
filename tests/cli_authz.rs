//! `gatehouse authz` (SPEC §1), the dry run of the policy engine, black-box with the real
//! binary: its first line is ALLOW, DENY (naming the policy) or REFUSED; a certificate counts
//! as its principal; paths are normalized as the proxy does; headers, SNI and source IP feed
//! the rules; bad input exits 1 or 2.

mod common;

use common::binary::{Run, Setup, gatehouse, gh, reference_config, s};

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
