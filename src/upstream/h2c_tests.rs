//! The h2c pool against scripted HTTP/2 upstreams (the h2 crate's server): streams share a
//! connection, the upstream's stream limit opens another one, a GOAWAY lets streams in
//! flight finish and sends new ones to a new connection, a refused stream is sent again
//! once, trailers come back intact, and an idle connection is closed after about a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Empty};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::*;

/// What the scripted upstream does with the Nth stream (from 0) of a connection.
#[derive(Clone, Copy)]
enum Act {
    /// 200 with body "ok" and a `grpc-status: 0` trailer.
    Answer,
    /// Waits for a permit of the gate, then answers.
    Hold,
    /// RST_STREAM(REFUSED_STREAM).
    Refuse,
    /// Starts a graceful shutdown (GOAWAY), then answers this stream.
    GoAwayThenAnswer,
}

struct Script {
    max_streams: Option<u32>,
    /// Acts by stream index over the whole server; past its end, `Answer`.
    acts: Vec<Act>,
}

struct Upstream2 {
    upstream: Upstream,
    accepted: Arc<AtomicUsize>,
    /// Connections the client ended.
    closed: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

async fn h2_upstream(script: Script) -> Upstream2 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (count, held, ended) = (accepted.clone(), gate.clone(), closed.clone());
    let acts = Arc::new(script.acts);
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut builder = h2::server::Builder::new();
            if let Some(n) = script.max_streams {
                builder.max_concurrent_streams(n);
            }
            let (acts, next, gate) = (acts.clone(), next.clone(), held.clone());
            let ended = ended.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = builder.handshake::<_, Bytes>(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let act = acts.get(i).copied().unwrap_or(Act::Answer);
                    match act {
                        Act::Refuse => respond.send_reset(h2::Reason::REFUSED_STREAM),
                        Act::GoAwayThenAnswer => {
                            conn.graceful_shutdown();
                            tokio::spawn(answer(respond, None));
                        }
                        Act::Hold => {
                            tokio::spawn(answer(respond, Some(gate.clone())));
                        }
                        Act::Answer => {
                            tokio::spawn(answer(respond, None));
                        }
                    }
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Upstream2 {
        upstream: Upstream::Tcp {
            authority: addr.to_string(),
        },
        accepted,
        closed,
        gate,
    }
}

async fn answer(mut respond: h2::server::SendResponse<Bytes>, gate: Option<Arc<Semaphore>>) {
    if let Some(gate) = gate {
        let _ = gate.acquire().await.map(|p| p.forget());
    }
    let Ok(mut body) = respond.send_response(Response::new(()), false) else {
        return;
    };
    let _ = body.send_data(Bytes::from_static(b"ok"), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = body.send_trailers(trailers);
}

fn pool(up: &Upstream2, max: usize) -> Arc<Pool> {
    pool_of(&up.upstream, max)
}

fn pool_of(upstream: &Upstream, max: usize) -> Arc<Pool> {
    Upstreams::new(max)
        .pool(&PoolSlot::new(), upstream, UpstreamProtocol::H2c)
        .clone()
}

fn post() -> Request<RequestBody> {
    let mut req = Request::post("/svc/Method")
        .body(Either::Right(Empty::new()))
        .unwrap();
    req.headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_static("up"));
    req
}

/// One call: the status, the body and the `grpc-status` trailer.
async fn call(pool: &Arc<Pool>, retries: &Counter) -> Result<(u16, String, String), UpstreamError> {
    let res = pool
        .send(
            Duration::from_secs(5),
            "/svc/Method".into(),
            post(),
            retries,
        )
        .await?;
    let status = res.status().as_u16();
    let collected = res.into_body().collect().await.unwrap();
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
    Ok((status, body, trailer))
}

fn ok() -> (u16, String, String) {
    (200, "ok".to_owned(), "0".to_owned())
}

#[tokio::test]
async fn concurrent_streams_share_one_connection_and_trailers_come_back() {
    let up = h2_upstream(Script {
        max_streams: None,
        acts: Vec::new(),
    })
    .await;
    let pool = pool(&up, 1024);
    let retries = Counter::default();
    // A burst on a pool with no connection yet: the first request's connection serves all.
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (pool, retries) = (pool.clone(), retries.clone());
            tokio::spawn(async move { call(&pool, &retries).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), ok());
    }
    assert_eq!(call(&pool, &retries).await.unwrap(), ok());
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

/// Starts `n` held calls one after another, letting each reach the upstream.
async fn held_calls(
    pool: &Arc<Pool>,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<(u16, String, String), UpstreamError>>> {
    let mut calls = Vec::new();
    for _ in 0..n {
        let pool = pool.clone();
        calls.push(tokio::spawn(async move {
            call(&pool, &Counter::default()).await
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    calls
}

#[tokio::test]
async fn the_upstream_stream_limit_opens_another_connection_within_the_cap() {
    let up = h2_upstream(Script {
        max_streams: Some(2),
        acts: vec![Act::Hold; 5],
    })
    .await;
    let pool = pool(&up, 1024);
    let calls = held_calls(&pool, 5).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3, "2 + 2 + 1 streams");
    up.gate.add_permits(5);
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), ok());
    }

    // With one connection allowed, the third stream waits for a free one on it.
    let up = h2_upstream(Script {
        max_streams: Some(2),
        acts: vec![Act::Hold; 3],
    })
    .await;
    let pool = pool_of(&up.upstream, 1);
    let calls = held_calls(&pool, 3).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    up.gate.add_permits(3);
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), ok());
    }
}

#[tokio::test]
async fn after_a_goaway_streams_in_flight_finish_and_new_ones_use_a_new_connection() {
    let up = h2_upstream(Script {
        max_streams: None,
        acts: vec![Act::Hold, Act::GoAwayThenAnswer],
    })
    .await;
    let pool = pool(&up, 1024);
    let held = held_calls(&pool, 1).await;
    assert_eq!(call(&pool, &Counter::default()).await.unwrap(), ok());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The GOAWAY has arrived: the next call goes to a second connection.
    assert_eq!(call(&pool, &Counter::default()).await.unwrap(), ok());
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    up.gate.add_permits(1);
    for c in held {
        assert_eq!(
            c.await.unwrap().unwrap(),
            ok(),
            "the stream in flight finished"
        );
    }
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_once() {
    let up = h2_upstream(Script {
        max_streams: None,
        acts: vec![Act::Refuse],
    })
    .await;
    let pool = pool(&up, 1024);
    let retries = Counter::default();
    assert_eq!(call(&pool, &retries).await.unwrap(), ok());
    assert_eq!(retries.get(), 1);

    let up = h2_upstream(Script {
        max_streams: None,
        acts: vec![Act::Refuse, Act::Refuse],
    })
    .await;
    let pool = pool_of(&up.upstream, 1024);
    let retries = Counter::default();
    let twice = call(&pool, &retries).await;
    assert!(
        matches!(twice, Err(UpstreamError::BadResponse(_))),
        "{twice:?}"
    );
    assert_eq!(retries.get(), 1, "only once");
}

#[tokio::test]
async fn an_h2c_upstream_that_is_down_is_503() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    drop(listener);
    let pool = pool_of(&Upstream::Tcp { authority }, 8);
    let down = call(&pool, &Counter::default()).await;
    assert!(
        matches!(down, Err(UpstreamError::Unavailable(_))),
        "{down:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_about_a_minute_and_its_slot_freed() {
    let up = h2_upstream(Script {
        max_streams: None,
        acts: vec![],
    })
    .await;
    let pool = pool(&up, 2);
    let retries = Counter::default();
    // A call every 30 s for two minutes: the connection is kept.
    assert_eq!(call(&pool, &retries).await.unwrap(), ok());
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(call(&pool, &retries).await.unwrap(), ok());
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "a busy connection was closed"
    );
    // Then nothing: still open after 50 s, closed (GOAWAY, then the socket) by 80 s.
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(
        up.closed.load(Ordering::SeqCst),
        0,
        "closed before 60 s idle"
    );
    assert_eq!(pool.h2.lock().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    for _ in 0..100 {
        if up.closed.load(Ordering::SeqCst) == 1 && pool.slots.available_permits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        up.closed.load(Ordering::SeqCst),
        1,
        "the idle connection was kept"
    );
    assert!(pool.h2.lock().unwrap().is_empty());
    assert_eq!(pool.slots.available_permits(), 2, "its slot was not freed");
    // The next call opens a new connection.
    assert_eq!(call(&pool, &retries).await.unwrap(), ok());
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(retries.get(), 0);
}
