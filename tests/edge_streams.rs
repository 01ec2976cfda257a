//! Edge limits on requests and bodies (SPEC "Edge limits", "Upgrade"): a body with no bytes
//! moving for `stream_idle_timeout` is aborted in either direction (and its upstream
//! connection closed), `upstream_max_connections` caps upstream sockets however many streams
//! ask, an upgraded tunnel stays counted and bounded, and `h2c` is never passed through.
//! After each, a good client is still served.

mod common;

use common::upstream::{Script, scripted_upstream};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A proxy for `test.com`: `/status/...` goes to the echo upstream (the good client's
/// requests), everything else to `upstream`; plus a `[proxy]` table.
struct Setup {
    proxy: Proxy,
    opts: ClientOpts,
    _pki: TestPki,
}

async fn start(upstream: SocketAddr, proxy: &str) -> Setup {
    let (pki, client, echo) = test_com().await;
    let rest = format!(
        "[[route]]\npath_prefix = \"/status\"\nupstream = \"http://{echo}\"\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"http://{upstream}\"\n\n[proxy]\n{proxy}"
    );
    let cfg = test_com_config(&pki, "", &rest);
    let p = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    Setup {
        proxy: p,
        opts,
        _pki: pki,
    }
}

impl Setup {
    /// A good client, on a new connection of each protocol, is served.
    async fn good_client_served(&self) {
        for opts in [self.opts.clone().h1(), self.opts.clone().h2()] {
            let r = request(
                self.proxy.https,
                "test.com",
                &opts,
                get_h2("test.com", "/status/200"),
            )
            .await;
            assert_eq!(
                r.map(|r| r.status),
                Ok(200),
                "a good client is still served"
            );
        }
    }
}

fn assert_between(what: &str, t: Duration, low: Duration, high: Duration) {
    assert!(
        t >= low && t <= high,
        "{what}: {t:?}, want {low:?}..{high:?}"
    );
}

#[tokio::test]
async fn a_download_the_client_stops_reading_is_aborted_after_stream_idle_timeout() {
    let (up, seen) = scripted_upstream(Script::Endless).await;
    let setup = start(up, "stream_idle_timeout = \"1s\"").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    let mut tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    tls.write_all(b"GET /big HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 4096];
    let n = tokio::time::timeout(STEP, tls.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // The client stops reading: buffers fill within milliseconds, then nothing moves.
    let stopped = Instant::now();
    let closed = seen.closed().await;
    assert_between(
        "upstream closed after",
        closed - stopped,
        Duration::from_millis(900),
        Duration::from_secs(5),
    );
    // The client's connection was closed too: draining it ends.
    let mut rest = Vec::new();
    let drained = tokio::time::timeout(STEP, tls.read_to_end(&mut rest)).await;
    assert!(drained.is_ok(), "the client connection was left open");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    setup.good_client_served().await;
}

#[tokio::test]
async fn an_http2_stream_with_a_shut_window_is_reset_after_stream_idle_timeout() {
    let (up, seen) = scripted_upstream(Script::Endless).await;
    let setup = start(up, "stream_idle_timeout = \"1s\"").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    let tls = connect(proxy.https, "test.com", &opts.clone().h2())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = tokio::time::timeout(STEP, send.send_request(get_h2("test.com", "/big")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let started = Instant::now();
    // No window: no DATA can come; the stream is reset once the body has not moved for 1 s.
    let body = tokio::time::timeout(STEP, res.into_body().collect())
        .await
        .unwrap();
    assert!(body.is_err(), "the stalled stream ended normally");
    assert_between(
        "stream reset after",
        started.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(5),
    );
    let closed = seen.closed().await;
    assert!(closed - started < Duration::from_secs(5));
    // Only the stream was reset: the connection still serves a request with no body.
    let r = tokio::time::timeout(STEP, send.send_request(get_h2("test.com", "/status/204")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 204);
    setup.good_client_served().await;
}

#[tokio::test]
async fn a_stalled_upstream_body_is_aborted_after_stream_idle_timeout() {
    let (up, seen) = scripted_upstream(Script::StallBody).await;
    let setup = start(up, "stream_idle_timeout = \"1s\"").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    for (i, opts) in [opts.clone().h1(), opts.clone().h2()]
        .into_iter()
        .enumerate()
    {
        let tls = connect(proxy.https, "test.com", &opts).await.unwrap();
        let started = Instant::now();
        let got = request_on(tls, get_h2("test.com", "/slow")).await;
        let elapsed = started.elapsed();
        assert!(
            got.is_err(),
            "a truncated body was delivered as complete: {got:?}"
        );
        assert_between(
            "aborted after",
            elapsed,
            Duration::from_millis(900),
            Duration::from_secs(5),
        );
        let closed = seen.closed().await;
        assert!(closed - started < Duration::from_secs(5));
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            i + 1,
            "the stalled connection was pooled"
        );
        *seen.closed_at.lock().unwrap() = None;
    }
    setup.good_client_served().await;
}

#[tokio::test]
async fn a_stalled_upload_gets_408_and_never_completes_upstream() {
    let (up, seen) = scripted_upstream(Script::ReadBody).await;
    let setup = start(up, "stream_idle_timeout = \"1s\"").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    // HTTP/1.1: 10 of 1000 announced bytes, then nothing.
    let mut tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    tls.write_all(
        b"POST /upload HTTP/1.1\r\nHost: test.com\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
    let res = String::from_utf8_lossy(&out);
    assert!(res.starts_with("HTTP/1.1 408"), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
    assert_between(
        "408 after",
        started.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(5),
    );
    seen.closed().await;
    assert!(
        seen.body_bytes.load(Ordering::SeqCst) < 1000,
        "the upstream got a complete body"
    );

    // HTTP/2: a body stream that sends 10 bytes and then waits forever.
    *seen.closed_at.lock().unwrap() = None;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"0123456789"))))
        .await
        .unwrap();
    let body = StreamBody::new(ReceiverStream(rx));
    let req = http::Request::post("https://test.com/upload")
        .version(http::Version::HTTP_2)
        .body(body)
        .unwrap();
    let tls = connect(proxy.https, "test.com", &opts.clone().h2())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = tokio::time::timeout(STEP, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 408);
    seen.closed().await;
    assert!(seen.body_bytes.load(Ordering::SeqCst) < 1000 + 10);
    drop(tx);
    setup.good_client_served().await;
}

/// The echo upstream, counting the connections it accepts.
async fn counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(gatehouse::dev::echo::serve_connection(tcp));
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_http2_streams_share_four_upstream_connections() {
    let (up, accepted) = counting_echo().await;
    let setup = start(up, "upstream_max_connections = 4").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    let tls = connect(proxy.https, "test.com", &opts.clone().h2())
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for i in 0..50 {
        let mut send = send.clone();
        streams.push(tokio::spawn(async move {
            let res = send
                .send_request(get_h2("test.com", &format!("/delay/0.1?i={i}")))
                .await?;
            let status = res.status();
            res.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        }));
    }
    for s in streams {
        let status = tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(status, 200);
    }
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&n),
        "{n} upstream connections for upstream_max_connections = 4"
    );
    setup.good_client_served().await;
}

const ACTIVE: &str = "gatehouse_connections_active{listener=\"https\"}";

#[tokio::test]
async fn a_websocket_tunnel_is_counted_and_closed_when_idle() {
    let echo = start_echo().await;
    let setup = start(echo, "idle_timeout = \"2s\"\nupstream_max_connections = 1").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    let mut tunnel = open_tunnel(proxy, opts).await;
    // hyper's connection future has ended; the tunnel still counts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.metric(ACTIVE), 1.0, "the tunnel is not counted");
    // ...and holds the only upstream slot: an ordinary request waits for it.
    let busy = tokio::time::timeout(
        Duration::from_millis(500),
        request(proxy.https, "test.com", opts, get("test.com", "/anything")),
    )
    .await;
    assert!(
        busy.is_err(),
        "the tunnel's upstream connection was not counted"
    );
    // Traffic keeps it open past idle_timeout...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tunnel.write_all(b"more").await.unwrap();
        let mut echoed = [0u8; 4];
        tokio::time::timeout(STEP, tunnel.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
    }
    // ...silence closes it.
    let quiet = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut rest))
        .await
        .expect("tunnel left open")
        .ok();
    assert_between(
        "tunnel closed after",
        quiet.elapsed(),
        Duration::from_millis(1900),
        Duration::from_secs(5),
    );
    proxy.expect_metric(ACTIVE, 0.0).await;
    let r = request(proxy.https, "test.com", opts, get("test.com", "/anything")).await;
    assert_eq!(
        r.unwrap().status,
        200,
        "served once the tunnel released the upstream slot"
    );
}

#[tokio::test]
async fn a_websocket_tunnel_is_closed_at_the_end_of_the_drain() {
    let echo = start_echo().await;
    let Setup { proxy, opts, _pki } = start(echo, "drain_timeout = \"1s\"").await;
    let mut tunnel = open_tunnel(&proxy, &opts).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(proxy.shutdown());
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut rest))
        .await
        .expect("tunnel outlived the drain")
        .ok();
    assert_between(
        "tunnel closed after",
        started.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(4),
    );
    tokio::time::timeout(STEP, shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_h2c_upgrade_reaches_the_upstream_as_an_ordinary_request() {
    let echo = start_echo().await;
    let setup = start(echo, "").await;
    let (proxy, opts) = (&setup.proxy, &setup.opts);
    let req = http::Request::get("/headers")
        .header("host", "test.com")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(proxy.https, "test.com", &opts.clone().h1(), req)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let headers = &r.json()["headers"];
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the upstream: {headers}"
        );
    }
    setup.good_client_served().await;
}
