//! The plaintext listener: every request gets `301` to the same path on https
//! (`https://<host without port>[:<port unless 443>]<path and query>`); no Host, more than
//! one, or one that breaks the Host rules ([`crate::host`]) → `400`, never a redirect elsewhere.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;

use crate::host;

/// The `location` of the redirect, or `None` when there is no usable host.
pub(crate) fn location(
    host: Option<&str>,
    https_port: u16,
    path_and_query: &str,
) -> Option<String> {
    let authority = host::parse(host?).ok()?;
    let host = authority.name();
    let pq = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    Some(if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    })
}

/// The hyper service of the plaintext listener.
pub(crate) async fn handle<B>(
    req: Request<B>,
    https_port: u16,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut host_headers = req.headers().get_all(header::HOST).iter();
    let host_header = host_headers.next().and_then(|v| v.to_str().ok());
    let host = match host_headers.next() {
        Some(_) => None,
        None => req.uri().authority().map(|a| a.as_str()).or(host_header),
    };
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut res = Response::new(Full::new(Bytes::new()));
    match location(host, https_port, pq).and_then(|l| HeaderValue::from_str(&l).ok()) {
        Some(loc) => {
            *res.status_mut() = StatusCode::MOVED_PERMANENTLY;
            res.headers_mut().insert(header::LOCATION, loc);
        }
        None => {
            *res.status_mut() = StatusCode::BAD_REQUEST;
            *res.body_mut() = Full::new(Bytes::from_static(b"Bad Request: missing host\n"));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_table() {
        for (host, port, pq, want) in [
            (
                Some("example.com"),
                8443,
                "/a?b=1",
                Some("https://example.com:8443/a?b=1"),
            ),
            (
                Some("example.com:8080"),
                443,
                "/",
                Some("https://example.com/"),
            ),
            (
                Some("EXAMPLE.com:80"),
                443,
                "/x",
                Some("https://EXAMPLE.com/x"),
            ),
            (Some("[::1]:8080"), 8443, "/", Some("https://[::1]:8443/")),
            (
                Some("127.0.0.1:8080"),
                9443,
                "/p",
                Some("https://127.0.0.1:9443/p"),
            ),
            (
                Some("example.com.:8080"),
                443,
                "/",
                Some("https://example.com/"),
            ),
            (None, 443, "/", None),
            (Some(""), 443, "/", None),
            (Some("evil.com/x"), 443, "/", None),
            (Some("a.com:1:2"), 443, "/", None),
            (Some("user@evil.com"), 443, "/", None),
            (Some(" example.com"), 443, "/", None),
        ] {
            assert_eq!(location(host, port, pq).as_deref(), want, "{host:?}");
        }
    }
}
