//! Forwarding through real sockets: what the upstream sees, XFCC (scenario 7), upstream
//! failures and big bodies (scenario 8), routing, unix sockets, upgrades, the deny rule.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup(extra: &str) -> (TestPki, Proxy, ClientOpts) {
    let (pki, client, echo) = test_com().await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], echo, "", extra),
    )
    .await;
    let opts = ClientOpts::new(&pki, Some(&client));
    (pki, proxy, opts)
}

#[tokio::test]
async fn upstream_sees_forwarding_headers_and_the_untouched_query() {
    let (_pki, proxy, opts) = setup("").await;
    let req = Request::get("/anything/x?b=2&a=%2F..")
        .header("host", "test.com:8443")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "client-chosen")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = request(proxy.https, "test.com", &opts, req).await.unwrap();
    assert_eq!(reply.status, 200);
    let j = reply.json();
    assert_eq!(j["path"], "/anything/x");
    assert_eq!(j["query"], "b=2&a=%2F..");
    let h = &j["headers"];
    assert_eq!(h["host"], "test.com:8443", "host is kept");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-request-id"], "client-chosen");

    let reply = request(proxy.https, "test.com", &opts, get("test.com", "/headers"))
        .await
        .unwrap();
    let id = reply.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID-shaped request id is added: {id}");
    proxy
        .expect_metric("gatehouse_requests_total{route=\"0\",code=\"200\"}", 2.0)
        .await;
}

#[tokio::test]
async fn h2_requests_reach_the_upstream_with_a_host_header() {
    let (_pki, proxy, opts) = setup("").await;
    let reply = request(
        proxy.https,
        "test.com",
        &opts.h2(),
        get_h2("test.com", "/headers"),
    )
    .await
    .unwrap();
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.json()["headers"]["host"], "test.com");
}

#[tokio::test]
async fn xfcc_is_replaced_by_default() {
    let (pki, client, echo) = test_com().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let req = Request::get("/headers")
        .header("host", "test.com")
        .header(
            "x-forwarded-client-cert",
            "By=spiffe://evil;Hash=00;URI=spiffe://admin",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = request(proxy.https, "test.com", &opts, req).await.unwrap();
    let xfcc = reply.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap()
        .to_owned();
    let hash = gatehouse::identity::hex(&Sha256::digest(&client.der));
    assert_eq!(
        xfcc,
        format!("Hash={hash};Subject=\"CN=client\";URI=spiffe://test.client")
    );
}

#[tokio::test]
async fn xfcc_is_removed_under_sanitize_and_appended_under_append_forward() {
    for (mode, want) in [
        ("sanitize", None),
        ("append_forward", Some("By=x;Hash=00,Hash=")),
    ] {
        let (_pki, proxy, opts) =
            setup(&format!("[proxy]\nforward_client_cert = \"{mode}\"")).await;
        let req = Request::get("/headers")
            .header("host", "test.com")
            .header("x-forwarded-client-cert", "By=x;Hash=00")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let j = request(proxy.https, "test.com", &opts, req)
            .await
            .unwrap()
            .json();
        let got = j["headers"]
            .get("x-forwarded-client-cert")
            .and_then(|v| v.as_str());
        match want {
            None => assert_eq!(got, None, "{mode}"),
            Some(prefix) => assert!(got.unwrap().starts_with(prefix), "{mode}: {got:?}"),
        }
    }
}

#[tokio::test]
async fn upstream_down_is_503_and_slow_is_504() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let client = pki.client("spiffe://test.client");
    // A port nobody listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let echo = start_echo().await;
    let extra = format!(
        "[[route]]\npath_prefix = \"/delay\"\nupstream = \"http://{echo}\"\ntimeout = \"300ms\"\nname = \"slow\"\n"
    );
    let cfg = config(&pki, &["test.com"], dead, "", "")
        .replace("[[route]]", &format!("{extra}\n[[route]]"));
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let down = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(down.status, 503);
    let slow = request(proxy.https, "test.com", &opts, get("test.com", "/delay/3"))
        .await
        .unwrap();
    assert_eq!(slow.status, 504);
    let fast = request(proxy.https, "test.com", &opts, get("test.com", "/delay/0"))
        .await
        .unwrap();
    assert_eq!(fast.status, 200);
    proxy
        .expect_metric("gatehouse_requests_total{route=\"slow\",code=\"504\"}", 1.0)
        .await;
    proxy
        .expect_metric("gatehouse_requests_total{route=\"1\",code=\"503\"}", 1.0)
        .await;
}

#[tokio::test]
async fn bad_upstream_response_is_502() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let client = pki.client("spiffe://test.client");
    let bogus = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = bogus.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = bogus.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"this is not HTTP\r\n\r\n").await;
        }
    });
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], addr, "", "")).await;
    let r = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&client)),
        get("test.com", "/"),
    )
    .await;
    assert_eq!(r.unwrap().status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mib_bodies_both_ways_are_intact() {
    let (_pki, proxy, opts) = setup("").await;
    const SIZE: usize = 20 << 20;
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let sha = gatehouse::identity::hex(&Sha256::digest(&body));
    for opts in [opts.clone().h1(), opts.h2()] {
        let req = Request::post("/anything/upload")
            .header("host", "test.com")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let req = if opts.alpn[0] == b"h2" {
            to_h2(req)
        } else {
            req
        };
        let j = request(proxy.https, "test.com", &opts, req)
            .await
            .unwrap()
            .json();
        assert_eq!(j["body_bytes"], SIZE as u64);
        assert_eq!(j["body_sha256"], sha);

        let req = if opts.alpn[0] == b"h2" {
            get_h2("test.com", &format!("/bytes/{SIZE}"))
        } else {
            get("test.com", &format!("/bytes/{SIZE}"))
        };
        let reply = request(proxy.https, "test.com", &opts, req).await.unwrap();
        assert_eq!(reply.body.len(), SIZE);
        assert!(
            reply
                .body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == gatehouse::dev::echo::pattern_byte(i as u64))
        );
    }
}

fn to_h2(req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    let host = parts.headers.remove("host").unwrap();
    parts.uri = format!("https://{}{}", host.to_str().unwrap(), parts.uri.path())
        .parse()
        .unwrap();
    parts.version = http::Version::HTTP_2;
    Request::from_parts(parts, body)
}

#[tokio::test]
async fn reference_deny_rule_returns_rbac_403_and_counts_it() {
    let (pki, proxy, opts) = setup(DENY_TEAPOT).await;
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/418"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "RBAC: access denied");
    assert_eq!(r.headers["content-type"], "text/plain");
    let ok = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    // Another principal may get the teapot.
    let other = pki.issue(
        "other",
        &gatehouse::dev::pki::LeafSpec::client_uri("spiffe://other.client"),
    );
    let r = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&other)),
        get("test.com", "/status/418"),
    )
    .await;
    assert_eq!(r.unwrap().status, 418);
    proxy
        .expect_metric("gatehouse_denied_requests_total{reason=\"policy\"}", 1.0)
        .await;
    proxy
        .expect_metric(
            "gatehouse_authz_decisions_total{policy=\"deny-test-client-teapot\",action=\"deny\",result=\"matched\"}",
            1.0,
        )
        .await;
}

#[tokio::test]
async fn routes_by_host_and_prefix_and_404_without_a_match() {
    let pki = TestPki::new();
    pki.server("server", &["test.com", "api.test.com"]);
    let client = pki.client("spiffe://test.client");
    let echo = start_echo().await;
    let dir = pki.dir.path().display();
    let cfg = format!(
        r#"
[listen]
https = "127.0.0.1:0"
[[server]]
hosts = ["test.com", "api.test.com"]
cert = "{dir}/server.crt"
key = "{dir}/server.key"
client_ca = "{dir}/ca.crt"
[[route]]
hosts = ["api.test.com"]
path_prefix = "/anything"
upstream = "http://{echo}"
[[route]]
path_prefix = "/status"
upstream = "http://{echo}"
"#
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let status = |host: &'static str, path: &'static str| {
        let opts = &opts;
        let addr = proxy.https;
        async move {
            request(addr, host, opts, get(host, path))
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(status("api.test.com", "/anything/x").await, 200);
    assert_eq!(status("test.com", "/anything/x").await, 404);
    assert_eq!(status("test.com", "/statusx").await, 404);
    assert_eq!(status("test.com", "/status/201").await, 201);
    proxy
        .expect_metric("gatehouse_requests_total{route=\"none\",code=\"404\"}", 2.0)
        .await;
}

#[tokio::test]
async fn unix_socket_upstream() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let client = pki.client("spiffe://test.client");
    let sock = pki.path("upstream.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let body = format!("unix saw: {head}");
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let cfg = config(&pki, &["test.com"], "127.0.0.1:1".parse().unwrap(), "", "").replace(
        "upstream = \"http://127.0.0.1:1\"",
        &format!("upstream = \"unix:{}\"", sock.display()),
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let r = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&client)),
        get("test.com", "/a/b?c=d"),
    )
    .await;
    assert_eq!(r.unwrap().text(), "unix saw: GET /a/b?c=d HTTP/1.1");
}

#[tokio::test]
async fn websocket_style_upgrade_is_passed_through() {
    let (_pki, proxy, opts) = setup("").await;
    let mut tls = connect(proxy.https, "test.com", &opts).await.unwrap();
    tls.write_all(b"GET /upgrade HTTP/1.1\r\nHost: test.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(STEP, tls.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    tls.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    tokio::time::timeout(STEP, tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}

/// A TCP relay in front of `to` that counts the connections it accepted.
async fn counting_relay(to: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn keep_alive_connections_are_reused_upstream() {
    // Sequential requests with every body shape (empty, fixed length, streamed chunked, HEAD)
    // go over one pooled upstream connection.
    let (pki, client, echo) = test_com().await;
    let (relay, upstream_connections) = counting_relay(echo).await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], relay, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let tls = connect(proxy.https, "test.com", &opts).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let paths = [
        "/status/200",
        "/status/204",
        "/bytes/70000",
        "/headers",
        "/status/201",
    ];
    for i in 0..50 {
        let path = paths[i % paths.len()];
        let mut req = get("test.com", path);
        if i % 7 == 0 {
            *req.method_mut() = http::Method::HEAD;
        }
        let res = tokio::time::timeout(STEP, send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let _ = collect(res).await.unwrap();
    }
    assert_eq!(upstream_connections.load(Ordering::SeqCst), 1);
}
