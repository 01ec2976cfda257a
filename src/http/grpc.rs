//! gRPC-shaped answers: a gRPC client cannot read an HTTP error, so a gRPC request that the
//! proxy answers itself gets HTTP 200 with `grpc-status` and `grpc-message` in a
//! trailers-only response, as Envoy does. The access log and metrics keep the HTTP status
//! the proxy decided.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;

/// `content-type: application/grpc`, `application/grpc+proto`, `application/grpc;...`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(b) = headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes) else {
        return false;
    };
    b.get(..16)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"application/grpc"))
        && matches!(b.get(16), None | Some(b'+' | b';'))
}

/// The gRPC status code for an HTTP status the proxy decided (SPEC "HTTP/2 upstreams and
/// gRPC"): 403 → 7 PERMISSION_DENIED, 404 → 12 UNIMPLEMENTED, 503 → 14 UNAVAILABLE,
/// 504 → 4 DEADLINE_EXCEEDED, 400 and 431 → 3 INVALID_ARGUMENT, 502 and other 5xx → 13
/// INTERNAL. Other 4xx (408 a stalled request body, 421 a host that does not match the TLS
/// server name) are the client's fault too: 3 INVALID_ARGUMENT.
pub(crate) fn status_code(status: StatusCode) -> u8 {
    match status.as_u16() {
        403 => 7,
        404 => 12,
        503 => 14,
        504 => 4,
        500..=599 => 13,
        _ => 3,
    }
}

/// The trailers-only answer for `status` with `message` (percent-encoded as gRPC requires:
/// bytes outside printable ASCII, and `%`).
pub(crate) fn local_reply(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::new())));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-status",
        HeaderValue::from(u16::from(status_code(status))),
    );
    let mut encoded = String::with_capacity(message.len());
    for b in message.trim_end().bytes() {
        match b {
            b' '..=b'~' if b != b'%' => encoded.push(char::from(b)),
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC+json", true),
            ("application/grpc;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpcx", false),
            ("application/json", false),
            ("text/plain", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), grpc, "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        for (http, grpc) in [
            (400, 3),
            (403, 7),
            (404, 12),
            (408, 3),
            (421, 3),
            (431, 3),
            (500, 13),
            (502, 13),
            (503, 14),
            (504, 4),
        ] {
            assert_eq!(
                status_code(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }

    #[test]
    fn local_replies_are_trailers_only_with_an_encoded_message() {
        let res = local_reply(StatusCode::FORBIDDEN, "RBAC: access denied");
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "7");
        assert_eq!(h["grpc-message"], "RBAC: access denied");
        let res = local_reply(StatusCode::BAD_GATEWAY, "100% broken\ncaf\u{e9}\n");
        assert_eq!(res.headers()["grpc-message"], "100%25 broken%0Acaf%C3%A9");
    }
}
