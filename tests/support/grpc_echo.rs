//! A gRPC service `test.Echo` served over plain-text HTTP/2 (h2c, prior knowledge) and its
//! client, written by hand the way tonic's code generator writes them, without protoc: the
//! messages derive `prost::Message`, the server is a `tower` service dispatching on the path
//! to `tonic::server::Grpc`, the client calls `tonic::client::Grpc` with
//! `tonic_prost::ProstCodec`. The server counts the TCP connections it accepts, the calls it
//! answered and the most calls it had in flight at once.
//!
//! Methods (all take an [`EchoRequest`] and answer [`EchoReply`]s):
//! - `Unary`, `Forbidden`: echo the message, with the request's `x-forwarded-client-cert`;
//! - `Pause`: the same after [`PAUSE`]; `Slow`: the same after [`SLOW`];
//! - `Fail`: the status of [`failure`] at once (a trailers-only response);
//! - `BidiStream`: echoes each message as it comes;
//! - `FailLate`: echoes the first message, then ends with [`failure`] in the trailers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::codegen::{BoxFuture, BoxStream, Bytes, Service, http};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status, Streaming};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoRequest {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoReply {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
    /// The `x-forwarded-client-cert` the server received, `""` without one.
    #[prost(string, tag = "2")]
    pub(crate) xfcc: String,
}

pub(crate) const SERVICE: &str = "test.Echo";
/// How long `Pause` waits before it answers.
pub(crate) const PAUSE: Duration = Duration::from_millis(100);
/// How long `Slow` waits before it answers: far past any route timeout of these tests.
pub(crate) const SLOW: Duration = Duration::from_secs(5);
/// The parts of [`failure`].
pub(crate) const FAIL_CODE: Code = Code::FailedPrecondition;
pub(crate) const FAIL_MESSAGE: &str = "precondition failed: 100% ✓ ünïcödé";
pub(crate) const FAIL_DETAILS: &[u8] = b"\x08\x2a\x12\x04oops\x00\xff";
pub(crate) const TRAILER: (&str, &str) = ("x-custom-trailer", "kept intact");
pub(crate) const BIN_TRAILER: (&str, &[u8]) = ("x-custom-trailer-bin", b"\x00\x01\xfe\xff");

/// The non-OK status `Fail` and `FailLate` end with: a code, a message that needs
/// percent-encoding, binary details (`grpc-status-details-bin`) and custom metadata.
pub(crate) fn failure() -> Status {
    let mut md = MetadataMap::new();
    md.insert(TRAILER.0, TRAILER.1.parse().unwrap());
    md.insert_bin(BIN_TRAILER.0, MetadataValue::from_bytes(BIN_TRAILER.1));
    Status::with_details_and_metadata(
        FAIL_CODE,
        FAIL_MESSAGE,
        Bytes::from_static(FAIL_DETAILS),
        md,
    )
}

/// What the server saw.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicUsize,
    pub(crate) calls: AtomicUsize,
    in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
}

/// The running server. Dropping it stops it.
pub(crate) struct EchoServer {
    pub(crate) addr: SocketAddr,
    pub(crate) stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With `max_streams`, the server announces that SETTINGS_MAX_CONCURRENT_STREAMS and
    /// refuses streams past it.
    pub(crate) async fn start_with(max_streams: Option<u32>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let counter = stats.clone();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |conn| {
            counter.accepted.fetch_add(1, Ordering::SeqCst);
            conn
        });
        let svc = Echo(stats.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .max_concurrent_streams(max_streams)
                .serve_with_incoming(svc, incoming)
                .await
                .unwrap();
        });
        Self { addr, stats, task }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn calls(&self) -> usize {
        self.stats.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service, as `tonic-build` would generate it around a trait implementation.
#[derive(Clone)]
struct Echo(Arc<Stats>);

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let stats = self.0.clone();
        let method = req
            .uri()
            .path()
            .strip_prefix("/test.Echo/")
            .unwrap_or("")
            .to_owned();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(match method.as_str() {
                "Unary" | "Forbidden" | "Pause" | "Slow" | "Fail" => {
                    grpc.unary(Unary { stats, method }, req).await
                }
                "BidiStream" | "FailLate" => {
                    let fail_late = method == "FailLate";
                    grpc.streaming(Bidi { stats, fail_late }, req).await
                }
                _ => Status::unimplemented(format!("no method {method:?}")).into_http(),
            })
        })
    }
}

fn xfcc_of<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

struct Unary {
    stats: Arc<Stats>,
    method: String,
}

impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let stats = self.stats.clone();
        let method = self.method.clone();
        Box::pin(async move {
            stats.calls.fetch_add(1, Ordering::SeqCst);
            let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let xfcc = xfcc_of(&req);
            let message = req.into_inner().message;
            let wait = match method.as_str() {
                "Pause" => PAUSE,
                "Slow" => SLOW,
                _ => Duration::ZERO,
            };
            tokio::time::sleep(wait).await;
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            if method == "Fail" {
                return Err(failure());
            }
            Ok(Response::new(EchoReply { message, xfcc }))
        })
    }
}

struct Bidi {
    stats: Arc<Stats>,
    fail_late: bool,
}

impl tonic::server::StreamingService<EchoRequest> for Bidi {
    type Response = EchoReply;
    type ResponseStream = BoxStream<EchoReply>;
    type Future = BoxFuture<Response<BoxStream<EchoReply>>, Status>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        self.stats.calls.fetch_add(1, Ordering::SeqCst);
        let fail_late = self.fail_late;
        Box::pin(async move {
            let xfcc = xfcc_of(&req);
            let replies = req.into_inner().map(move |m| {
                m.map(|m| EchoReply {
                    message: m.message,
                    xfcc: xfcc.clone(),
                })
            });
            let out: BoxStream<EchoReply> = if fail_late {
                Box::pin(replies.take(1).chain(tokio_stream::once(Err(failure()))))
            } else {
                Box::pin(replies)
            };
            Ok(Response::new(out))
        })
    }
}

/// The client, as `tonic-build` would generate it, with the method's path as an argument.
#[derive(Clone)]
pub(crate) struct EchoClient {
    inner: tonic::client::Grpc<Channel>,
}

impl EchoClient {
    /// Plain-text HTTP/2 straight to `addr` (no proxy).
    pub(crate) async fn h2c(addr: SocketAddr, step: Duration) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
        Self::connect(endpoint, step).await
    }

    /// TLS to `addr` trusting `ca_pem`, presenting `identity` (chain PEM, key PEM), for the
    /// server name `domain` (SNI and `:authority`); tonic offers ALPN `h2` only.
    pub(crate) async fn tls(
        addr: SocketAddr,
        ca_pem: &str,
        identity: (&str, &str),
        domain: &str,
        step: Duration,
    ) -> Result<Self, String> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(identity.0, identity.1))
            .domain_name(domain);
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .origin(format!("https://{domain}").parse().unwrap())
            .tls_config(tls)
            .map_err(|e| format!("tls config: {e}"))?;
        Self::connect(endpoint, step).await
    }

    async fn connect(endpoint: Endpoint, step: Duration) -> Result<Self, String> {
        let channel = tokio::time::timeout(step, endpoint.connect_timeout(step).connect())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e:?}"))?;
        Ok(Self {
            inner: tonic::client::Grpc::new(channel),
        })
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))
    }

    /// A unary call of `path` (e.g. `/test.Echo/Unary`).
    pub(crate) async fn unary(
        &mut self,
        path: &str,
        message: &str,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::try_from(path).unwrap();
        let req = Request::new(EchoRequest {
            message: message.to_owned(),
        });
        let codec = tonic_prost::ProstCodec::default();
        self.inner.unary(req, path, codec).await
    }

    /// A bidirectional-streaming call of `path` sending `requests`.
    pub(crate) async fn streaming(
        &mut self,
        path: &str,
        requests: impl Stream<Item = EchoRequest> + Send + 'static,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::try_from(path).unwrap();
        let codec = tonic_prost::ProstCodec::default();
        self.inner
            .streaming(Request::new(requests), path, codec)
            .await
    }
}

/// `message` as the one-field protobuf [`EchoRequest`] in a gRPC length-prefixed frame
/// (uncompressed), for clients that build the body themselves.
pub(crate) fn grpc_frame(message: &str) -> Bytes {
    let body = prost::Message::encode_to_vec(&EchoRequest {
        message: message.to_owned(),
    });
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    Bytes::from(framed)
}
