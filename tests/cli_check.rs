//! `gatehouse check` (SPEC §1), black-box with the real binary and certificates made by
//! `gatehouse cert` in a temp dir: the summary of a good config (files or a Kubernetes
//! credential dir), and exit 1 naming the file, line or field for each kind of bad one.

mod common;

use common::binary::{Setup, gatehouse_in, gh, reference_config, s};

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
        "key exchange: X25519MLKEM768, X25519, secp256r1, secp384r1",
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
