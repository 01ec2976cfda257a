//! From the command line to a [`Plan`]: the URL taken apart (SNI, Host, path), the address
//! to dial, the TLS client (trust, client certificate, ALPN, resumption) and the request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::cli::BenchArgs;

/// The CA bundles of the common distributions, tried in order when `--cacert` is not given
/// (after `$SSL_CERT_FILE`, as OpenSSL does).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Http1,
    Http2 { streams: u32 },
    NewConnection { resume: bool },
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 { .. } => "http2",
            Self::NewConnection { .. } => "new-connection",
        }
    }
}

/// The measured window: work completing before `from` is warm-up, none starts after `stop`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) from: Instant,
    pub(crate) stop: Instant,
}

impl Window {
    pub(crate) fn open(&self) -> bool {
        Instant::now() < self.stop
    }

    pub(crate) fn counts(&self, at: Instant) -> bool {
        at >= self.from && at <= self.stop
    }

    pub(crate) fn length(&self) -> Duration {
        self.stop - self.from
    }
}

/// Everything but the address and the clock, checked before anything is dialled.
pub(crate) struct Setup {
    url: String,
    host: String,
    port: u16,
    connect: Option<String>,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    mode: Mode,
    connections: u32,
    request: Template,
    warmup: Duration,
    duration: Duration,
}

/// What the workers share, read-only.
pub(crate) struct Plan {
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) connector: TlsConnector,
    pub(crate) mode: Mode,
    pub(crate) connections: u32,
    pub(crate) request: Template,
    pub(crate) warmup: Duration,
    pub(crate) window: Window,
}

/// The request every worker sends, built once.
pub(crate) struct Template {
    method: Method,
    /// Origin form (`/path?q`) for HTTP/1.1, with a Host header.
    path: Uri,
    /// Absolute form for HTTP/2, so hyper writes `:scheme` and `:authority`.
    absolute: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    pub(crate) fn http1(&self, close: bool) -> Request<Full<Bytes>> {
        let mut req = self.build(self.path.clone());
        *req.headers_mut() = self.headers.clone();
        if close {
            req.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        req
    }

    pub(crate) fn http2(&self) -> Request<Full<Bytes>> {
        let mut req = self.build(self.absolute.clone());
        let headers = req.headers_mut();
        for (name, value) in &self.headers {
            if name != HOST {
                headers.append(name, value.clone());
            }
        }
        req
    }

    fn build(&self, uri: Uri) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        req
    }
}

impl Setup {
    pub(crate) fn from_args(args: &BenchArgs) -> Result<Self, String> {
        let uri: Uri = args
            .url
            .parse()
            .map_err(|e| format!("{}: not a URL ({e})", args.url))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "{}: gatehouse bench speaks TLS; give an https:// URL",
                args.url
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{}: the URL has no host", args.url))?
            .clone();
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: not a server name ({e})"))?;
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .map_err(|e| format!("{}: {e}", args.url))?;
        let mode = match (args.http2, args.new_connection) {
            (true, _) => Mode::Http2 {
                streams: args.streams,
            },
            (false, true) => Mode::NewConnection {
                resume: args.resume,
            },
            (false, false) => Mode::Http1,
        };
        let method = Method::from_bytes(args.method.as_bytes())
            .map_err(|_| format!("--method {:?}: not an HTTP method", args.method))?;
        let mut headers = HeaderMap::new();
        let host_value = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("{authority}: not a valid Host header"))?;
        headers.insert(HOST, host_value);
        for kv in &args.headers {
            let (name, value) = parse_header(kv)?;
            headers.insert(name, value);
        }
        let body = Bytes::from(vec![b'x'; body_len(args.body_bytes)?]);
        Ok(Self {
            url: args.url.clone(),
            host,
            port,
            connect: args.connect.clone(),
            server_name,
            tls: client_config(args, mode)?,
            mode,
            connections: args.connections,
            request: Template {
                method,
                path,
                absolute: uri,
                headers,
                body,
            },
            warmup: args.warmup,
            duration: args.duration,
        })
    }

    /// Resolves the address to dial (the first one) and starts the clock.
    pub(crate) async fn start(self) -> Result<Plan, String> {
        let target = match &self.connect {
            Some(hp) => hp.clone(),
            None if self.host.contains(':') => format!("[{}]:{}", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        };
        let addr = tokio::net::lookup_host(&target)
            .await
            .map_err(|e| format!("{target}: {e}"))?
            .next()
            .ok_or_else(|| format!("{target}: no address"))?;
        let from = Instant::now() + self.warmup;
        Ok(Plan {
            url: self.url,
            addr,
            server_name: self.server_name,
            connector: TlsConnector::from(self.tls),
            mode: self.mode,
            connections: self.connections,
            request: self.request,
            warmup: self.warmup,
            window: Window {
                from,
                stop: from + self.duration,
            },
        })
    }
}

fn parse_header(kv: &str) -> Result<(HeaderName, HeaderValue), String> {
    let bad = || format!("--header {kv:?}: expected NAME=VALUE");
    let (k, v) = kv.split_once('=').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(v.trim()).map_err(|_| bad())?;
    Ok((name, value))
}

/// Bodies are built once and shared by every request, so they must fit in memory.
fn body_len(n: u64) -> Result<usize, String> {
    const MAX: u64 = 1 << 30;
    match usize::try_from(n) {
        Ok(len) if n <= MAX => Ok(len),
        _ => Err(format!("--body-bytes {n}: at most {MAX} (1 GiB)")),
    }
}

fn client_config(args: &BenchArgs, mode: Mode) -> Result<Arc<rustls::ClientConfig>, String> {
    // The groups a current browser offers, hybrid post-quantum first (gatehouse's own default).
    let provider =
        crate::runtime::crypto_provider(&crate::config::TlsSettings::DEFAULT_KEY_EXCHANGE);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(args.cacert.as_deref())?);
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{}: no certificate in the file", cert.display()));
            }
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert/--key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match mode {
        Mode::Http2 { .. } => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    // Only `--resume` resumes: every other handshake counted is a full one.
    config.resumption = match mode {
        Mode::NewConnection { resume: true } => Resumption::in_memory_sessions(1024),
        _ => Resumption::disabled(),
    };
    Ok(Arc::new(config))
}

fn roots(cacert: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let env = std::env::var_os("SSL_CERT_FILE");
    let path = match cacert {
        Some(p) => p.to_path_buf(),
        None => env
            .map(Into::into)
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(Path::new)
                    .find(|p| p.is_file())
                    .map(Path::to_path_buf)
            })
            .ok_or("no system CA bundle found: give the server's CA with --cacert")?,
    };
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no CA certificate in the file", path.display()));
    }
    Ok(store)
}
