//! The plaintext listener: at most `max_plaintext_connections` at once (the rest wait in the
//! kernel backlog), HTTP/1.x only, one request head within `request_header_timeout` of accept
//! (hyper's header timer starts at the first poll, so a silent or half-sent socket is closed
//! then), one `301` ([`crate::http::redirect`]) with `connection: close`, and nothing more.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::http::redirect;
use crate::metrics::Metrics;

pub(super) struct Settings {
    pub redirect_port: u16,
    pub cap: usize,
    pub head_timeout: Duration,
    pub max_head_bytes: usize,
}

pub(super) async fn accept(
    listener: TcpListener,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(settings.cap));
    let settings = Arc::new(settings);
    let mut last_error = None;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    super::accept_failed("http", &e, &mut last_error).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let active = metrics.active("http");
        let settings = settings.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _held = (permit, active);
            let port = settings.redirect_port;
            let svc = service_fn(move |req| redirect::handle(req, port));
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(settings.head_timeout)
                .keep_alive(false)
                .max_buf_size(settings.max_head_bytes.max(8192));
            let conn = b.serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            // The head is bounded by hyper's timer; the answer is a few hundred bytes. A client
            // that does not read even those is closed after a second period.
            let deadline = tokio::time::sleep(settings.head_timeout * 2);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = deadline => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(settings.head_timeout, conn).await;
                }
            }
        });
    }
}
