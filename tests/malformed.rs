//! Malformed and unusual HTTP/1.1 requests, header rewriting and the request-head timeout
//! (SPEC §3 "Malformed requests", "Routing and forwarding"), over raw TLS. Between the proxy
//! and the echo upstream sits a tap that records every byte the proxy sends upstream, so
//! "nothing is forwarded" is checked on the wire.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gatehouse::dev::pki::LeafSpec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === the tap ===

/// A TCP relay in front of the echo upstream that keeps a copy of what the proxy sent.
#[derive(Clone, Default)]
struct Tap {
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    async fn start(echo: SocketAddr) -> (Self, SocketAddr) {
        let tap = Self::default();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let t = tap.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = l.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(echo).await else {
                        return;
                    };
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let to_echo = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match down_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    t.sent.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if up_w.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = up_w.shutdown().await;
                    };
                    let from_echo = async {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                        let _ = down_w.shutdown().await;
                    };
                    tokio::join!(to_echo, from_echo);
                });
            }
        });
        (tap, addr)
    }

    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    /// The number of request heads the upstream was sent.
    fn requests(&self) -> usize {
        let sent = self.sent();
        [
            "GET ", "POST ", "PUT ", "OPTIONS ", "DELETE ", "HEAD ", "PATCH ",
        ]
        .iter()
        .map(|m| {
            sent.match_indices(m)
                .filter(|(i, _)| *i == 0 || sent[..*i].ends_with('\n'))
                .count()
        })
        .sum()
    }
}

// === setup ===

struct Env {
    _pki: TestPki,
    proxy: Proxy,
    tap: Tap,
    opts: ClientOpts,
}

/// A proxy for `test.com` in front of the tapped echo, `extra` appended to the config, and a
/// client `spiffe://test.client`.
async fn setup(extra: &str) -> Env {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let (tap, upstream) = Tap::start(start_echo().await).await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], upstream, "", extra),
    )
    .await;
    let leaf = pki.issue("client", &LeafSpec::client_uri("spiffe://test.client"));
    let opts = ClientOpts::new(&pki, Some(&leaf));
    Env {
        _pki: pki,
        proxy,
        tap,
        opts,
    }
}

impl Env {
    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        connect(self.proxy.https, "test.com", &self.opts)
            .await
            .unwrap()
    }

    /// Sends `bytes` on a fresh connection and reads one response.
    async fn exchange(&self, bytes: &[u8]) -> Resp {
        let mut tls = self.connect().await;
        // The proxy may answer and close before it has read everything: ignore write errors.
        let _ = tokio::time::timeout(STEP, tls.write_all(bytes)).await;
        let mut buf = Vec::new();
        read_response(&mut tls, &mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET target` with `headers` (each `Name: value`), on a fresh connection.
    async fn get(&self, target: &str, headers: &[&str]) -> Resp {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: test.com\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("Connection: close\r\n\r\n");
        self.exchange(req.as_bytes()).await
    }

    /// Gives the proxy a moment to forward anything it was going to forward.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// === a minimal HTTP/1.1 response reader ===

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} not JSON ({e}): {}", self.status, self.text()))
    }

    /// The request headers the echo upstream saw (`/anything` and `/headers` answers).
    fn upstream_headers(&self) -> serde_json::Map<String, serde_json::Value> {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["headers"].as_object().cloned().unwrap()
    }
}

/// Reads one response from `s`; `buf` carries bytes already read past a previous response.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<Resp, String> {
    tokio::time::timeout(STEP, read_response_unbounded(s, buf))
        .await
        .map_err(|_| "timed out reading a response".to_owned())?
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk).await {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) => Err(format!(
            "read: {e} (after {:?})",
            String::from_utf8_lossy(buf)
        )),
    }
}

async fn read_response_unbounded<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Resp, String> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(s, buf).await? {
            return Err(format!(
                "closed before a response head: {:?}",
                String::from_utf8_lossy(buf)
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let status = status_of(lines.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(s, buf).await? {
                    return Err("closed inside a chunk size".into());
                }
            };
            let size_line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap_or_default().trim(), 16)
                    .map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
            while buf.len() < line_end + 2 + size + 2 {
                if !fill(s, buf).await? {
                    return Err("closed inside a chunk".into());
                }
            }
            resp.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Ok(resp);
            }
        }
    } else if let Some(n) = resp
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        while buf.len() < n {
            if !fill(s, buf).await? {
                return Err("closed inside a body".into());
            }
        }
        resp.body = buf.drain(..n).collect();
    } else {
        while fill(s, buf).await? {}
        resp.body = std::mem::take(buf);
    }
    Ok(resp)
}

/// Whether the server closes the connection within `within` (EOF or a reset), reading and
/// discarding anything it sends first.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

// === malformed framing ===

#[tokio::test]
async fn content_length_and_transfer_encoding_together_get_400_and_nothing_is_forwarded() {
    let env = setup("").await;
    let mut failures = Vec::new();
    for (what, head) in [
        (
            "CL then TE",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "CL 0 then TE",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let req = format!(
            "POST /anything HTTP/1.1\r\nHost: test.com\r\n{head}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let r = env.exchange(req.as_bytes()).await;
        if r.status != 400 {
            failures.push(format!("{what}: got {} {}", r.status, r.text()));
        }
    }
    env.settle().await;
    if env.tap.requests() != 0 {
        failures.push(format!("forwarded upstream:\n{}", env.tap.sent()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn header_names_with_spaces_get_400() {
    let env = setup("").await;
    for header in ["X Bad: 1", "X-Bad : 1", " X-Bad: 1", "X-Bad\t: 1"] {
        let r = env.get("/anything", &[header]).await;
        assert_eq!(r.status, 400, "{header:?}: {}", r.text());
    }
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
}

#[tokio::test]
async fn a_chunked_body_malformed_mid_stream_never_reaches_the_upstream_complete() {
    let env = setup("").await;
    let mut tls = env.connect().await;
    let head = "POST /anything HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(b"5\r\nhello\r\n").await.unwrap();
    tls.flush().await.unwrap();
    // Let the proxy forward the head and the first chunk, then break the framing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tls
        .write_all(b"zz\r\nthis is not a chunk\r\n0\r\n\r\n")
        .await;
    let _ = tls.flush().await;
    let mut buf = Vec::new();
    let reply = read_response(&mut tls, &mut buf).await;
    if let Ok(r) = &reply {
        assert_ne!(
            r.status,
            200,
            "the upstream answered a complete request: {}",
            r.text()
        );
        assert!(!r.text().contains("body_bytes"), "{}", r.text());
    }
    env.settle().await;
    let sent = env.tap.sent();
    // The upstream got at most the head and the good chunk, never a terminating chunk.
    assert!(!sent.contains("this is not a chunk"), "{sent}");
    assert!(
        !sent.contains("0\r\n\r\n"),
        "the upstream request was completed: {sent:?}"
    );
}

#[tokio::test]
async fn a_well_formed_chunked_body_is_forwarded() {
    let env = setup("").await;
    let req = "POST /anything HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = env.exchange(req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_bytes"], 11);
}

// === request targets ===

#[tokio::test]
async fn absolute_form_is_served_by_its_path() {
    let env = setup("").await;
    for (target, path, query) in [
        ("https://test.com/anything/x", "/anything/x", None),
        (
            "https://test.com:8443/anything/x?a=1",
            "/anything/x",
            Some("a=1"),
        ),
        ("https://TEST.com//anything/./y", "/anything/y", None),
    ] {
        let r = env.get(target, &[]).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let j = r.json();
        assert_eq!(j["path"], path, "{target}");
        assert_eq!(j["query"].as_str(), query, "{target}");
    }
    assert!(
        !env.tap.sent().contains("https://"),
        "the upstream must get origin form:\n{}",
        env.tap.sent()
    );
    // The authority of an absolute-form target is the host, and it is bound to the SNI.
    let r = env.get("https://other.com/anything/x", &[]).await;
    assert_eq!(r.status, 421, "{}", r.text());
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_proxy() {
    let env = setup("").await;
    let r = env
        .exchange(b"OPTIONS * HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(r.status, 204);
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
    // An ordinary OPTIONS is proxied.
    let r = env
        .exchange(b"OPTIONS /anything HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "OPTIONS");
}

#[tokio::test]
async fn request_without_host_gets_400() {
    let env = setup("").await;
    for req in [
        "GET /anything HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /anything HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        "GET /anything HTTP/1.1\r\nHost: :8443\r\nConnection: close\r\n\r\n",
    ] {
        let r = env.exchange(req.as_bytes()).await;
        assert_eq!(r.status, 400, "{req:?}: {}", r.text());
    }
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
}

// === limits ===

#[tokio::test]
async fn request_headers_over_the_limit_get_431() {
    let env = setup("[proxy]\nmax_request_header_bytes = 8192\n").await;
    let small = format!("X-Filler: {}", "a".repeat(4000));
    let r = env.get("/anything", &[&small]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let big: Vec<String> = (0..20)
        .map(|i| format!("X-Filler-{i}: {}", "b".repeat(1000)))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let r = env.get("/anything", &big).await;
    assert_eq!(r.status, 431, "{}", r.text());
    let one_big = format!("X-Filler: {}", "c".repeat(20_000));
    let r = env.get("/anything", &[&one_big]).await;
    assert_eq!(r.status, 431, "{}", r.text());
    env.settle().await;
    assert_eq!(env.tap.requests(), 1, "only the small request is forwarded");
}

// === headers ===

#[tokio::test]
async fn headers_with_underscores_are_dropped_by_default_before_authorization() {
    // An allow policy that needs the header: a dropped header cannot satisfy it.
    let env = setup(
        r#"
[[policy]]
name = "needs-x-user"
action = "allow"
  [[policy.rules]]
  to.paths = ["/anything/guarded"]
  when = [{ key = "request.headers[x_user]", values = ["*"] }]
[[policy]]
name = "open"
action = "allow"
  [[policy.rules]]
  to.paths = ["/headers"]
"#,
    )
    .await;
    let h = env
        .get("/headers", &["X_User: admin", "x-user-ok: 1"])
        .await
        .upstream_headers();
    assert!(!h.contains_key("x_user"), "{h:?}");
    assert_eq!(h["x-user-ok"], "1");
    let r = env.get("/anything/guarded", &["x_user: admin"]).await;
    assert_eq!(r.status, 403, "a rule saw a dropped header: {}", r.text());
}

#[tokio::test]
async fn headers_with_underscores_reject() {
    let env = setup("[proxy]\nheaders_with_underscores = \"reject\"\n").await;
    let r = env.get("/headers", &["x_user: admin"]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
    let r = env.get("/headers", &["x-user: admin"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn headers_with_underscores_allow() {
    let env = setup("[proxy]\nheaders_with_underscores = \"allow\"\n").await;
    let h = env
        .get("/headers", &["x_user: admin"])
        .await
        .upstream_headers();
    assert_eq!(h["x_user"], "admin");
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_not_forwarded() {
    let env = setup("").await;
    let r = env
        .exchange(
            b"GET /headers HTTP/1.1\r\nHost: test.com\r\n\
              Connection: keep-alive, X-Secret\r\nConnection: x-other\r\n\
              X-Secret: 1\r\nX-Other: 2\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
              TE: trailers\r\nTrailer: x-t\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
        )
        .await;
    let h = r.upstream_headers();
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    // The upstream connection is the proxy's own: whatever it says there, the client's
    // Connection header's tokens are not forwarded.
    if let Some(c) = h.get("connection").and_then(|c| c.as_str()) {
        assert!(
            !c.to_ascii_lowercase().contains("x-secret") && !c.contains("x-other"),
            "{c}"
        );
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["host"], "test.com", "host is kept");
}

#[tokio::test]
async fn x_forwarded_for_and_proto() {
    let env = setup("").await;
    let h = env.get("/headers", &[]).await.upstream_headers();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    let h = env
        .get(
            "/headers",
            &["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: http"],
        )
        .await
        .upstream_headers();
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn x_request_id_is_added_when_absent_and_kept_when_present() {
    let env = setup("").await;
    let a = env.get("/headers", &[]).await.upstream_headers()["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b = env.get("/headers", &[]).await.upstream_headers()["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");
    assert_ne!(a, b, "each request gets its own id");
    let h = env
        .get("/headers", &["X-Request-Id: my-id-123"])
        .await
        .upstream_headers();
    assert_eq!(h["x-request-id"], "my-id-123");
}

// === timeouts ===

#[tokio::test]
async fn a_stalled_request_head_is_cut_off_after_request_header_timeout() {
    let env = setup("[proxy]\nrequest_header_timeout = \"1s\"\n").await;
    let mut tls = env.connect().await;
    tls.write_all(b"GET /anything HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    assert!(
        closed_within(&mut tls, Duration::from_secs(4)).await,
        "a half request head kept the connection open"
    );
    assert_eq!(env.tap.requests(), 0);
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off_after_request_header_timeout() {
    let env = setup("[proxy]\nrequest_header_timeout = \"1s\"\n").await;
    let mut tls = env.connect().await;
    let head = format!(
        "GET /anything HTTP/1.1\r\nHost: test.com\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(40)
    );
    let started = Instant::now();
    let mut cut_off = false;
    // One byte every 100 ms: the whole head would take ~8 s.
    for b in head.bytes() {
        if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
            cut_off = true;
            break;
        }
        if closed_within(&mut tls, Duration::from_millis(100)).await {
            cut_off = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(
        cut_off,
        "a client trickling its request head was not cut off"
    );
    assert_eq!(env.tap.requests(), 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_cut_off_by_request_header_timeout() {
    let env = setup("[proxy]\nrequest_header_timeout = \"1s\"\n").await;
    let mut tls = env.connect().await;
    // Nothing sent yet: the head timer has not started.
    assert!(
        !closed_within(&mut tls, Duration::from_secs(2)).await,
        "an idle new connection was closed"
    );
    let mut buf = Vec::new();
    tls.write_all(b"GET /anything/1 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut tls, &mut buf).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Idle between requests: still open, and it answers the next one.
    assert!(
        !closed_within(&mut tls, Duration::from_secs(2)).await,
        "an idle keep-alive connection was closed"
    );
    tls.write_all(b"GET /anything/2 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut tls, &mut buf).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/anything/2");
}
