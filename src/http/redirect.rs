//! The plaintext listener: every request gets `301` to the same path on https
//! (`https://<host without port>[:<port unless 443>]<path and query>`); no Host → `400`.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;

use crate::tls::sni::strip_port;

/// The `location` of the redirect, or `None` when there is no usable host.
pub fn location(host: Option<&str>, https_port: u16, path_and_query: &str) -> Option<String> {
    let host = strip_port(host?.trim());
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'@')
    {
        return None;
    }
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
pub async fn handle<B>(
    req: Request<B>,
    https_port: u16,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
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
            (None, 443, "/", None),
            (Some(""), 443, "/", None),
            (Some("evil.com/x"), 443, "/", None),
        ] {
            assert_eq!(location(host, port, pq).as_deref(), want, "{host:?}");
        }
    }
}
