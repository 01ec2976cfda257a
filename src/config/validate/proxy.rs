//! `[proxy]`: normalization, header and certificate-forwarding modes, timeouts, and the
//! numeric limits.

use std::time::Duration;

use super::{Errors, choice, duration, int_in};
use crate::config::raw::*;
use crate::config::*;
use crate::request::normalize::{EscapedSlashes, Options, PathNormalization};

/// A numeric `[proxy]` key: its range and its default.
struct Limit<T> {
    key: &'static str,
    min: i64,
    max: i64,
    default: T,
}

impl<T: TryFrom<i64> + Copy> Limit<T> {
    /// The configured value, range-checked (so it converts to `T` without truncation), or the
    /// default.
    fn read(&self, value: Option<i64>, errs: &mut Errors) -> T {
        let Some(value) = value else {
            return self.default;
        };
        int_in(
            value,
            self.min,
            self.max,
            &format!("proxy.{}", self.key),
            errs,
        )
        .unwrap_or(self.default)
    }
}

/// A `[proxy]` timeout: a positive duration, and its default.
struct Timeout {
    key: &'static str,
    default: Duration,
}

impl Timeout {
    fn read(&self, value: Option<String>, errs: &mut Errors) -> Duration {
        match value {
            Some(t) => duration(&t, &format!("proxy.{}", self.key), errs).unwrap_or_default(),
            None => self.default,
        }
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// The proxy's limits, one table (docs/configuration.md gives the same ranges and defaults).
const HANDSHAKE_TIMEOUT: Timeout = Timeout {
    key: "handshake_timeout",
    default: secs(10),
};
const REQUEST_HEADER_TIMEOUT: Timeout = Timeout {
    key: "request_header_timeout",
    default: secs(10),
};
const IDLE_TIMEOUT: Timeout = Timeout {
    key: "idle_timeout",
    default: secs(300),
};
const DRAIN_TIMEOUT: Timeout = Timeout {
    key: "drain_timeout",
    default: secs(30),
};
const STREAM_IDLE_TIMEOUT: Timeout = Timeout {
    key: "stream_idle_timeout",
    default: secs(300),
};
const MAX_REQUEST_HEADER_BYTES: Limit<usize> = Limit {
    key: "max_request_header_bytes",
    min: 8192,
    max: 16 << 20,
    default: 65_536,
};
const MAX_CONNECTIONS: Limit<usize> = Limit {
    key: "max_connections",
    min: 1,
    max: 10_000_000,
    default: 10_000,
};
const H2_MAX_CONCURRENT_STREAMS: Limit<u32> = Limit {
    key: "h2_max_concurrent_streams",
    min: 1,
    max: 1 << 20,
    default: 100,
};
// HTTP/2 allows windows from 65,535 up to 2^31-1.
const H2_STREAM_WINDOW: Limit<u32> = Limit {
    key: "h2_stream_window",
    min: 65_535,
    max: (1 << 31) - 1,
    default: 65_536,
};
const H2_CONNECTION_WINDOW: Limit<u32> = Limit {
    key: "h2_connection_window",
    min: 65_535,
    max: (1 << 31) - 1,
    default: 1_048_576,
};
const MAX_CONNECTIONS_PER_IP: Limit<usize> = Limit {
    key: "max_connections_per_ip",
    min: 0,
    max: 10_000_000,
    default: 0,
};
const MAX_PLAINTEXT_CONNECTIONS: Limit<usize> = Limit {
    key: "max_plaintext_connections",
    min: 1,
    max: 10_000_000,
    default: 1024,
};
const UPSTREAM_MAX_CONNECTIONS: Limit<usize> = Limit {
    key: "upstream_max_connections",
    min: 1,
    max: 1_000_000,
    default: 1024,
};

pub(super) fn validate(raw: RawProxy, errs: &mut Errors) -> ProxySettings {
    let RawProxy {
        path_normalization,
        escaped_slashes,
        headers_with_underscores,
        forward_client_cert,
        proxy_protocol,
        handshake_timeout,
        request_header_timeout,
        idle_timeout,
        drain_timeout,
        max_request_header_bytes,
        max_connections,
        h2_max_concurrent_streams,
        h2_stream_window,
        h2_connection_window,
        stream_idle_timeout,
        max_connections_per_ip,
        max_plaintext_connections,
        upstream_max_connections,
        allowed_upgrades,
        client_cert_headers,
        trust_forwarded_headers,
    } = raw;
    let (mode, escaped_slashes, headers_with_underscores, forward_client_cert) = modes(
        path_normalization,
        escaped_slashes,
        headers_with_underscores,
        forward_client_cert,
        errs,
    );
    ProxySettings {
        normalization: Options {
            mode,
            escaped_slashes,
        },
        headers_with_underscores,
        forward_client_cert,
        proxy_protocol: proxy_protocol.unwrap_or(false),
        handshake_timeout: HANDSHAKE_TIMEOUT.read(handshake_timeout, errs),
        request_header_timeout: REQUEST_HEADER_TIMEOUT.read(request_header_timeout, errs),
        idle_timeout: IDLE_TIMEOUT.read(idle_timeout, errs),
        drain_timeout: DRAIN_TIMEOUT.read(drain_timeout, errs),
        stream_idle_timeout: STREAM_IDLE_TIMEOUT.read(stream_idle_timeout, errs),
        max_request_header_bytes: MAX_REQUEST_HEADER_BYTES.read(max_request_header_bytes, errs),
        max_connections: MAX_CONNECTIONS.read(max_connections, errs),
        h2_max_concurrent_streams: H2_MAX_CONCURRENT_STREAMS.read(h2_max_concurrent_streams, errs),
        h2_stream_window: H2_STREAM_WINDOW.read(h2_stream_window, errs),
        h2_connection_window: H2_CONNECTION_WINDOW.read(h2_connection_window, errs),
        max_connections_per_ip: MAX_CONNECTIONS_PER_IP.read(max_connections_per_ip, errs),
        max_plaintext_connections: MAX_PLAINTEXT_CONNECTIONS.read(max_plaintext_connections, errs),
        upstream_max_connections: UPSTREAM_MAX_CONNECTIONS.read(upstream_max_connections, errs),
        allowed_upgrades: upgrade_tokens(allowed_upgrades, errs),
        client_cert_headers: choice(
            client_cert_headers,
            "proxy.client_cert_headers",
            &[
                ("none", ClientCertHeaders::None),
                ("rfc9440", ClientCertHeaders::Rfc9440),
            ],
            ClientCertHeaders::None,
            errs,
        ),
        trust_forwarded_headers: trust_forwarded_headers.unwrap_or(false),
    }
}

/// The four mode keys: `path_normalization`, `escaped_slashes`, `headers_with_underscores`,
/// `forward_client_cert`.
fn modes(
    path_normalization: Option<String>,
    escaped_slashes: Option<String>,
    headers_with_underscores: Option<String>,
    forward_client_cert: Option<String>,
    errs: &mut Errors,
) -> (
    PathNormalization,
    EscapedSlashes,
    HeadersWithUnderscores,
    ForwardClientCert,
) {
    let mode = choice(
        path_normalization,
        "proxy.path_normalization",
        &[
            ("none", PathNormalization::None),
            ("base", PathNormalization::Base),
            ("merge_slashes", PathNormalization::MergeSlashes),
        ],
        PathNormalization::MergeSlashes,
        errs,
    );
    let escaped_slashes = choice(
        escaped_slashes,
        "proxy.escaped_slashes",
        &[
            ("keep", EscapedSlashes::Keep),
            ("reject", EscapedSlashes::Reject),
            ("redirect", EscapedSlashes::Redirect),
            ("decode", EscapedSlashes::Decode),
        ],
        EscapedSlashes::Redirect,
        errs,
    );
    let headers_with_underscores = choice(
        headers_with_underscores,
        "proxy.headers_with_underscores",
        &[
            ("allow", HeadersWithUnderscores::Allow),
            ("drop", HeadersWithUnderscores::Drop),
            ("reject", HeadersWithUnderscores::Reject),
        ],
        HeadersWithUnderscores::Drop,
        errs,
    );
    let forward_client_cert = choice(
        forward_client_cert,
        "proxy.forward_client_cert",
        &[
            ("sanitize", ForwardClientCert::Sanitize),
            ("sanitize_set", ForwardClientCert::SanitizeSet),
            ("append_forward", ForwardClientCert::AppendForward),
        ],
        ForwardClientCert::SanitizeSet,
        errs,
    );
    (
        mode,
        escaped_slashes,
        headers_with_underscores,
        forward_client_cert,
    )
}

/// `allowed_upgrades`: HTTP tokens (RFC 9110 §5.6.2), without a version; `h2c` is refused,
/// because passing it through lets a client speak HTTP/2 to the upstream past every check
/// (h2c smuggling).
fn upgrade_tokens(list: Option<Vec<String>>, errs: &mut Errors) -> Vec<String> {
    let Some(list) = list else {
        return vec!["websocket".to_owned()];
    };
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let mut out = Vec::with_capacity(list.len());
    for (i, token) in list.iter().enumerate() {
        let at = format!("proxy.allowed_upgrades[{i}]");
        if token.is_empty() || !token.bytes().all(tchar) {
            errs.push(
                at,
                format!("{token:?}: expected a protocol name such as \"websocket\""),
            );
        } else if token.eq_ignore_ascii_case("h2c") {
            errs.push(
                at,
                "\"h2c\" cannot be passed through: it would let clients speak HTTP/2 to the upstream unchecked (h2c smuggling)",
            );
        } else {
            out.push(token.to_ascii_lowercase());
        }
    }
    out
}
