//! The command line of SPEC §1, black-box: the real `gatehouse` binary run as a child
//! process (bounded by a deadline and killed by its own handle if it overstays), with
//! certificates made by `gatehouse cert` in a temp dir.
//!
//! Exit status: 0 success, 1 error (config, I/O), 2 usage.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// No command here should take more than a few seconds; RSA-4096 key generation on a busy
/// 2-core machine is the slowest. Past this the child is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// The SPEC §2 reference config, as shipped.
fn reference_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatehouse.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// === running the binary ===

/// What a finished `gatehouse` run left behind.
#[derive(Debug)]
struct Run {
    /// `None` if killed by a signal.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    args: Vec<String>,
}

impl Run {
    fn first_line(&self) -> &str {
        self.stdout.lines().next().unwrap_or_default()
    }

    /// Panics with the whole run unless it exited with `code`.
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "gatehouse {:?}: want exit {code}\n--- stdout\n{}--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        self.expect_code(0)
    }
}

/// Kills the child if it is still running when dropped (a panicking test included), and
/// reaps it either way.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `gatehouse ARGS...` in `cwd` (default: the test's) and waits for it, up to [`DEADLINE`].
fn gatehouse_in(cwd: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = Reaper(cmd.spawn().expect("spawn gatehouse"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.0.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.0.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for gatehouse") {
            break status;
        }
        if Instant::now() >= deadline {
            drop(child); // kills and reaps
            panic!("gatehouse {args:?} still running after {DEADLINE:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child);
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

fn gatehouse(args: &[&str]) -> Run {
    gatehouse_in(None, args)
}

/// `gatehouse` with whitespace-separated arguments (temp paths have no spaces).
fn gh(line: &str) -> Run {
    gatehouse(&line.split_whitespace().collect::<Vec<_>>())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

// === a dev PKI made with `gatehouse cert` ===

/// A temp dir with `certs/` (ca, server for test.com + *.mtls.example.com + 127.0.0.1,
/// client spiffe://test.client) and the reference config at `gatehouse.toml`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self::with_key_type("ecdsa-p256")
    }

    fn with_key_type(kt: &str) -> Self {
        let setup = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let c = setup.certs();
        let c = s(&c);
        gh(&format!("cert ca --out {c} --key-type {kt}")).ok();
        gh(&format!(
            "cert server --ca {c} --out {c} --key-type {kt} \
             --dns test.com --dns *.mtls.example.com --ip 127.0.0.1"
        ))
        .ok();
        gh(&format!(
            "cert client --ca {c} --out {c} --key-type {kt} --uri spiffe://test.client"
        ))
        .ok();
        setup.write("gatehouse.toml", &reference_config());
        setup
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn certs(&self) -> PathBuf {
        self.path("certs")
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn config(&self) -> PathBuf {
        self.path("gatehouse.toml")
    }

    /// The reference config with the first `from` replaced by `to` (`from` must occur).
    fn write_config_variant(&self, rel: &str, from: &str, to: &str) -> PathBuf {
        let text = reference_config();
        assert!(text.contains(from), "{from:?} not in the reference config");
        self.write(rel, &text.replacen(from, to, 1))
    }

    fn check(&self, config: &Path) -> Run {
        gatehouse(&["check", "-c", s(config)])
    }

    /// `gatehouse authz -c <reference config> ARGS...` (whitespace-separated).
    fn authz(&self, line: &str) -> Run {
        self.authz_with(&self.config(), line)
    }

    fn authz_with(&self, config: &Path, line: &str) -> Run {
        let mut args = vec!["authz", "-c", s(config)];
        args.extend(line.split_whitespace());
        gatehouse(&args)
    }
}

fn read_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

fn leaf_identity(path: &Path) -> gatehouse::identity::PeerIdentity {
    gatehouse::identity::from_leaf(&read_chain(path)[0]).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(roots)
}

/// webpki accepts `leaf` as a TLS server certificate for `name` issued by `ca` (chain,
/// signature, validity and EKU serverAuth).
fn verify_server(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>, name: &str) {
    use rustls::client::danger::ServerCertVerifier;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("server cert for {name:?} does not verify: {e}"));
}

/// webpki accepts `leaf` as a TLS client certificate issued by `ca` (EKU clientAuth).
fn verify_client(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>) {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .unwrap();
    verifier
        .verify_client_cert(leaf, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("client cert does not verify: {e}"));
}

/// Whole days from now to the certificate's not_after.
fn days_left(der: &[u8]) -> i64 {
    let (_, cert) = parse_x509_certificate(der).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (cert.validity().not_after.timestamp() - i64::try_from(now).unwrap()) / 86_400
}

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

// === gatehouse cert ===

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
    let (_, ca_cert) = parse_x509_certificate(&ca[0]).unwrap();
    let bc = ca_cert
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints");
    assert!(bc.value.ca, "ca.crt is not a CA");
    assert!((3648..=3650).contains(&days_left(&ca[0])), "CA: 3650 days");

    // server.crt: leaf then CA, EKU serverAuth, the SANs asked for, verifies against the CA.
    let server = read_chain(&certs.join("server.crt"));
    assert_eq!(server.len(), 2, "server.crt must hold the leaf then the CA");
    assert_eq!(
        server[1], ca[0],
        "the second certificate of server.crt is the CA"
    );
    let id = gatehouse::identity::from_leaf(&server[0]).unwrap();
    assert_eq!(id.dns_sans, ["test.com", "*.mtls.example.com"]);
    assert_eq!(id.ip_sans, ["127.0.0.1"]);
    assert!(id.principals.is_empty());
    let (_, leaf) = parse_x509_certificate(&server[0]).unwrap();
    let eku = leaf.extended_key_usage().unwrap().expect("server EKU");
    assert!(eku.value.server_auth, "server EKU lacks serverAuth");
    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
    assert!(
        (363..=365).contains(&days_left(&server[0])),
        "leaf: 365 days"
    );
    verify_server(&ca[0], &server[0], "test.com");
    verify_server(&ca[0], &server[0], "x.mtls.example.com");
    verify_server(&ca[0], &server[0], "127.0.0.1");

    // client.crt: leaf then CA, EKU clientAuth, URI SAN -> principal.
    let client = read_chain(&certs.join("client.crt"));
    assert_eq!(client.len(), 2, "client.crt must hold the leaf then the CA");
    assert_eq!(client[1], ca[0]);
    let id = gatehouse::identity::from_leaf(&client[0]).unwrap();
    assert_eq!(id.uri_sans, ["spiffe://test.client"]);
    assert_eq!(id.principals, ["test.client"]);
    let (_, leaf) = parse_x509_certificate(&client[0]).unwrap();
    let eku = leaf.extended_key_usage().unwrap().expect("client EKU");
    assert!(eku.value.client_auth, "client EKU lacks clientAuth");
    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
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
    let ca_id = gatehouse::identity::from_leaf(&ca[0]).unwrap();
    assert_eq!(ca_id.common_name.as_deref(), Some("Acme Dev Root"));
    assert!((28..=30).contains(&days_left(&ca[0])), "--days 30");

    let api = read_chain(&dir.path().join("api.crt"));
    assert_eq!(mode(&dir.path().join("api.key")), 0o600);
    let id = gatehouse::identity::from_leaf(&api[0]).unwrap();
    assert_eq!(id.dns_sans, ["api.example.com", "API2.example.com"]);
    assert_eq!(id.ip_sans, ["::1", "10.0.0.1"]);
    assert!((8..=10).contains(&days_left(&api[0])), "--days 10");
    verify_server(&ca[0], &api[0], "api.example.com");

    let alice = read_chain(&dir.path().join("alice.crt"));
    assert_eq!(mode(&dir.path().join("alice.key")), 0o600);
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

/// Every `--key-type` makes a PKI whose certificates verify and whose server cert + key
/// pass `gatehouse check` (key matches cert, rustls can sign with it).
#[test]
fn cert_every_key_type_makes_a_usable_pki() {
    for key_type in ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa2048", "rsa4096"] {
        let setup = Setup::with_key_type(key_type);
        let certs = setup.certs();
        let ca = read_chain(&certs.join("ca.crt"));
        verify_server(
            &ca[0],
            &read_chain(&certs.join("server.crt"))[0],
            "test.com",
        );
        verify_client(&ca[0], &read_chain(&certs.join("client.crt"))[0]);
        let run = setup.check(&setup.config());
        assert_eq!(
            run.code,
            Some(0),
            "--key-type {key_type}: check failed\n{}{}",
            run.stdout,
            run.stderr
        );
    }
}

/// SPEC §1: `cert client --p12-password PW` also writes `<name>.p12`, mode 0600, which
/// OpenSSL 3 reads with that password (AES-256-CBC + PBKDF2).
#[test]
fn cert_client_with_p12_password_writes_a_pkcs12_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    gh(&format!("cert ca --out {d}")).ok();
    gh(&format!(
        "cert client --ca {d} --out {d} --uri spiffe://test.client --p12-password s3cret"
    ))
    .ok();
    let p12 = dir.path().join("client.p12");
    assert!(p12.is_file(), "client.p12 missing");
    assert_eq!(mode(&p12), 0o600);
    let der = std::fs::read(&p12).unwrap();
    assert_eq!(der.first(), Some(&0x30), "not DER");
    // Check the encryption with the system openssl when there is one.
    if let Ok(out) = Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-passin", "pass:s3cret", "-in"])
        .arg(&p12)
        .stdin(Stdio::null())
        .output()
    {
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "openssl pkcs12 failed: {text}");
        assert!(
            text.contains("PBKDF2") && text.contains("AES-256-CBC"),
            "{text}"
        );
    }
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

/// SPEC §1: the first line starts with `ALLOW` or `DENY`, whatever the path. A path the
/// proxy refuses (400) or redirects (escaped slash, 307) is never reported as allowed.
#[test]
fn authz_first_line_is_allow_or_deny_for_every_path() {
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
        if !(first.starts_with("ALLOW") || first.starts_with("DENY")) {
            failures.push(format!("{path}: first line is {first:?}"));
        } else if first.starts_with("ALLOW") {
            failures.push(format!("{path}: ALLOW for a spelling of /status/418"));
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
