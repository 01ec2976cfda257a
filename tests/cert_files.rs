//! What `gatehouse cert ca|server|client` (SPEC §1) writes, black-box: the real binary writes
//! the files, then they are read back with independent code (`common::x509`): the files and
//! their modes, leaf-then-CA chains, the SANs, CN and validity the flags ask for, and the
//! refusal to overwrite without `--force`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::binary::{Setup, gatehouse, gh, s};
use common::x509::*;

#[test]
fn cert_writes_ca_server_and_client_with_private_keys_0600() {
    let setup = Setup::new();
    let certs = setup.certs();
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(certs.join(f).is_file(), "{f} missing");
    }
    for f in ["ca.key", "server.key", "client.key"] {
        assert_eq!(mode(&certs.join(f)), 0o600, "{f} mode");
    }
    // No PKCS#12 without a password.
    assert!(!certs.join("client.p12").exists());

    let ca = read_chain(&certs.join("ca.crt"));
    assert_eq!(ca.len(), 1);
    let ca_cert = x509(&ca[0]);
    assert!((3648..=3650).contains(&days_left(&ca[0])), "CA: 3650 days");

    // server.crt: leaf then CA, the SANs asked for, verifies against the CA.
    let server = read_chain(&certs.join("server.crt"));
    assert_eq!(server.len(), 2, "server.crt must hold the leaf then the CA");
    assert_eq!(
        server[1], ca[0],
        "the second certificate of server.crt is the CA"
    );
    assert_eq!(
        sans(&server[0]),
        ["DNS:test.com", "DNS:*.mtls.example.com", "IP:127.0.0.1"]
    );
    let id = gatehouse::identity::from_leaf(&server[0]).unwrap();
    assert_eq!(id.dns_sans, ["test.com", "*.mtls.example.com"]);
    assert_eq!(id.ip_sans, ["127.0.0.1"]);
    assert!(id.principals.is_empty());
    assert_eq!(
        id.common_name.as_deref(),
        Some("test.com"),
        "CN = first DNS"
    );
    assert_eq!(
        x509(&server[0]).issuer().as_raw(),
        ca_cert.subject().as_raw()
    );
    assert!(
        (363..=365).contains(&days_left(&server[0])),
        "leaf: 365 days"
    );
    verify_server(&ca[0], &server[0], "test.com");
    verify_server(&ca[0], &server[0], "x.mtls.example.com");
    verify_server(&ca[0], &server[0], "127.0.0.1");

    // client.crt: leaf then CA, URI SAN -> principal, CN = the name.
    let client = read_chain(&certs.join("client.crt"));
    assert_eq!(client.len(), 2, "client.crt must hold the leaf then the CA");
    assert_eq!(client[1], ca[0]);
    assert_eq!(sans(&client[0]), ["URI:spiffe://test.client"]);
    let id = gatehouse::identity::from_leaf(&client[0]).unwrap();
    assert_eq!(id.principals, ["test.client"]);
    assert_eq!(id.common_name.as_deref(), Some("client"));
    assert_eq!(
        x509(&client[0]).issuer().as_raw(),
        ca_cert.subject().as_raw()
    );
    assert!(
        (363..=365).contains(&days_left(&client[0])),
        "leaf: 365 days"
    );
    verify_client(&ca[0], &client[0]);
}

#[test]
fn cert_flags_name_cn_days_and_repeated_sans() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let run = gatehouse(&[
        "cert",
        "ca",
        "--out",
        d,
        "--cn",
        "Acme Dev Root",
        "--days",
        "30",
    ]);
    run.ok();
    assert!(
        run.stdout.contains("ca.crt"),
        "say what was written: {}",
        run.stdout
    );
    gh(&format!(
        "cert server --ca {d} --out {d} --name api --dns api.example.com \
         --dns API2.example.com --ip ::1 --ip 10.0.0.1 --days 10"
    ))
    .ok();
    gatehouse(&[
        "cert",
        "client",
        "--ca",
        d,
        "--out",
        d,
        "--name",
        "alice",
        "--cn",
        "Alice Example",
        "--uri",
        "spiffe://example.org/alice",
        "--uri",
        "https://alice.example.org/",
        "--dns",
        "alice.example.com",
        "--email",
        "alice@example.com",
    ])
    .ok();
    let ca = read_chain(&dir.path().join("ca.crt"));
    assert_eq!(x509(&ca[0]).subject().to_string(), "CN=Acme Dev Root");
    assert!((28..=30).contains(&days_left(&ca[0])), "--days 30");

    let api = read_chain(&dir.path().join("api.crt"));
    assert_eq!(mode(&dir.path().join("api.key")), 0o600);
    assert_eq!(
        sans(&api[0]),
        [
            "DNS:api.example.com",
            "DNS:API2.example.com",
            "IP:::1",
            "IP:10.0.0.1"
        ]
    );
    let id = gatehouse::identity::from_leaf(&api[0]).unwrap();
    assert_eq!(id.dns_sans, ["api.example.com", "API2.example.com"]);
    assert_eq!(id.ip_sans, ["::1", "10.0.0.1"]);
    assert!((8..=10).contains(&days_left(&api[0])), "--days 10");
    for name in ["api.example.com", "10.0.0.1", "::1"] {
        verify_server(&ca[0], &api[0], name);
    }
    assert_leaf_usages(&api[0], Role::Server, "ecdsa-p256");

    let alice = read_chain(&dir.path().join("alice.crt"));
    assert_eq!(mode(&dir.path().join("alice.key")), 0o600);
    assert_eq!(
        sans(&alice[0]),
        [
            "DNS:alice.example.com",
            "URI:spiffe://example.org/alice",
            "URI:https://alice.example.org/",
            "email:alice@example.com",
        ]
    );
    assert_eq!(x509(&alice[0]).subject().to_string(), "CN=Alice Example");
    let id = gatehouse::identity::from_leaf(&alice[0]).unwrap();
    assert_eq!(id.common_name.as_deref(), Some("Alice Example"));
    assert_eq!(
        id.uri_sans,
        ["spiffe://example.org/alice", "https://alice.example.org/"]
    );
    assert_eq!(id.principals, ["example.org/alice"]);
    assert_eq!(id.dns_sans, ["alice.example.com"]);
    assert_eq!(id.email_sans, ["alice@example.com"]);
    verify_client(&ca[0], &alice[0]);
    assert_leaf_usages(&alice[0], Role::Client, "ecdsa-p256");
}

#[test]
fn cert_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let ca_crt = dir.path().join("ca.crt");
    let ca_key = dir.path().join("ca.key");
    gh(&format!("cert ca --out {d}")).ok();
    let before = std::fs::read(&ca_crt).unwrap();

    let run = gh(&format!("cert ca --out {d}"));
    run.expect_code(1);
    assert!(
        run.stderr.contains(s(&ca_crt)),
        "must name the file: {}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&ca_crt).unwrap(),
        before,
        "ca.crt was modified"
    );

    // Only the key exists: still refused, naming the key, and nothing is written.
    std::fs::remove_file(&ca_crt).unwrap();
    let run = gh(&format!("cert ca --out {d}"));
    run.expect_code(1);
    assert!(run.stderr.contains(s(&ca_key)), "{}", run.stderr);
    assert!(!ca_crt.exists(), "nothing may be written when refusing");

    // --force overwrites; the key is 0600 afterwards even if it was not before.
    let old_key = std::fs::read(&ca_key).unwrap();
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    gh(&format!("cert ca --out {d} --force")).ok();
    assert_ne!(
        std::fs::read(&ca_key).unwrap(),
        old_key,
        "--force writes a new key"
    );
    assert_ne!(std::fs::read(&ca_crt).unwrap(), before);
    assert_eq!(
        mode(&ca_key),
        0o600,
        "a key rewritten with --force must be 0600"
    );

    // Leaves too.
    let server = dir.path().join("server.crt");
    gh(&format!("cert server --ca {d} --out {d} --dns a.com")).ok();
    let run = gh(&format!("cert server --ca {d} --out {d} --dns b.com"));
    run.expect_code(1);
    assert!(run.stderr.contains(s(&server)), "{}", run.stderr);
    assert_eq!(leaf_identity(&server).dns_sans, ["a.com"]);
    gh(&format!(
        "cert server --ca {d} --out {d} --dns b.com --force"
    ))
    .ok();
    assert_eq!(leaf_identity(&server).dns_sans, ["b.com"]);
}

#[test]
fn cert_leaf_without_a_ca_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let run = gh(&format!("cert client --ca {d} --out {d} --uri spiffe://x"));
    run.expect_code(1);
    assert!(run.stderr.contains("ca.crt"), "{}", run.stderr);
    assert!(!dir.path().join("client.crt").exists());
}
