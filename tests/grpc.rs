//! gRPC through gatehouse to HTTP/2 cleartext upstreams (`upstream_protocol = "h2c"`), with a
//! real tonic server and client and Python's grpcio as a client nobody here wrote. Proves that
//! unary and bidirectional-streaming calls work end to end over mTLS, the upstream seeing the
//! caller's XFCC; that what gatehouse answers itself is a gRPC status (HTTP 200, trailers-only:
//! deny → PERMISSION_DENIED "RBAC: access denied", no route → UNIMPLEMENTED, upstream down →
//! UNAVAILABLE, route timeout → DEADLINE_EXCEEDED, bad path → INVALID_ARGUMENT, broken upstream
//! → INTERNAL) while the access log and metrics keep the HTTP status; that status details and
//! custom trailing metadata arrive intact; and that calls multiplex on one upstream connection
//! within the upstream's SETTINGS_MAX_CONCURRENT_STREAMS.

mod common;

#[path = "support/grpc_echo.rs"]
mod grpc_echo;

#[path = "support/grpc_gatehouse.rs"]
mod grpc_gatehouse;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_echo::*;
use grpc_gatehouse::*;
use http::Request;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

/// Expects `result` to be the error `code` decided by a `grpc-status` (not guessed by tonic
/// from an HTTP error status), and returns it.
fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        !status.message().contains("mapped from HTTP status"),
        "no grpc-status came back: {status:?}"
    );
    status
}

/// `status` is [`failure`], every part intact.
fn assert_failure(status: &Status) {
    assert_eq!(status.code(), FAIL_CODE, "{status:?}");
    assert_eq!(status.message(), FAIL_MESSAGE);
    assert_eq!(status.details(), FAIL_DETAILS);
    let md = status.metadata();
    let text = md.get(TRAILER.0).map(|v| v.to_str().unwrap());
    assert_eq!(text, Some(TRAILER.1), "{md:?}");
    let bin = md.get_bin(BIN_TRAILER.0).map(|v| v.to_bytes().unwrap());
    assert_eq!(bin, Some(Bytes::from_static(BIN_TRAILER.1)), "{md:?}");
}

/// A `FailLate` call: the reply to its one message, then the status its trailers carry.
async fn fail_late(client: &mut EchoClient) -> (EchoReply, Status) {
    let first = EchoRequest {
        message: "first".into(),
    };
    let call = client.streaming("/test.Echo/FailLate", tokio_stream::iter([first]));
    let mut replies = step(call).await.unwrap().into_inner();
    let reply = step(replies.message()).await.unwrap();
    let status = step(replies.message())
        .await
        .expect_err("FailLate ends in an error");
    (reply.expect("a reply before the error"), status)
}

#[tokio::test]
async fn the_harness_speaks_grpc_without_gatehouse() {
    let echo = EchoServer::start().await;
    let mut client = EchoClient::h2c(echo.addr, STEP).await.unwrap();
    let reply = step(client.unary("/test.Echo/Unary", "direct")).await;
    assert_eq!(reply.unwrap().into_inner().message, "direct");
    assert_failure(&expect_code(
        step(client.unary("/test.Echo/Fail", "x")).await,
        FAIL_CODE,
    ));
    let (reply, status) = fail_late(&mut client).await;
    assert_eq!(reply.message, "first");
    assert_failure(&status);
    let unknown = step(client.unary("/other.Service/Method", "x")).await;
    expect_code(unknown, Code::Unimplemented);
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn unary_call_reaches_the_h2c_upstream_with_the_callers_xfcc() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    let reply = step(client.unary("/test.Echo/Unary", "hello")).await;
    let reply = reply.unwrap().into_inner();
    assert_eq!(reply.message, "hello");
    let hash = gatehouse::identity::hex(&Sha256::digest(&gh.leaf.der));
    assert_eq!(
        reply.xfcc,
        format!("Hash={hash};Subject=\"CN=client\";URI=spiffe://test.client")
    );
    gh.proxy
        .expect_metric(r#"gatehouse_requests_total{route="grpc",code="200"}"#, 1.0)
        .await;
    let line = gh.logged("/test.Echo/Unary").await;
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["route"], "grpc", "{line}");
    assert_eq!(line["upstream"], format!("http://{}", echo.addr), "{line}");
    assert_eq!(line["principal"], "test.client", "{line}");
}

#[tokio::test]
async fn bidirectional_stream_echoes_each_message_as_it_comes() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let msg = |i: usize| EchoRequest {
        message: format!("message {i}"),
    };
    tx.try_send(msg(0)).unwrap();
    let call = client.streaming("/test.Echo/BidiStream", ReceiverStream(rx));
    let mut replies = step(call).await.unwrap().into_inner();
    // Ping-pong: each message is sent only after the previous reply came back, so a proxy
    // that held the request (or the response) back until its end would stall here.
    for i in 0..5 {
        let reply = tokio::time::timeout(STEP, replies.message())
            .await
            .unwrap_or_else(|_| panic!("no reply to message {i} while the stream is open"));
        let reply = reply.unwrap().expect("a reply");
        assert_eq!(reply.message, format!("message {i}"));
        assert!(reply.xfcc.contains("URI=spiffe://test.client"), "{reply:?}");
        if i < 4 {
            step(tx.send(msg(i + 1))).await.unwrap();
        }
    }
    drop(tx);
    // The end of the call: grpc-status 0 in the response trailers.
    assert_eq!(step(replies.message()).await.unwrap(), None);
    assert_eq!(echo.calls(), 1);
}

#[tokio::test]
async fn deny_policy_on_the_method_path_is_permission_denied() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    let denied = step(client.unary("/test.Echo/Forbidden", "let me in")).await;
    let status = expect_code(denied, Code::PermissionDenied);
    assert_eq!(status.message(), "RBAC: access denied");
    assert_eq!(echo.calls(), 0, "the denied call reached the upstream");
    expect_requests_with_code(&gh.proxy, 403, 1.0).await;
    let line = gh.logged("/test.Echo/Forbidden").await;
    assert_eq!(line["status"], 403, "the log keeps the HTTP status: {line}");
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["policy"], "deny-echo-forbidden", "{line}");
    // Other methods on the same connection still go through.
    let reply = step(client.unary("/test.Echo/Unary", "allowed")).await;
    assert_eq!(reply.unwrap().into_inner().message, "allowed");
}

#[tokio::test]
async fn upstream_down_is_unavailable() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    let down = step(client.unary("/test.Down/Unary", "anyone?")).await;
    expect_code(down, Code::Unavailable);
    gh.proxy
        .expect_metric(r#"gatehouse_requests_total{route="down",code="503"}"#, 1.0)
        .await;
    assert_eq!(gh.logged("/test.Down/Unary").await["status"], 503);
}

#[tokio::test]
async fn slow_method_past_the_route_timeout_is_deadline_exceeded() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    let started = Instant::now();
    let slow = step(client.unary("/test.Echo/Slow", "take your time")).await;
    let took = started.elapsed();
    expect_code(slow, Code::DeadlineExceeded);
    assert!(
        took >= Duration::from_millis(300) && took < SLOW / 2,
        "route timeout 300ms, the answer took {took:?}"
    );
    gh.proxy
        .expect_metric(r#"gatehouse_requests_total{route="slow",code="504"}"#, 1.0)
        .await;
    // The timed-out stream is gone, the connections stay usable.
    let reply = step(client.unary("/test.Echo/Unary", "still here")).await;
    assert_eq!(reply.unwrap().into_inner().message, "still here");
}

#[tokio::test]
async fn status_details_and_custom_trailers_arrive_intact() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    // A trailers-only answer of the upstream (the status in the one HEADERS frame)...
    let failed = step(client.unary("/test.Echo/Fail", "x")).await;
    assert_failure(&expect_code(failed, FAIL_CODE));
    // ...and real trailers, after a message.
    let (reply, status) = fail_late(&mut client).await;
    assert_eq!(reply.message, "first");
    assert_failure(&status);
    // The upstream answered both with HTTP 200: that is what gatehouse counts.
    gh.proxy
        .expect_metric(r#"gatehouse_requests_total{route="grpc",code="200"}"#, 2.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_calls_on_one_client_connection_use_one_upstream_connection() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let client = gh.client().await;
    // 50 callers sharing the one client connection, 20 calls each: up to 50 at once.
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..50 {
        let mut client = client.clone();
        callers.spawn(async move {
            for i in 0..20 {
                let message = format!("{caller}/{i}");
                let reply = client.unary("/test.Echo/Unary", &message).await?;
                assert_eq!(reply.into_inner().message, message);
            }
            Ok::<_, Status>(())
        });
    }
    let results = tokio::time::timeout(Duration::from_secs(60), callers.join_all())
        .await
        .expect("1,000 calls within 60 s");
    let failed: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failed.is_empty(),
        "{} callers failed: {failed:?}",
        failed.len()
    );
    assert_eq!(echo.calls(), 1000);
    assert_eq!(
        echo.accepted(),
        1,
        "upstream connections for 1,000 calls of 50 callers starting together"
    );
    gh.proxy
        .expect_metric(&handshakes("test.com", "ok"), 1.0)
        .await;
    gh.proxy
        .expect_metric(
            r#"gatehouse_requests_total{route="grpc",code="200"}"#,
            1000.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstreams_max_concurrent_streams_is_respected() {
    let echo = EchoServer::start_with(Some(4)).await;
    let gh = Gatehouse::start(&echo, "[proxy]\nupstream_max_connections = 1\n").await;
    let client = gh.client().await;
    // One call first: the upstream's SETTINGS are known before the burst.
    let warm = step(client.clone().unary("/test.Echo/Unary", "warm-up")).await;
    assert_eq!(warm.unwrap().into_inner().message, "warm-up");
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..16 {
        let mut client = client.clone();
        calls.spawn(async move { client.unary("/test.Echo/Pause", &i.to_string()).await });
    }
    let results = step(calls.join_all()).await;
    let failed: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    assert_eq!(echo.accepted(), 1, "upstream_max_connections = 1");
    let peak = echo.max_in_flight();
    assert!(
        (2..=4).contains(&peak),
        "calls in flight at once upstream: {peak} (SETTINGS_MAX_CONCURRENT_STREAMS 4)"
    );
}

#[tokio::test]
async fn no_matching_route_is_unimplemented() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let mut client = gh.client().await;
    let unrouted = step(client.unary("/other.Service/Method", "anyone?")).await;
    expect_code(unrouted, Code::Unimplemented);
    expect_requests_with_code(&gh.proxy, 404, 1.0).await;
    assert_eq!(gh.logged("/other.Service/Method").await["status"], 404);
    assert_eq!(echo.calls(), 0);
}

/// A gRPC request (HTTP/2, `content-type: application/grpc...`) built by hand, to see the
/// HTTP layer of gatehouse's own answers.
fn grpc_request(path: &str, content_type: &str) -> Request<Full<Bytes>> {
    Request::post(format!("https://test.com{path}"))
        .version(http::Version::HTTP_2)
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(Full::new(grpc_frame("raw")))
        .unwrap()
}

#[tokio::test]
async fn gatehouse_answers_grpc_requests_itself_with_http_200_and_a_grpc_status() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let opts = ClientOpts::new(&gh.pki, Some(&gh.leaf)).h2();
    for (path, decided, grpc_status) in [
        ("/test.Echo/Forbidden", 403, "7"),
        ("/other.Service/Method", 404, "12"),
        ("/test.Down/Unary", 503, "14"),
        ("/test.Echo/Slow", 504, "4"),
        ("/test.Broken/Unary", 502, "13"),
        ("/test.Echo/%zz", 400, "3"),
    ] {
        for content_type in ["application/grpc", "application/grpc+proto"] {
            let req = grpc_request(path, content_type);
            let r = request(gh.proxy.https, "test.com", &opts, req).await;
            let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
            let header = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap());
            assert_eq!(r.status, 200, "{path} ({content_type}): {r:?}");
            assert_eq!(header("grpc-status"), Some(grpc_status), "{path}: {r:?}");
            assert!(header("grpc-message").is_some(), "{path}: {r:?}");
            let ct = header("content-type").unwrap_or("");
            assert!(ct.starts_with("application/grpc"), "{path}: {r:?}");
            assert!(
                r.body.is_empty(),
                "trailers-only, no message: {path}: {r:?}"
            );
            if decided == 403 {
                assert_eq!(header("grpc-message"), Some("RBAC: access denied"));
            }
        }
        expect_requests_with_code(&gh.proxy, decided, 2.0).await;
    }
    // A request that is not gRPC still gets the HTTP error.
    let plain = get_h2("test.com", "/other.Service/Method");
    let r = request(gh.proxy.https, "test.com", &opts, plain)
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.headers.get("grpc-status").is_none(), "{r:?}");
}

/// The grpcio client's expectations, the same with or without gatehouse in between (except
/// what only gatehouse does: XFCC, the deny, the 404 of an unknown service).
fn check_grpcio(out: &serde_json::Value, through_gatehouse: bool) {
    assert_eq!(
        out["unary"]["reply"]["message"], "hello from grpcio",
        "{out}"
    );
    let messages: Vec<_> = out["bidi"]["replies"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["one", "two", "three"], "{out}");
    assert_eq!(out["bidi"]["code"], "OK", "{out}");
    let late = &out["fail_late"];
    assert_eq!(late["replies"][0]["message"], "first", "{out}");
    assert_eq!(late["code"], "FAILED_PRECONDITION", "{out}");
    assert_eq!(late["details"], FAIL_MESSAGE, "{out}");
    assert_eq!(late["trailers"][TRAILER.0], TRAILER.1, "{out}");
    assert_eq!(
        late["trailers"][BIN_TRAILER.0],
        gatehouse::identity::hex(BIN_TRAILER.1),
        "{out}"
    );
    assert_eq!(out["no_route"]["code"], "UNIMPLEMENTED", "{out}");
    if through_gatehouse {
        let xfcc = out["unary"]["reply"]["xfcc"].as_str().unwrap_or("");
        assert!(xfcc.contains("URI=spiffe://test.client"), "{out}");
        assert_eq!(out["forbidden"]["code"], "PERMISSION_DENIED", "{out}");
        assert_eq!(out["forbidden"]["details"], "RBAC: access denied", "{out}");
        // grpcio guesses a code from an HTTP error status, saying so in the details.
        let guessed = out["no_route"]["details"].as_str().unwrap_or("");
        assert!(!guessed.contains("Received http2 header"), "{out}");
    } else {
        assert_eq!(out["forbidden"]["reply"]["message"], "let me in", "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_client_reaches_the_harness_directly() {
    let echo = EchoServer::start().await;
    let target = echo.addr.to_string();
    let Some(out) = run_grpcio(&[&target, "--plaintext"]).await else {
        return;
    };
    check_grpcio(&out, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_client_calls_through_gatehouse() {
    let echo = EchoServer::start().await;
    let gh = Gatehouse::start(&echo, "").await;
    let target = gh.proxy.https.to_string();
    let files = ["ca.crt", "client.crt", "client.key"].map(|f| gh.pki.path(f));
    let [ca, cert, key] = files.each_ref().map(|p| p.to_str().unwrap());
    let Some(out) = run_grpcio(&[&target, "test.com", ca, cert, key]).await else {
        return;
    };
    check_grpcio(&out, true);
    expect_requests_with_code(&gh.proxy, 403, 1.0).await;
    expect_requests_with_code(&gh.proxy, 404, 1.0).await;
}
