//! `RawConfig` → [`Config`]: resolve paths, parse durations and addresses, compile patterns
//! and policies. Every problem is collected (not just the first) with its field path.
//! Raw structs are destructured exhaustively so a new raw field cannot be silently dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::authz::Policies;
use crate::host::HostPattern;
use crate::request::normalize::{EscapedSlashes, Options, PathNormalization};

/// Collects field errors while validation goes on.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }
}

pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<FieldError>> {
    let RawConfig {
        listen,
        tls,
        server,
        route,
        policy,
        proxy,
        runtime,
        log,
        reload,
    } = raw;
    let mut errs = Errors::default();

    let reload_watch = reload
        .map(|RawReload { watch }| watch.unwrap_or(true))
        .unwrap_or(true);
    let listen = validate_listen(listen, &mut errs);
    let tls = validate_tls(tls, &mut errs);
    if server.is_empty() {
        errs.push("server", "at least one [[server]] is required");
    }
    let servers: Vec<ServerConfig> = server
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| validate_server(s, &format!("server[{i}]"), base, &mut errs))
        .collect();
    check_duplicate_hosts(&servers, &mut errs);
    let routes: Vec<RouteConfig> = route
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| validate_route(r, i, base, &mut errs))
        .collect();
    let policies = Policies::compile(&policy)
        .map_err(|e| errs.0.extend(e.into_iter().map(FieldError::from)))
        .ok();
    let proxy = validate_proxy(proxy, &mut errs);
    let RawRuntime { workers } = runtime;
    let workers = match workers {
        None => 0,
        Some(n) => int_in(n, 0, 1024, "runtime.workers", &mut errs).unwrap_or(0),
    };
    let log = validate_log(log, &mut errs);

    match (listen, policies) {
        (Some(listen), Some(policies)) if errs.0.is_empty() => Ok(Config {
            listen,
            tls,
            servers,
            routes,
            policies,
            proxy,
            workers,
            log,
            reload_watch,
        }),
        _ => Err(errs.0),
    }
}

fn validate_listen(raw: RawListen, errs: &mut Errors) -> Option<Listen> {
    let RawListen {
        https,
        http,
        admin,
        redirect_https_port,
    } = raw;
    let https = socket_addr(&https, "listen.https", errs);
    let http = http.and_then(|a| socket_addr(&a, "listen.http", errs));
    let admin = admin.and_then(|a| socket_addr(&a, "listen.admin", errs));
    let https = https?;
    let redirect_https_port = match redirect_https_port {
        Some(p) => Some(int_in(p, 1, 65535, "listen.redirect_https_port", errs)?),
        None => None,
    };
    Some(Listen {
        https,
        http,
        admin,
        redirect_https_port,
    })
}

fn socket_addr(text: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                path,
                format!("{text:?}: expected IP:port, e.g. \"0.0.0.0:8443\" or \"[::]:8443\""),
            );
            None
        }
    }
}

fn validate_tls(raw: RawTls, errs: &mut Errors) -> TlsSettings {
    let RawTls {
        min_version,
        max_version,
        session_cache_size,
    } = raw;
    let version = |v: Option<String>, path: &str, errs: &mut Errors| match v.as_deref() {
        None | Some("1.3") => TlsVersion::Tls13,
        Some("1.2") => TlsVersion::Tls12,
        Some(other) => {
            errs.push(path, format!("{other:?}: expected \"1.2\" or \"1.3\""));
            TlsVersion::Tls13
        }
    };
    let min = version(min_version, "tls.min_version", errs);
    let max = version(max_version, "tls.max_version", errs);
    if min == TlsVersion::Tls13 && max == TlsVersion::Tls12 {
        errs.push("tls.max_version", "\"1.2\" is below min_version \"1.3\"");
    }
    let session_cache_size = match session_cache_size {
        None => TlsSettings::DEFAULT_SESSION_CACHE_SIZE,
        Some(n) => int_in(
            n,
            0,
            TlsSettings::MAX_SESSION_CACHE_SIZE,
            "tls.session_cache_size",
            errs,
        )
        .unwrap_or(TlsSettings::DEFAULT_SESSION_CACHE_SIZE),
    };
    TlsSettings {
        min,
        max,
        session_cache_size,
    }
}

fn validate_server(
    raw: RawServer,
    at: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<ServerConfig> {
    let RawServer {
        hosts,
        cert,
        key,
        credential_dir,
        client_auth,
        client_ca,
        client_crl,
        allowed_sans,
        allowed_spki_sha256,
        allowed_cert_sha256,
    } = raw;
    let before = errs.0.len();
    if hosts.is_empty() {
        errs.push(
            format!("{at}.hosts"),
            "at least one host is required (\"*\" takes any SNI)",
        );
    }
    let mut patterns = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => patterns.push(p),
            Err(msg) => errs.push(format!("{at}.hosts[{i}]"), format!("{h:?}: {msg}")),
        }
    }
    let client_auth = match client_auth.as_deref() {
        None | Some("required") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some("none") => ClientAuth::None,
        Some(other) => {
            errs.push(
                format!("{at}.client_auth"),
                format!("{other:?}: expected \"none\", \"optional\" or \"required\""),
            );
            ClientAuth::Required
        }
    };
    let credentials = match (credential_dir, cert, key) {
        (Some(dir), None, None) => {
            if client_ca.is_some() || client_crl.is_some() {
                errs.push(
                    format!("{at}.credential_dir"),
                    "credential_dir replaces cert, key, client_ca and client_crl: remove those",
                );
            }
            Credentials::Dir(base.join(dir))
        }
        (Some(_), _, _) => {
            errs.push(
                format!("{at}.credential_dir"),
                "credential_dir replaces cert and key: set one or the other",
            );
            return None;
        }
        (None, Some(cert), Some(key)) => {
            let client_ca = client_ca.map(|p| base.join(p));
            if client_auth != ClientAuth::None && client_ca.is_none() {
                errs.push(
                    format!("{at}.client_ca"),
                    "required when client_auth is \"optional\" or \"required\" (the CA bundle that signs client certificates)",
                );
            }
            Credentials::Files {
                cert: base.join(cert),
                key: base.join(key),
                client_ca,
                client_crl: client_crl
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| base.join(p))
                    .collect(),
            }
        }
        (None, cert, _) => {
            let missing = if cert.is_none() { "cert" } else { "key" };
            errs.push(
                format!("{at}.{missing}"),
                "required (or set credential_dir)",
            );
            return None;
        }
    };
    if client_auth == ClientAuth::None {
        let (ca, crl) = match &credentials {
            Credentials::Files {
                client_ca,
                client_crl,
                ..
            } => (client_ca.is_some(), !client_crl.is_empty()),
            Credentials::Dir(_) => (false, false),
        };
        for (set, name) in [
            (ca, "client_ca"),
            (crl, "client_crl"),
            (allowed_sans.is_some(), "allowed_sans"),
            (allowed_spki_sha256.is_some(), "allowed_spki_sha256"),
            (allowed_cert_sha256.is_some(), "allowed_cert_sha256"),
        ] {
            if set {
                errs.push(
                    format!("{at}.{name}"),
                    "has no effect with client_auth = \"none\": remove it or set client_auth",
                );
            }
        }
    }
    let allowed_sans = allowed_sans.unwrap_or_default();
    for (i, s) in allowed_sans.iter().enumerate() {
        if s.is_empty() {
            errs.push(format!("{at}.allowed_sans[{i}]"), "must not be empty");
        }
    }
    let spki = digests(
        allowed_spki_sha256,
        &format!("{at}.allowed_spki_sha256"),
        decode_base64,
        errs,
    );
    let certs = digests(
        allowed_cert_sha256,
        &format!("{at}.allowed_cert_sha256"),
        decode_hex,
        errs,
    );
    if errs.0.len() > before {
        return None;
    }
    Some(ServerConfig {
        names: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        hosts: patterns,
        credentials,
        client_auth,
        allowed_sans,
        allowed_spki_sha256: spki,
        allowed_cert_sha256: certs,
    })
}

fn digests(
    list: Option<Vec<String>>,
    at: &str,
    decode: fn(&str) -> Option<Vec<u8>>,
    errs: &mut Errors,
) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for (i, text) in list.unwrap_or_default().iter().enumerate() {
        match decode(text).and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) {
            Some(d) => out.push(d),
            None => errs.push(
                format!("{at}[{i}]"),
                format!("{text:?}: not a SHA-256 digest"),
            ),
        }
    }
    out
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// Hex with or without colons, any case (Istio's verifyCertificateHash).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

fn check_duplicate_hosts(servers: &[ServerConfig], errs: &mut Errors) {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (si, s) in servers.iter().enumerate() {
        for (hi, name) in s.names.iter().enumerate() {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name.as_str()) {
                errs.push(
                    format!("server[{si}].hosts[{hi}]"),
                    format!("{name:?} is already served by server[{first}]"),
                );
            } else {
                seen.push((name, si));
            }
        }
    }
}

fn validate_route(
    raw: RawRoute,
    index: usize,
    base: &Path,
    errs: &mut Errors,
) -> Option<RouteConfig> {
    let RawRoute {
        name,
        hosts,
        path_prefix,
        upstream,
        timeout,
    } = raw;
    let at = format!("route[{index}]");
    let before = errs.0.len();
    let mut patterns = Vec::new();
    for (i, h) in hosts.unwrap_or_default().iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => patterns.push(p),
            Err(msg) => errs.push(format!("{at}.hosts[{i}]"), format!("{h:?}: {msg}")),
        }
    }
    let prefix = path_prefix.unwrap_or_else(|| "/".to_owned());
    if !prefix.starts_with('/') {
        errs.push(
            format!("{at}.path_prefix"),
            format!("{prefix:?}: must start with '/'"),
        );
    }
    let prefix = match prefix.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let upstream = parse_upstream(&upstream, base)
        .map_err(|msg| errs.push(format!("{at}.upstream"), format!("{upstream:?}: {msg}")))
        .ok();
    let timeout = match timeout {
        Some(t) => duration(&t, &format!("{at}.timeout"), errs),
        None => Some(DEFAULT_ROUTE_TIMEOUT),
    };
    if let Some(n) = &name
        && (n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()))
    {
        errs.push(
            format!("{at}.name"),
            format!("{n:?}: must be non-empty, printable, without spaces"),
        );
    }
    if errs.0.len() > before {
        return None;
    }
    Some(RouteConfig {
        name: std::sync::Arc::new(name.unwrap_or_else(|| index.to_string())),
        hosts: patterns,
        path_prefix: prefix,
        upstream: upstream?,
        timeout: timeout?,
    })
}

/// Envoy's default route timeout is 15 s, nginx's proxy_read_timeout 60 s; SPEC's example shows 30 s.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

fn parse_upstream(text: &str, base: &Path) -> Result<Upstream, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("expected unix:/path/to.sock".into());
        }
        return Ok(Upstream::Unix(base.join(path)));
    }
    let Some(rest) = text.strip_prefix("http://") else {
        return Err("expected http://host:port or unix:/path (upstreams speak plain HTTP)".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err("expected http://host[:port] without a path".into());
    }
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| "not a valid host[:port]".to_owned())?;
    let authority = match uri.port_u16() {
        Some(_) => uri.as_str().to_owned(),
        None => format!("{}:80", uri.host()),
    };
    Ok(Upstream::Tcp { authority })
}

fn validate_proxy(raw: RawProxy, errs: &mut Errors) -> ProxySettings {
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
    let dur = |v: Option<String>, name: &str, default: u64, errs: &mut Errors| match v {
        Some(t) => duration(&t, &format!("proxy.{name}"), errs).unwrap_or_default(),
        None => Duration::from_secs(default),
    };
    // Range-checked here, so the `as` conversions below cannot truncate.
    let int =
        |v: Option<i64>, name: &str, min: i64, max: i64, default: i64, errs: &mut Errors| -> i64 {
            int_in(
                v.unwrap_or(default),
                min,
                max,
                &format!("proxy.{name}"),
                errs,
            )
            .unwrap_or(default)
        };
    ProxySettings {
        normalization: Options {
            mode,
            escaped_slashes,
        },
        headers_with_underscores,
        forward_client_cert,
        proxy_protocol: proxy_protocol.unwrap_or(false),
        handshake_timeout: dur(handshake_timeout, "handshake_timeout", 10, errs),
        request_header_timeout: dur(request_header_timeout, "request_header_timeout", 10, errs),
        idle_timeout: dur(idle_timeout, "idle_timeout", 300, errs),
        drain_timeout: dur(drain_timeout, "drain_timeout", 30, errs),
        max_request_header_bytes: int(
            max_request_header_bytes,
            "max_request_header_bytes",
            8192,
            16 << 20,
            65536,
            errs,
        ) as usize,
        max_connections: int(
            max_connections,
            "max_connections",
            1,
            10_000_000,
            10_000,
            errs,
        ) as usize,
        h2_max_concurrent_streams: int(
            h2_max_concurrent_streams,
            "h2_max_concurrent_streams",
            1,
            1 << 20,
            100,
            errs,
        ) as u32,
        // HTTP/2 allows windows from 65,535 up to 2^31-1.
        h2_stream_window: int(
            h2_stream_window,
            "h2_stream_window",
            65_535,
            (1 << 31) - 1,
            65_536,
            errs,
        ) as u32,
        h2_connection_window: int(
            h2_connection_window,
            "h2_connection_window",
            65_535,
            (1 << 31) - 1,
            1_048_576,
            errs,
        ) as u32,
        stream_idle_timeout: dur(stream_idle_timeout, "stream_idle_timeout", 300, errs),
        max_connections_per_ip: int(
            max_connections_per_ip,
            "max_connections_per_ip",
            0,
            10_000_000,
            0,
            errs,
        ) as usize,
        max_plaintext_connections: int(
            max_plaintext_connections,
            "max_plaintext_connections",
            1,
            10_000_000,
            1024,
            errs,
        ) as usize,
        upstream_max_connections: int(
            upstream_max_connections,
            "upstream_max_connections",
            1,
            1_000_000,
            1024,
            errs,
        ) as usize,
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

fn validate_log(raw: RawLog, errs: &mut Errors) -> LogSettings {
    let RawLog {
        level,
        format,
        access_log,
    } = raw;
    let level = level.unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::builder()
        .parse(&level)
        .is_err()
    {
        errs.push(
            "log.level",
            format!("{level:?}: expected error, warn, info, debug, trace or a RUST_LOG filter"),
        );
    }
    let format = choice(
        format,
        "log.format",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        LogFormat::Text,
        errs,
    );
    LogSettings {
        level,
        format,
        access_log: access_log.unwrap_or(true),
    }
}

fn choice<T: Copy>(
    value: Option<String>,
    path: &str,
    options: &[(&str, T)],
    default: T,
    errs: &mut Errors,
) -> T {
    let Some(value) = value else { return default };
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == value) {
        return *v;
    }
    let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
    errs.push(
        path,
        format!("{value:?}: expected one of {}", names.join(", ")),
    );
    default
}

fn int_in<T: TryFrom<i64>>(
    value: i64,
    min: i64,
    max: i64,
    path: &str,
    errs: &mut Errors,
) -> Option<T> {
    if value < min || value > max {
        errs.push(
            path,
            format!("{value}: expected a whole number from {min} to {max}"),
        );
        return None;
    }
    T::try_from(value).ok()
}

/// `"500ms"`, `"10s"`, `"5m"`, `"1h"`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

fn duration(text: &str, path: &str, errs: &mut Errors) -> Option<Duration> {
    match parse_duration(text) {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            errs.push(path, format!("{text:?}: expected a positive duration like \"500ms\", \"10s\", \"5m\" or \"1h\""));
            None
        }
    }
}
