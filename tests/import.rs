//! `gatehouse import`: realistic Istio and ingress-nginx YAML (tests/fixtures/import/)
//! translated by the real binary. Each output matches its reviewed golden file, lists on
//! stderr exactly what its header lists, exits 0 or 3 as it should, passes `gatehouse check`
//! once its secrets exist, and, run against the echo upstream, behaves as the original would:
//! the allowed request passes, the denied one gets 403, the client without a certificate is
//! refused, plain HTTP is redirected.
//!
//! `GATEHOUSE_BLESS=1 cargo test --test import` rewrites the golden files (review the diff).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::binary::{BIN, gatehouse, gatehouse_in, s};
use common::example::plain_get;
use common::*;
use gatehouse::dev::pki::{Leaf, LeafSpec};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

/// One import: the importer, its input files (under `fixtures()`), the exit status, and the
/// golden output file.
struct Scenario {
    importer: &'static str,
    files: &'static [&'static str],
    exit: i32,
    golden: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        importer: "istio",
        files: &["istio/mutual-tutorial.yaml"],
        exit: 0,
        golden: "istio/mutual-tutorial.toml",
    },
    Scenario {
        importer: "istio",
        files: &["istio/simple-gateway.yaml"],
        exit: 0,
        golden: "istio/simple-gateway.toml",
    },
    Scenario {
        importer: "istio",
        files: &["istio/allow-namespaces.yaml", "istio/require-jwt.yaml"],
        exit: 3,
        golden: "istio/allow-namespaces.toml",
    },
    Scenario {
        importer: "istio",
        files: &["istio/unsupported.yaml"],
        exit: 3,
        golden: "istio/unsupported.toml",
    },
    Scenario {
        importer: "ingress-nginx",
        files: &["ingress-nginx/client-certs.yaml"],
        exit: 0,
        golden: "ingress-nginx/client-certs.toml",
    },
    Scenario {
        importer: "ingress-nginx",
        files: &["ingress-nginx/optional-pass-cert.yaml"],
        exit: 3,
        golden: "ingress-nginx/optional-pass-cert.toml",
    },
    Scenario {
        importer: "ingress-nginx",
        files: &["ingress-nginx/unsupported.yaml"],
        exit: 3,
        golden: "ingress-nginx/unsupported.toml",
    },
];

fn import(sc: &Scenario, extra: &[&str]) -> common::binary::Run {
    let mut args = vec!["import", sc.importer];
    args.extend_from_slice(sc.files);
    args.extend_from_slice(extra);
    gatehouse_in(Some(&fixtures()), &args)
}

/// The `# - ...` lines of the header's "Not translated" list.
fn header_reports(toml: &str) -> Vec<&str> {
    toml.lines()
        .take_while(|l| l.starts_with('#'))
        .skip_while(|l| !l.starts_with("# Not translated"))
        .skip(1)
        .map_while(|l| l.strip_prefix("# - "))
        .collect()
}

#[test]
fn outputs_match_the_reviewed_golden_files() {
    let bless = std::env::var_os("GATEHOUSE_BLESS").is_some();
    for sc in SCENARIOS {
        let run = import(sc, &[]);
        run.expect_code(sc.exit);
        let golden = fixtures().join(sc.golden);
        if bless {
            std::fs::write(&golden, &run.stdout).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (GATEHOUSE_BLESS=1 writes it)", golden.display()));
        assert_eq!(
            run.stdout, want,
            "{}: output differs from the golden file",
            sc.golden
        );
        let reported: Vec<&str> = run
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("not translated: "))
            .collect();
        assert_eq!(
            reported,
            header_reports(&run.stdout),
            "{}: stderr vs header",
            sc.golden
        );
        assert_eq!(reported.is_empty(), sc.exit == 0, "{}", sc.golden);
    }
}

/// What `gatehouse check` needs on disk for an imported config: each `credential_dir` as a
/// mounted TLS secret (`tls.crt`, `tls.key`, `ca.crt`) with a server certificate for the
/// server's hosts, and each `client_ca` file; all issued by `pki`'s CA.
fn write_secrets(config: &str, pki: &TestPki) {
    let doc: toml::Table = config.parse().unwrap();
    let servers = doc.get("server").and_then(|s| s.as_array()).cloned();
    for server in servers.unwrap_or_default() {
        let hosts: Vec<&str> = server["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        if let Some(dir) = server.get("credential_dir").and_then(|d| d.as_str()) {
            let leaf = pki.ca.issue(&LeafSpec::server(&hosts)).unwrap();
            std::fs::create_dir_all(dir).unwrap();
            let dir = Path::new(dir);
            std::fs::write(dir.join("tls.crt"), &leaf.chain_pem).unwrap();
            std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
            std::fs::write(dir.join("ca.crt"), &pki.ca.cert_pem).unwrap();
        }
        if let Some(ca) = server.get("client_ca").and_then(|d| d.as_str()) {
            std::fs::create_dir_all(Path::new(ca).parent().unwrap()).unwrap();
            std::fs::write(ca, &pki.ca.cert_pem).unwrap();
        }
    }
}

#[test]
fn every_output_passes_check_once_its_secrets_exist() {
    for sc in SCENARIOS {
        let pki = TestPki::new();
        let secrets = pki.path("secrets");
        let run = import(sc, &["--secrets-dir", s(&secrets)]);
        run.expect_code(sc.exit);
        let config = pki.write("gatehouse.toml", &run.stdout);
        let before = gatehouse(&["check", "-c", s(&config)]);
        assert_eq!(
            before.code,
            Some(1),
            "{}: check passed without secrets",
            sc.golden
        );
        write_secrets(&run.stdout, &pki);
        gatehouse(&["check", "-c", s(&config)]).expect_code(0);
    }
}

#[test]
fn standard_input_and_an_upstream_template() {
    use std::io::Write as _;
    let yaml = std::fs::read(fixtures().join("istio/simple-gateway.yaml")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "import",
            "istio",
            "-",
            "--upstream-template",
            "unix:/run/{namespace}/{service}-{port}.sock",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&yaml).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("# Generated by `gatehouse import istio` from -."),
        "{stdout}"
    );
    assert!(
        stdout.contains("upstream = \"unix:/run/default/httpbin-8000.sock\""),
        "{stdout}"
    );
}

#[test]
fn bad_input_exits_1_and_a_bad_template_exits_2() {
    let dir = TestPki::new();
    let bad = dir.write("bad.yaml", "kind: Gateway\nspec: [\n");
    let run = gatehouse(&["import", "istio", s(&bad)]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("bad.yaml: not valid YAML"),
        "{}",
        run.stderr
    );
    let other = dir.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
    );
    let run = gatehouse(&["import", "ingress-nginx", s(&other)]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("no Ingress object in the input"),
        "{}",
        run.stderr
    );
    let missing = gatehouse(&["import", "istio", "/nonexistent/x.yaml"]);
    missing.expect_code(1);
    let template = gatehouse(&[
        "import",
        "istio",
        s(&other),
        "--upstream-template",
        "http://{svc}",
    ]);
    template.expect_code(2);
    assert!(
        template.stderr.contains("--upstream-template"),
        "{}",
        template.stderr
    );
}

/// An imported config running in-process against the echo upstream.
struct Imported {
    pki: TestPki,
    proxy: Proxy,
}

impl Imported {
    async fn start(sc: &Scenario) -> Self {
        let pki = TestPki::new();
        let echo = start_echo().await;
        let secrets = pki.path("secrets");
        let upstream = format!("http://{echo}");
        let run = import(
            sc,
            &[
                "--secrets-dir",
                s(&secrets),
                "--upstream-template",
                &upstream,
            ],
        );
        run.expect_code(sc.exit);
        write_secrets(&run.stdout, &pki);
        let config = run
            .stdout
            .replace("\"0.0.0.0:8443\"", "\"127.0.0.1:0\"")
            .replace("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"");
        let proxy = Proxy::start(pki.dir.path(), &config).await;
        Self { pki, proxy }
    }

    fn client(&self, spec: &LeafSpec) -> Leaf {
        self.pki.ca.issue(spec).unwrap()
    }

    /// The status of one GET, or `Err` when the handshake (or connection) is refused.
    async fn status(
        &self,
        who: Option<&Leaf>,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<u16, String> {
        let mut req = http::Request::get(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let opts = ClientOpts::new(&self.pki, who);
        request(self.proxy.https, host, &opts, req)
            .await
            .map(|r| r.status)
    }

    fn http(&self) -> SocketAddr {
        self.proxy.http.expect("an http listener")
    }
}

fn spiffe(uri: &str) -> LeafSpec {
    LeafSpec::client_uri(uri)
}

fn common_name(cn: &str) -> LeafSpec {
    let mut spec = LeafSpec::client_uri("spiffe://cn.client");
    spec.common_name = Some(cn.to_owned());
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_tutorial_behaves_as_istio() {
    let g = Imported::start(&SCENARIOS[0]).await;
    let host = "httpbin.example.com";
    let test_client = g.client(&spiffe("spiffe://test.client"));
    let other = g.client(&spiffe("spiffe://other.client"));
    let who = Some(&test_client);
    assert_eq!(g.status(who, host, "/status/200", &[]).await, Ok(200));
    assert_eq!(
        g.status(who, host, "/status/418", &[]).await,
        Ok(403),
        "DENY policy"
    );
    assert_eq!(
        g.status(Some(&other), host, "/status/418", &[]).await,
        Ok(418)
    );
    assert_eq!(
        g.status(who, host, "/headers", &[]).await,
        Ok(404),
        "no route"
    );
    assert!(
        g.status(None, host, "/status/200", &[]).await.is_err(),
        "MUTUAL"
    );
    let redirect = plain_get(g.http(), host, "/status/200").await;
    assert!(redirect.starts_with("http/1.1 301"), "{redirect}");
    assert!(
        redirect.contains("location: https://httpbin.example.com/status/200"),
        "{redirect}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_allow_policy_with_namespaces_blocks_and_headers() {
    let g = Imported::start(&SCENARIOS[2]).await;
    let host = "api.shop.example.com";
    let web = g.client(&spiffe("spiffe://cluster.local/ns/frontend/sa/web"));
    let job = g.client(&spiffe("spiffe://cluster.local/ns/batch/sa/job"));
    let stranger = g.client(&spiffe("spiffe://cluster.local/ns/frontend/sa/other"));
    let prod = [("x-env", "prod")];
    assert_eq!(g.status(Some(&web), host, "/headers", &prod).await, Ok(200));
    assert_eq!(
        g.status(Some(&web), host, "/headers", &[]).await,
        Ok(403),
        "when header"
    );
    assert_eq!(
        g.status(Some(&job), host, "/headers", &prod).await,
        Ok(403),
        "namespace"
    );
    assert_eq!(
        g.status(Some(&web), host, "/status/200", &[]).await,
        Ok(200)
    );
    assert_eq!(
        g.status(None, host, "/status/200", &[]).await,
        Ok(200),
        "OPTIONAL_MUTUAL"
    );
    assert_eq!(g.status(None, host, "/headers", &prod).await, Ok(403));
    assert!(
        g.status(Some(&stranger), host, "/status/200", &[])
            .await
            .is_err(),
        "subjectAltNames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_client_certs_behave_as_ingress_nginx() {
    let g = Imported::start(&SCENARIOS[4]).await;
    let host = "mydomain.com";
    let client = g.client(&common_name("client"));
    let other = g.client(&common_name("someone-else"));
    assert_eq!(
        g.status(Some(&client), host, "/status/200", &[]).await,
        Ok(200)
    );
    assert_eq!(
        g.status(Some(&client), host, "/anything/x", &[]).await,
        Ok(200)
    );
    assert_eq!(
        g.status(Some(&other), host, "/status/200", &[]).await,
        Ok(403),
        "match-cn"
    );
    assert!(
        g.status(None, host, "/status/200", &[]).await.is_err(),
        "verify-client on"
    );
    let redirect = plain_get(g.http(), host, "/api").await;
    assert!(redirect.starts_with("http/1.1 301"), "{redirect}");
}

/// A CN regular expression cannot be translated: until someone writes the names, the
/// Ingress's host denies every request rather than letting any certificate of the CA in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_cn_regex_fails_closed() {
    let g = Imported::start(&SCENARIOS[6]).await;
    let alice = g.client(&common_name("alice"));
    let status = g
        .status(Some(&alice), "legacy.example.com", "/status/200", &[])
        .await;
    assert_eq!(status, Ok(403));
}
