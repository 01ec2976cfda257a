//! `gatehouse authz` runs the proxy's own admission steps and policy engine, so the dry-run
//! and the proxy give the same answer. A table of requests (underscore headers, client XFCC,
//! hosts with ports and trailing dots, escaped slashes, bad paths) is sent through the real
//! proxy and asked of the real binary; their verdicts must agree.

mod common;

use common::binary::gatehouse_in;
use common::*;

const POLICIES: &str = r#"
[proxy]
path_normalization = "merge_slashes"
escaped_slashes = "redirect"

[[policy]]
name = "deny-admin"
action = "deny"
  [[policy.rules]]
  to.hosts = ["admin.example.com"]

[[policy]]
name = "deny-teapot"
action = "deny"
  [[policy.rules]]
  from.principals = ["test.client"]
  to.paths = ["/status/418"]

[[policy]]
name = "deny-debug"
action = "deny"
  [[policy.rules]]
  when = [{ key = "request.headers[x-debug]", values = ["1"] }]

[[policy]]
name = "deny-forged-identity"
action = "deny"
  [[policy.rules]]
  when = [{ key = "request.headers[x-forwarded-client-cert]", values = ["*"] }]

[[policy]]
name = "deny-private"
action = "deny"
  [[policy.rules]]
  to.paths = ["/private/*"]
  to.methods = ["GET", "POST"]
"#;

/// What the proxy did with a request, in `gatehouse authz`'s words.
fn proxy_verdict(raw: &str) -> String {
    match status_of(raw) {
        403 => "DENY".into(),
        status @ (400 | 421 | 307 | 431) => format!("REFUSED {status}"),
        0 => format!("NO RESPONSE: {raw:?}"),
        _ => "ALLOW".into(),
    }
}

/// The first words of `gatehouse authz`'s first line: `ALLOW`, `DENY`, `REFUSED <status>`.
fn authz_verdict(first_line: &str) -> String {
    let mut words = first_line.split([' ', ':']);
    match words.next() {
        Some("REFUSED") => format!("REFUSED {}", words.next().unwrap_or_default()),
        Some(w) => w.to_owned(),
        None => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_and_the_proxy_agree() {
    let (pki, client, echo) = test_com().await;
    // One server for several names; the test client always sends SNI test.com.
    let cfg = config(
        &pki,
        &["test.com", "*.example.com", "127.0.0.1"],
        echo,
        "",
        POLICIES,
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();
    let config_path = pki.path("gatehouse.toml");
    let cert_path = pki.path("client.crt");

    /// (method, host, path, headers)
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    let rows: &[Row] = &[
        ("GET", "test.com", "/status/200", &[]),
        ("GET", "TEST.com", "/status/200", &[]),
        ("GET", "test.com:8443", "/status/200", &[]),
        ("GET", "test.com.", "/status/200", &[]),
        ("GET", "test.com.:8443", "/status/418", &[]),
        ("GET", "test.com", "/status/418", &[]),
        ("GET", "test.com", "//status//418", &[]),
        ("GET", "test.com", "/status/./418", &[]),
        ("GET", "test.com", "/status/%2e/418", &[]),
        ("GET", "test.com", "/%73tatus/418", &[]),
        ("GET", "test.com", "/status/418/..;/418", &[]),
        ("GET", "test.com", "/status%2F418", &[]),
        ("GET", "test.com", "/status%5c418?x=1", &[]),
        ("GET", "test.com", "/%2Fevil.com", &[]),
        ("GET", "test.com", "/a%zz", &[]),
        ("GET", "test.com", "/a%00b", &[]),
        ("GET", "other.org", "/status/200", &[]),
        ("GET", "admin.example.com", "/status/200", &[]),
        ("GET", "admin.example.com.", "/status/200", &[]),
        ("GET", "ADMIN.example.com:443", "/status/200", &[]),
        ("GET", "www.example.com", "/status/200", &[]),
        ("GET", "a.b.example.com", "/status/200", &[]),
        ("GET", "a.com:1:2", "/status/200", &[]),
        ("GET", "test.com:", "/status/200", &[]),
        ("GET", "[::1]:8443", "/status/200", &[]),
        ("GET", "127.0.0.1:8443", "/status/200", &[]),
        ("GET", "test.com", "/status/200", &[("x-debug", "1")]),
        ("GET", "test.com", "/status/200", &[("x_debug", "1")]),
        ("GET", "test.com", "/status/200", &[("x-debug", "2")]),
        (
            "GET",
            "test.com",
            "/status/200",
            &[("x-forwarded-client-cert", "Hash=00")],
        ),
        (
            "GET",
            "test.com",
            "/status/200",
            &[("X-Forwarded-Client-Cert", "By=a;URI=spiffe://admin")],
        ),
        ("GET", "test.com", "/private/x", &[]),
        ("HEAD", "test.com", "/private/x", &[]),
        ("POST", "test.com", "/private//x", &[]),
        ("GET", "test.com", "/private%2Fx", &[]),
        ("GET", "test.com", "/public/../private/x", &[]),
        ("OPTIONS", "test.com", "*", &[]),
        (
            "GET",
            "test.com",
            "/status/200",
            &[("connection", "x-debug"), ("x-debug", "1")],
        ),
    ];
    assert!(rows.len() >= 30);
    let mut disagreements = Vec::new();
    for (method, host, path, headers) in rows {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        let mut connection = "close".to_owned();
        for (k, v) in *headers {
            if k.eq_ignore_ascii_case("connection") {
                connection = format!("close, {v}");
            } else {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Connection: {connection}\r\n\r\n"));
        let raw = raw(proxy.https, "test.com", &opts, head.as_bytes(), STEP).await;
        let by_proxy = proxy_verdict(&raw);

        let mut args = vec![
            "authz".to_owned(),
            "-c".into(),
            config_path.display().to_string(),
            "--cert".into(),
            cert_path.display().to_string(),
            "--sni".into(),
            "test.com".into(),
            "--method".into(),
            (*method).into(),
            "--host".into(),
            (*host).into(),
            "--path".into(),
            (*path).into(),
        ];
        for (k, v) in *headers {
            args.push("--header".into());
            args.push(format!("{k}={v}"));
        }
        let run = tokio::task::spawn_blocking({
            move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                gatehouse_in(None, &args)
            }
        })
        .await
        .unwrap();
        run.ok();
        let by_authz = authz_verdict(run.first_line());
        println!(
            "{method} {host} {path} {headers:?}: proxy {by_proxy}, authz {}",
            run.first_line()
        );
        if by_proxy != by_authz {
            disagreements.push(format!(
                "{method} {host} {path} {headers:?}: proxy says {by_proxy} ({}), authz says {:?}",
                raw.lines().next().unwrap_or_default(),
                run.first_line()
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
