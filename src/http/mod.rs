//! The request service. [`service`] runs one request through its phases: [`admission`]
//! (Host rules, SNI binding, header sanitizing, path normalization) → authorization →
//! routing → [`headers`] for this hop → the upstream exchange → [`logged`], the response body
//! that writes the access-log line when it ends. [`connection`] holds what the service
//! shares: the proxy-wide state and one connection's facts. An upgrade continues as a
//! [`tunnel`]; [`redirect`] is the answer of the plaintext listener (`server::plain`).
//! [`ProxyError`] classifies every answer the proxy makes itself.

pub(crate) mod admission;
pub(crate) mod connection;
pub(crate) mod grpc;

pub(crate) mod headers;
pub(crate) mod logged;
pub(crate) mod redirect;
pub(crate) mod service;
pub(crate) mod tunnel;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{Either, Full};

/// Every response body the proxy sends: an upstream's streamed body, or one it made itself.
pub(crate) type ProxyBody = Either<crate::upstream::UpstreamBody, Full<Bytes>>;

/// Why the proxy answered a request itself, classified by who caused it. The same value
/// picks the status code and the access-log/metric reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProxyError {
    /// The path failed normalization (malformed escape, NUL, control char, ...).
    BadPath(crate::request::normalize::BadPath),
    /// A header with an underscore under `headers_with_underscores = "reject"`.
    UnderscoreHeader(String),
    /// Host is not one of the hosts of the server the connection was accepted for.
    Misdirected,
    /// Denied by authorization.
    Denied,
    /// No route matched.
    NoRoute,
    /// Upstream refused or unreachable.
    UpstreamUnavailable(String),
    /// Upstream did not answer within the route timeout.
    UpstreamTimeout,
    /// Upstream answered with something that is not HTTP/1.1.
    BadUpstreamResponse(String),
    /// No Host / :authority at all.
    MissingHost,
    /// A Host / :authority that is not `name[:port]`, or more than one Host header.
    BadHost(crate::host::BadHost),
    /// HTTP/1 request with both Content-Length and Transfer-Encoding (a smuggling attempt).
    AmbiguousLength,
    /// The request body turned out malformed mid-stream (bad chunk framing), or the client
    /// went away before its end.
    BadRequestBody,
    /// The client sent no request body bytes for `stream_idle_timeout`.
    RequestTimeout,
}

impl From<crate::upstream::UpstreamError> for ProxyError {
    fn from(e: crate::upstream::UpstreamError) -> Self {
        use crate::upstream::UpstreamError;
        match e {
            UpstreamError::Unavailable(why) => Self::UpstreamUnavailable(why),
            UpstreamError::Timeout => Self::UpstreamTimeout,
            UpstreamError::BadResponse(why) => Self::BadUpstreamResponse(why),
            UpstreamError::BadTarget => {
                Self::BadPath(crate::request::normalize::BadPath::ControlOrSpace)
            }
        }
    }
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_)
            | Self::UnderscoreHeader(_)
            | Self::MissingHost
            | Self::BadHost(_)
            | Self::AmbiguousLength
            | Self::BadRequestBody => StatusCode::BAD_REQUEST,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::UpstreamUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadUpstreamResponse(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The body sent to the client. Envoy's wording where there is one.
    pub(crate) fn body(&self) -> &'static str {
        match self {
            Self::BadPath(_) => "Bad Request: invalid path\n",
            Self::UnderscoreHeader(_) => "Bad Request: header name with underscore\n",
            Self::MissingHost => "Bad Request: missing host\n",
            Self::BadHost(_) => "Bad Request: invalid host\n",
            Self::AmbiguousLength => {
                "Bad Request: ambiguous message framing (both Content-Length and Transfer-Encoding)\n"
            }
            Self::BadRequestBody => "Bad Request: malformed or incomplete request body\n",
            Self::RequestTimeout => "Request Timeout: the request body stalled\n",
            Self::Misdirected => "Misdirected Request: host does not match the TLS server name\n",
            Self::Denied => "RBAC: access denied",
            Self::NoRoute => "Not Found: no route\n",
            Self::UpstreamUnavailable(_) => "no healthy upstream\n",
            Self::UpstreamTimeout => "upstream request timeout\n",
            Self::BadUpstreamResponse(_) => {
                "upstream connect error or disconnect/reset before headers\n"
            }
        }
    }

    /// What happened, for `gatehouse authz` and debug logs.
    pub(crate) fn detail(&self) -> String {
        match self {
            Self::BadPath(b) => b.reason().to_owned(),
            Self::BadHost(b) => b.reason().to_owned(),
            Self::UnderscoreHeader(name) => {
                format!("header {name:?} has an underscore (headers_with_underscores = \"reject\")")
            }
            Self::Misdirected => "the host is not a name of the TLS server SNI chose".to_owned(),
            Self::MissingHost => "no Host header or :authority".to_owned(),
            Self::AmbiguousLength => {
                "both Content-Length and Transfer-Encoding (request smuggling)".to_owned()
            }
            other => other.body().trim_end().to_owned(),
        }
    }

    pub(crate) fn response(&self) -> Response<ProxyBody> {
        text_response(self.status(), self.body())
    }
}

/// A small `text/plain` response made by the proxy itself.
pub(crate) fn text_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    res
}
