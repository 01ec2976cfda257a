//! The upstream side: one pooled HTTP/1.1 keep-alive client (hyper-util) shared by every
//! route and every snapshot, so a reload never drops pooled connections. Upstreams are
//! `http://host:port` or `unix:/path`; failures are classified into 502 / 503 / 504.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::ProxyError;
use crate::config::Upstream;
use crate::identity::hex;

/// How long an idle pooled upstream connection is kept (nginx keepalive_timeout's default is 60 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream: enough for a busy single upstream (HAProxy/Caddy-like).
const POOL_MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// Marks a URI authority that encodes a unix socket path (hex) rather than host:port.
const UNIX_SUFFIX: &str = ".unix.gatehouse";

/// The shared upstream client.
#[derive(Clone)]
pub struct Upstreams {
    client: Client<Connector, Incoming>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    pub fn new() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_UPSTREAM)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .build(Connector);
        Self { client }
    }

    /// Sends `req` to `upstream` for `target` (the normalized path and the query), waiting at
    /// most `timeout` for the response head.
    pub async fn send(
        &self,
        upstream: &Upstream,
        timeout: Duration,
        target: &str,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, ProxyError> {
        *req.uri_mut() = upstream_uri(upstream, target)?;
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) if e.is_connect() => Err(ProxyError::UpstreamUnavailable(error_chain(&e))),
            Ok(Err(e)) => Err(ProxyError::BadUpstreamResponse(error_chain(&e))),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `http://<authority><target>`; for unix sockets the authority carries the hex path. The
/// authority was validated at load, so a failure can only come from the target: a 400.
fn upstream_uri(upstream: &Upstream, target: &str) -> Result<Uri, ProxyError> {
    let text = match upstream {
        Upstream::Tcp { authority } => format!("http://{authority}{target}"),
        Upstream::Unix(path) => {
            format!(
                "http://{}{UNIX_SUFFIX}{target}",
                hex(path.as_os_str().as_encoded_bytes())
            )
        }
    };
    text.parse()
        .map_err(|_| ProxyError::BadPath(super::normalize::BadPath::ControlOrSpace))
}

fn unix_path(host: &str) -> Option<PathBuf> {
    let hex = host.strip_suffix(UNIX_SUFFIX)?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    Some(PathBuf::from(String::from_utf8(bytes?).ok()?))
}

/// Connects to TCP or unix-socket upstreams, as the URI says.
#[derive(Clone, Copy, Debug)]
pub struct Connector;

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TokioIo<UpstreamStream>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamStream>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            if let Some(path) = unix_path(host) {
                return Ok(TokioIo::new(UpstreamStream::Unix(
                    UnixStream::connect(path).await?,
                )));
            }
            let port = uri.port_u16().unwrap_or(80);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(UpstreamStream::Tcp(tcp)))
        })
    }
}

/// A connection to an upstream.
#[derive(Debug)]
pub enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths_round_trip_through_the_uri() {
        let up = Upstream::Unix(PathBuf::from(
            "/var/run/a very/long path/to/the/upstream.sock",
        ));
        let uri = upstream_uri(&up, "/x?y=1").unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/x?y=1");
        assert_eq!(
            unix_path(uri.host().unwrap()),
            Some(PathBuf::from(
                "/var/run/a very/long path/to/the/upstream.sock"
            ))
        );
        let tcp = Upstream::Tcp {
            authority: "127.0.0.1:8000".into(),
        };
        assert_eq!(
            upstream_uri(&tcp, "/a").unwrap().to_string(),
            "http://127.0.0.1:8000/a"
        );
        assert_eq!(unix_path("127.0.0.1"), None);
    }
}
