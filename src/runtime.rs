//! [`Runtime`]: a validated [`Config`] plus everything built from it — each server's TLS
//! material and rustls config, certificate summaries. One loader for every caller: `run`,
//! `check`, `authz` (and reload) all call [`Runtime::load`], so "check passes" means "run
//! would start". A `Runtime` is immutable; long-lived things (listeners, the upstream pool,
//! metrics) live outside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::UnixTime;

use crate::config::{self, Config, ConfigError, ServerConfig, TlsVersion};
use crate::identity;
use crate::tls::credentials::{self, CertSummary, CredentialError};
use crate::tls::verifier;

/// One `[[server]]`, ready to handshake.
#[derive(Debug)]
pub(crate) struct Server {
    pub config: ServerConfig,
    /// The server's name (first host) as a metric label.
    pub label: crate::metrics::Name,
    pub rustls: Arc<rustls::ServerConfig>,
    /// The client-certificate verifier inside `rustls`, kept to re-check resumed sessions and
    /// open connections; `None` for `client_auth = "none"`.
    pub verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// The server certificate's URI SANs (XFCC `By=`).
    pub uri_sans: Vec<String>,
    pub certs: Vec<(CertKind, CertSummary)>,
    /// Files read for this server.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertKind {
    Server,
    ServerChain,
    ClientCa,
}

impl CertKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::ServerChain => "server_chain",
            Self::ClientCa => "client_ca",
        }
    }
}

/// One `[[route]]`, with what it needs per request: its upstream's pool and its metric
/// series (both long-lived, held by `Shared`), each resolved on the route's first request.
#[derive(Debug)]
pub(crate) struct Route {
    pub config: config::RouteConfig,
    pub pool: crate::upstream::PoolSlot,
    pub series: std::sync::OnceLock<Arc<crate::metrics::RouteSeries>>,
}

#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    pub(crate) servers: Vec<Server>,
    /// The config file this came from.
    pub source: PathBuf,
    /// The routes in file order, as [`crate::routing::select`] tries them.
    pub(crate) routes: Box<[Route]>,
    /// The verified clients with connections open, so they share one identity and chain.
    pub(crate) clients: crate::identity::Clients,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("server[{index}] ({name}): {source}")]
    Credentials {
        index: usize,
        name: String,
        source: CredentialError,
    },
    #[error("server[{index}] ({name}): {message}")]
    Tls {
        index: usize,
        name: String,
        message: String,
    },
}

/// The published snapshot: the current [`Runtime`], swapped whole by a reload, and a signal
/// each open connection waits on to check itself against the new one (a revoked client
/// loses its open connections, not only its next handshake).
#[derive(Debug)]
pub struct Published {
    current: arc_swap::ArcSwap<Runtime>,
    swapped: tokio::sync::watch::Sender<u64>,
}

impl Published {
    pub fn new(rt: Runtime) -> Arc<Self> {
        Arc::new(Self {
            current: arc_swap::ArcSwap::from_pointee(rt),
            swapped: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The current snapshot, for a moment (no reference count taken).
    pub fn load(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.current.load()
    }

    /// The current snapshot, to keep.
    pub(crate) fn load_full(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Publishes a new snapshot and tells every subscriber.
    pub(crate) fn store(&self, rt: Arc<Runtime>) {
        self.current.store(rt);
        self.swapped.send_modify(|generation| *generation += 1);
    }

    /// Resolves (via `changed()`) after each later [`Published::store`].
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.swapped.subscribe()
    }

    /// Resolves when the client of an open connection stops being accepted: a snapshot
    /// published after `swaps` was taken refuses its certificate ([`Refused::Revoked`]), or
    /// the certificate's `notAfter` passes ([`Refused::Expired`]). Pending forever for a
    /// client that stays accepted. WebSocket tunnels wait on it; HTTP connections wait on
    /// [`until_revoked`](Self::until_revoked) and keep [`expiry`] in their one timer.
    pub(crate) async fn until_refused(
        &self,
        conn: &crate::request::ConnInfo,
        swaps: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Refused {
        let expires = expiry(conn);
        let expiry = async {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = expiry => Refused::Expired,
            outcome = self.until_revoked(conn, swaps) => Refused::Revoked(outcome),
        }
    }

    /// Resolves when a snapshot published after `swaps` was taken refuses the connection's
    /// client certificate, with the handshake result it would get now. Pending forever while
    /// it is accepted, and once the sender is gone (the server is going away: the drain ends
    /// the connection).
    pub(crate) async fn until_revoked(
        &self,
        conn: &crate::request::ConnInfo,
        swaps: &mut tokio::sync::watch::Receiver<u64>,
    ) -> verifier::HandshakeOutcome {
        while swaps.changed().await.is_ok() {
            if let Err(outcome) = self.load().accepts(conn, UnixTime::now()) {
                return outcome;
            }
        }
        std::future::pending().await
    }
}

/// When the connection's client certificate stops being valid (the second after its
/// `notAfter`); `None` without a certificate.
pub(crate) fn expiry(conn: &crate::request::ConnInfo) -> Option<tokio::time::Instant> {
    conn.identity.as_ref().map(|id| {
        let now = i64::try_from(UnixTime::now().as_secs()).unwrap_or(i64::MAX);
        let left = u64::try_from(id.not_after.saturating_add(1).saturating_sub(now));
        tokio::time::Instant::now() + std::time::Duration::from_secs(left.unwrap_or(0))
    })
}

/// Why an open connection's client is no longer accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    /// A reload refused its certificate, with the handshake result it would get now.
    Revoked(verifier::HandshakeOutcome),
    /// Its certificate's `notAfter` has passed.
    Expired,
}

impl Refused {
    /// Logs that an open connection (or tunnel) of `peer` is being closed, and why.
    pub(crate) fn log(self, peer: std::net::SocketAddr, action: &str) {
        match self {
            Self::Revoked(outcome) => tracing::info!(
                %peer,
                result = outcome.as_str(),
                "client no longer accepted after a reload: {action}"
            ),
            Self::Expired => tracing::info!(%peer, "client certificate expired: {action}"),
        }
    }

    /// The `reason` label of `gatehouse_connections_closed_total`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Revoked(_) => "revoked",
            Self::Expired => "cert_expired",
        }
    }
}

/// The crypto provider for every TLS config we build (aws-lc-rs: the fastest in rustls),
/// offering the key-exchange `groups` in that order.
pub(crate) fn crypto_provider(groups: &[rustls::NamedGroup]) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups
        .iter()
        .filter_map(|name| {
            rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
                .iter()
                .find(|g| g.name() == *name)
                .copied()
        })
        .collect();
    Arc::new(provider)
}

impl Runtime {
    /// Would this snapshot accept the client of an open connection? The server is chosen by
    /// the connection's SNI again, and its client-certificate checks run again at `now`: a
    /// new CRL, a CA dropped from `client_ca`, a narrower `allowed_sans` or new pins refuse it.
    pub(crate) fn accepts(
        &self,
        conn: &crate::request::ConnInfo,
        now: UnixTime,
    ) -> Result<(), verifier::HandshakeOutcome> {
        let Some((_, server)) =
            crate::host::select(&self.servers, |s| &s.config.hosts, conn.sni.as_deref())
        else {
            return Err(verifier::HandshakeOutcome::UnknownSni);
        };
        match &server.verifier {
            None => Ok(()),
            Some(v) => verifier::recheck(v.as_ref(), conn.chain.as_deref().unwrap_or(&[]), now),
        }
    }

    /// Sets the metric series that follow the configuration: each server's handshake
    /// series at zero, and the certificate expiry gauges (server leaves and client CAs).
    pub(crate) fn init_metrics(&self, metrics: &crate::metrics::Metrics) {
        metrics.init_series(
            self.servers.iter().map(|s| &s.label),
            self.config.listen.http.is_some(),
        );
        metrics.set_certs(self.servers.iter().flat_map(|s| {
            s.certs.iter().filter_map(|(kind, cert)| {
                let kind = match kind {
                    CertKind::Server => "server",
                    CertKind::ClientCa => "client_ca",
                    CertKind::ServerChain => return None,
                };
                Some((s.config.name(), kind, cert.serial.as_str(), cert.not_after))
            })
        }));
    }

    /// Reads and validates the config file and every file it names.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let config = config::load(path)?;
        Self::build(config, path)
    }

    /// Builds TLS state for an already-validated config.
    pub(crate) fn build(config: Config, source: &Path) -> Result<Self, LoadError> {
        let provider = crypto_provider(&config.tls.key_exchange);
        let mut servers = Vec::with_capacity(config.servers.len());
        for (index, sc) in config.servers.iter().enumerate() {
            servers.push(build_server(index, sc, &config, &provider)?);
        }
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                config: r.clone(),
                pool: Default::default(),
                series: Default::default(),
            })
            .collect();
        Ok(Self {
            config,
            servers,
            source: source.to_path_buf(),
            routes,
            clients: Default::default(),
        })
    }
}

fn build_server(
    index: usize,
    sc: &ServerConfig,
    config: &Config,
    provider: &Arc<CryptoProvider>,
) -> Result<Server, LoadError> {
    let name = sc.name().to_owned();
    let material =
        credentials::load(&sc.credentials, provider).map_err(|source| LoadError::Credentials {
            index,
            name: name.clone(),
            source,
        })?;
    let tls_err = |message: String| LoadError::Tls {
        index,
        name: name.clone(),
        message,
    };

    let versions: &[&rustls::SupportedProtocolVersion] = match (config.tls.min, config.tls.max) {
        (TlsVersion::Tls12, TlsVersion::Tls13) => {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        }
        (TlsVersion::Tls12, TlsVersion::Tls12) => &[&rustls::version::TLS12],
        _ => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| tls_err(e.to_string()))?;
    let client_verifier = verifier::build(
        sc,
        &material.client_ca,
        material.crls.clone(),
        provider.clone(),
    )
    .map_err(tls_err)?;
    let builder = match client_verifier.clone() {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut rustls_config = builder.with_cert_resolver(Arc::new(
        rustls::sign::SingleCertAndKey::from(material.certified.clone()),
    ));
    rustls_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateful resumption only: a ticket key would outlive a reload, a cache does not (each
    // load builds a new one), so a client the new configuration refuses cannot resume.
    rustls_config.session_storage = match config.tls.session_cache_size {
        0 => Arc::new(rustls::server::NoServerSessionStorage {}),
        n => crate::tls::sessions::SessionCache::new(n),
    };
    // One ticket per handshake, resumed ones included (rustls and OpenSSL send two): each
    // ticket is a cache entry holding the client's chain (~0.6 KiB), so the cache serves twice
    // the clients, and a client that resumes gets a fresh ticket for its next connection.
    rustls_config.send_tls13_tickets = match config.tls.session_cache_size {
        0 => 0,
        _ => 1,
    };

    let chain = &material.certified.cert;
    let certs = cert_summaries(chain, &material.client_ca);
    let uri_sans = chain
        .first()
        .and_then(|leaf| identity::from_leaf(leaf).ok())
        .map(|id| id.uri_sans)
        .unwrap_or_default();
    Ok(Server {
        label: Arc::new(sc.name().to_owned()),
        config: sc.clone(),
        rustls: Arc::new(rustls_config),
        verifier: client_verifier,
        uri_sans,
        certs,
        files: material.files,
    })
}

/// The certificates `/certs` and the expiry gauges show: the server chain and the client CAs.
fn cert_summaries(
    chain: &[rustls_pki_types::CertificateDer<'static>],
    client_ca: &[rustls_pki_types::CertificateDer<'static>],
) -> Vec<(CertKind, CertSummary)> {
    let mut certs = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let kind = if i == 0 {
            CertKind::Server
        } else {
            CertKind::ServerChain
        };
        if let Some(s) = CertSummary::parse(der) {
            certs.push((kind, s));
        }
    }
    for der in client_ca {
        if let Some(s) = CertSummary::parse(der) {
            certs.push((CertKind::ClientCa, s));
        }
    }
    certs
}
