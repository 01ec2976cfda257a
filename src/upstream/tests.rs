use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;

use super::*;
use crate::config::UpstreamProtocol;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A one-connection-at-a-time upstream that answers every request with `body` and counts
/// the connections it accepted.
async fn upstream(body: &'static str) -> (Upstream, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        Bytes::from_static(body.as_bytes()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let up = Upstream::Tcp {
        authority: addr.to_string(),
    };
    (up, accepted)
}

/// A request with an empty `Incoming` body, as the proxy would forward a GET.
fn get() -> Request<RequestBody> {
    let mut req = Request::new(Either::Right(Empty::new()));
    req.headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_static("up"));
    req
}

async fn fetch(pool: &Arc<Pool>) -> String {
    let res = pool
        .send(
            Duration::from_secs(5),
            "/x?y=1".into(),
            get(),
            &Counter::default(),
        )
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_connection_is_reused_once_its_body_was_read() {
    let (up, accepted) = upstream("hello").await;
    let upstreams = Upstreams::new(1024);
    let slot = PoolSlot::new();
    let pool = upstreams.pool(&slot, &up, UpstreamProtocol::Http1).clone();
    for _ in 0..5 {
        assert_eq!(fetch(&pool).await, "hello");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(), 1);
    // Another snapshot's slot for the same upstream finds the same pool.
    let other = PoolSlot::new();
    assert!(Arc::ptr_eq(
        upstreams.pool(&other, &up, UpstreamProtocol::Http1),
        &pool
    ));
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_pool_them_all() {
    let (up, accepted) = upstream("x").await;
    let pool = Upstreams::new(1024)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    let held: Vec<_> = futures_join(&pool, 3).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(pool.idle_count(), 0, "bodies not read yet");
    drop(held);
    // Dropped before their (non-empty) end: the connections are not pooled.
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(fetch(&pool).await, "x");
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn at_most_max_connections_are_opened_and_waiters_are_served_in_turn() {
    let (up, accepted) = upstream("x").await;
    let pool = Upstreams::new(2)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move { fetch(&pool).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "x");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(pool.idle_count(), 2);
}

#[tokio::test]
async fn a_request_that_finds_every_slot_busy_times_out_as_504() {
    let (up, accepted) = upstream("x").await;
    let pool = Upstreams::new(1)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    // The one connection stays busy: its body is never read.
    let held = pool
        .send(
            Duration::from_secs(5),
            "/".into(),
            get(),
            &Counter::default(),
        )
        .await
        .unwrap();
    let e = pool
        .send(
            Duration::from_millis(200),
            "/".into(),
            get(),
            &Counter::default(),
        )
        .await
        .err();
    assert!(matches!(e, Some(UpstreamError::Timeout)), "{e:?}");
    // Released by reading the body to its end: the next request reuses it.
    let body = held.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"x");
    assert_eq!(fetch(&pool).await, "x");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

async fn futures_join(pool: &Arc<Pool>, n: usize) -> Vec<Response<UpstreamBody>> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..n {
        let pool = pool.clone();
        pending.push(tokio::spawn(async move {
            pool.send(
                Duration::from_secs(5),
                "/".into(),
                get(),
                &Counter::default(),
            )
            .await
            .unwrap()
        }));
    }
    for p in pending {
        out.push(p.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_stale_pooled_connection_is_replaced_without_failing_the_request() {
    // An upstream that answers one request per connection, then closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream::Tcp {
        authority: listener.local_addr().unwrap().to_string(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut tcp,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            )
            .await;
            // Closed without `connection: close`: the client pools it and finds it dead.
        }
    });
    let pool = Upstreams::new(1024)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    for _ in 0..3 {
        assert_eq!(fetch(&pool).await, "ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn refused_is_503_and_silence_is_504_and_garbage_is_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream::Tcp {
        authority: closed.local_addr().unwrap().to_string(),
    };
    drop(closed);
    let pool = Upstreams::new(1024)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    let e = pool
        .send(
            Duration::from_secs(5),
            "/".into(),
            get(),
            &Counter::default(),
        )
        .await
        .err();
    assert!(matches!(e, Some(UpstreamError::Unavailable(_))), "{e:?}");

    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream::Tcp {
        authority: silent.local_addr().unwrap().to_string(),
    };
    let pool = Upstreams::new(1024)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    let e = pool
        .send(
            Duration::from_millis(200),
            "/".into(),
            get(),
            &Counter::default(),
        )
        .await
        .err();
    assert!(matches!(e, Some(UpstreamError::Timeout)), "{e:?}");

    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = silent.accept().await {
            let _ = tcp.read(&mut [0u8; 1024]).await;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"NOT HTTP\r\n\r\n").await;
        }
    });
    let e = pool
        .send(
            Duration::from_secs(5),
            "/".into(),
            get(),
            &Counter::default(),
        )
        .await
        .err();
    assert!(matches!(e, Some(UpstreamError::BadResponse(_))), "{e:?}");
}

#[tokio::test]
async fn a_target_that_is_not_origin_form_is_a_400() {
    let (up, _) = upstream("x").await;
    let pool = Upstreams::new(1024)
        .pool(&PoolSlot::new(), &up, UpstreamProtocol::Http1)
        .clone();
    let e = pool
        .send(
            Duration::from_secs(5),
            "/a b".into(),
            get(),
            &Counter::default(),
        )
        .await
        .err();
    assert!(matches!(e, Some(UpstreamError::BadTarget)), "{e:?}");
}
