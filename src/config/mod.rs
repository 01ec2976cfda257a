//! Configuration: the TOML file of SPEC §2, checked once.
//!
//! `raw.rs` mirrors the file; `validate/` turns it into [`Config`], whose fields hold only
//! checked types (socket addresses, durations, compiled patterns, absolute paths, enums).
//! [`parse`] works on a string (tests need no files); [`load`] reads the file. Certificates
//! and keys are not read here: [`crate::runtime::Runtime::load`] does that on top.

mod error;
pub(crate) mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use error::FieldError;
pub(crate) use validate::parse_duration;

use crate::authz::Policies;
use crate::host::HostPattern;
use crate::request::normalize;

/// A checked configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: Listen,
    pub tls: TlsSettings,
    pub servers: Vec<ServerConfig>,
    pub routes: Vec<RouteConfig>,
    pub policies: Policies,
    pub proxy: ProxySettings,
    /// Worker threads; 0 = one per CPU.
    pub workers: usize,
    pub log: LogSettings,
    /// Watch the config and every file it names, and reload on change (`[reload] watch`).
    pub reload_watch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Port written into HTTP → HTTPS redirects (443 is left out of the URL); `None`: the
    /// port the https listener is bound to.
    pub redirect_https_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersion {
    Tls12,
    Tls13,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub(crate) min: TlsVersion,
    pub(crate) max: TlsVersion,
    /// Resumable sessions kept per `[[server]]` (stateful, forgotten on reload); 0 = none.
    pub session_cache_size: usize,
    /// `key_exchange`: the groups offered, in order of preference.
    pub key_exchange: Vec<rustls::NamedGroup>,
}

impl TlsSettings {
    /// The default `key_exchange`: the hybrid post-quantum group first, then the classical ones.
    pub(crate) const DEFAULT_KEY_EXCHANGE: [rustls::NamedGroup; 4] = [
        rustls::NamedGroup::X25519MLKEM768,
        rustls::NamedGroup::X25519,
        rustls::NamedGroup::secp256r1,
        rustls::NamedGroup::secp384r1,
    ];

    /// nginx's `ssl_session_cache shared:SSL:10m` holds about 40,000 sessions; a rustls
    /// session with a client chain is ~2 KiB, so this default bounds the cache near 20 MiB.
    pub(crate) const DEFAULT_SESSION_CACHE_SIZE: usize = 10_000;
    pub(crate) const MAX_SESSION_CACHE_SIZE: i64 = 1_000_000;
}

/// `none` | `optional` | `required` (Istio SIMPLE | OPTIONAL_MUTUAL | MUTUAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    None,
    Optional,
    Required,
}

/// Where a server's TLS material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Files {
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
        client_crl: Vec<PathBuf>,
    },
    /// A Kubernetes TLS-secret mount: `cert|tls.crt`, `key|tls.key`, `cacert|ca.crt`, `crl|ca.crl`.
    /// `client_ca` / `client_crl`, when set, win over the directory's CA and CRL (ingress-nginx
    /// keeps the client CA in a secret of its own).
    Dir {
        dir: PathBuf,
        client_ca: Option<PathBuf>,
        client_crl: Vec<PathBuf>,
    },
}

/// One `[[server]]`: a TLS identity chosen by SNI.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The hosts as written (lower-cased); the first names the server in metrics and `/certs`.
    pub names: Vec<String>,
    pub(crate) hosts: Vec<HostPattern>,
    pub credentials: Credentials,
    pub(crate) client_auth: ClientAuth,
    pub allowed_sans: Vec<String>,
    pub allowed_spki_sha256: Vec<[u8; 32]>,
    pub allowed_cert_sha256: Vec<[u8; 32]>,
}

impl ServerConfig {
    pub(crate) fn name(&self) -> &str {
        self.names.first().map_or("*", String::as_str)
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `name`, or the route's index as text (shared: it is also a metric label).
    pub name: std::sync::Arc<String>,
    /// Empty: any host.
    pub(crate) hosts: Vec<HostPattern>,
    /// Without a trailing slash, except `/` itself.
    pub path_prefix: String,
    pub upstream: Upstream,
    pub timeout: Duration,
    pub protocol: UpstreamProtocol,
}

/// `upstream_protocol`: how a route speaks to its upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 without TLS, prior knowledge (gRPC): multiplexed connections.
    H2c,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// `http://host:port`: the authority, with the port made explicit.
    Tcp { authority: String },
    /// `unix:/path/to.sock`.
    Unix(PathBuf),
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { authority } => write!(f, "http://{authority}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadersWithUnderscores {
    Allow,
    Drop,
    Reject,
}

/// `x-forwarded-client-cert` handling, as Envoy's `forward_client_cert_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForwardClientCert {
    Sanitize,
    SanitizeSet,
    AppendForward,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub normalization: normalize::Options,
    pub(crate) headers_with_underscores: HeadersWithUnderscores,
    pub(crate) forward_client_cert: ForwardClientCert,
    /// The https listener expects a PROXY protocol v1/v2 header before the TLS handshake.
    pub proxy_protocol: bool,
    pub handshake_timeout: Duration,
    pub request_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub max_connections: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_stream_window: u32,
    pub h2_connection_window: u32,
    /// A body (either direction) with no bytes moving this long is aborted.
    pub stream_idle_timeout: Duration,
    /// Connections per client address on the https listener; 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Connections on the plaintext (redirect) listener.
    pub max_plaintext_connections: usize,
    /// Connections per upstream, busy + idle.
    pub upstream_max_connections: usize,
    /// HTTP/1.1 `Upgrade` tokens passed through, lower-cased.
    pub allowed_upgrades: Vec<String>,
    /// Also forward a verified client certificate as RFC 9440 `Client-Cert` headers.
    pub(crate) client_cert_headers: ClientCertHeaders,
    /// Keep client-sent `forwarded`, `x-forwarded-host/-port/-prefix` and `x-real-ip`.
    pub trust_forwarded_headers: bool,
}

/// `client_cert_headers`: `none` | `rfc9440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientCertHeaders {
    None,
    Rfc9440,
}

impl ProxySettings {
    /// Is `token` (an `Upgrade` protocol, any case, version suffix ignored) allowed?
    pub(crate) fn upgrade_allowed(&self, token: &str) -> bool {
        let name = token.split('/').next().unwrap_or_default().trim();
        self.allowed_upgrades
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `log.level`, parsed once here: each comma-separated directive of the filter.
    pub level: Vec<tracing_subscriber::filter::Directive>,
    pub format: LogFormat,
    pub access_log: bool,
}

/// Why a config could not be used. Its `Display` is what the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}", format_invalid(path, errors))]
    Invalid {
        path: PathBuf,
        errors: Vec<FieldError>,
    },
}

fn format_invalid(path: &Path, errors: &[FieldError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}: {e}", path.display()));
    }
    out
}

/// Parses and validates config text. `path` names the file in errors; relative paths
/// inside resolve against `base_dir`.
pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    validate::validate(raw, base_dir).map_err(|errors| ConfigError::Invalid {
        path: path.to_path_buf(),
        errors,
    })
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = abs
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    parse(&text, path, &base)
}
