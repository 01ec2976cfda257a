//! TLS termination: read the ClientHello, choose the `[[server]]` by SNI, finish the handshake
//! with that server's rustls config, all under one deadline (`handshake_timeout`); then check
//! a resumed session's certificate again (rustls does not) and read the client's identity
//! once, into the connection's [`ConnInfo`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use rustls_pki_types::{CertificateDer, UnixTime};

use crate::identity::{self, PeerIdentity};
use crate::request::ConnInfo;
use crate::runtime::Runtime;
pub(crate) use crate::tls::HandshakeOutcome;
use crate::tls::verifier;

/// A finished handshake: the stream, and the connection's facts for the rest of its life.
pub(crate) struct Accepted<IO> {
    pub stream: TlsStream<IO>,
    pub info: ConnInfo,
}

/// A failed handshake: why, and for which server if one was chosen.
#[derive(Debug)]
pub(crate) struct Failure {
    pub outcome: HandshakeOutcome,
    pub server: Option<usize>,
    /// The SNI, once the ClientHello was read.
    pub sni: Option<String>,
    /// The client certificate that was refused, when one was.
    pub presented: Option<CertificateDer<'static>>,
    pub detail: String,
}

impl Failure {
    /// A failure with no server chosen and no certificate seen.
    pub(crate) fn early(outcome: HandshakeOutcome, detail: String) -> Self {
        Self {
            outcome,
            server: None,
            sni: None,
            presented: None,
            detail,
        }
    }
}

/// How long a connection whose handshake failed is kept half-open so the client reads the
/// alert (see [`linger`]).
const LINGER: Duration = Duration::from_secs(1);

/// TLS alert `unrecognized_name` (112), fatal, as a plaintext record.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Runs the server side of a handshake on `io`, from client `peer` on listener `port`.
pub(crate) async fn accept<IO>(
    io: IO,
    (peer, listener_port): (SocketAddr, u16),
    runtime: &Runtime,
    timeout: Duration,
) -> Result<Accepted<IO>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut chosen = None;
    match tokio::time::timeout(timeout, handshake(io, runtime, &mut chosen)).await {
        Ok(Ok((stream, server, sni, identity, chain))) => Ok(Accepted {
            stream,
            info: ConnInfo {
                peer,
                listener_port,
                sni,
                server,
                identity,
                chain,
            },
        }),
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure {
            server: chosen,
            ..Failure::early(
                HandshakeOutcome::Timeout,
                format!("handshake not done within {timeout:?}"),
            )
        }),
    }
}

/// The handshake's result: the stream, the server index, the SNI, the client's identity and
/// certificate chain (leaf first).
type Done<IO> = (
    TlsStream<IO>,
    usize,
    Option<String>,
    Option<Arc<PeerIdentity>>,
    Option<Arc<[CertificateDer<'static>]>>,
);

async fn handshake<IO>(
    io: IO,
    runtime: &Runtime,
    chosen: &mut Option<usize>,
) -> Result<Done<IO>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let fail = |outcome, server, detail: String| Failure {
        server,
        ..Failure::early(outcome, detail)
    };
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
        .await
        .map_err(|e| {
            fail(
                HandshakeOutcome::Error,
                None,
                format!("bad ClientHello: {e}"),
            )
        })?;
    let sni = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    let Some((index, server)) =
        crate::host::select(&runtime.servers, |s| &s.config.hosts, sni.as_deref())
    else {
        let mut io = start.io;
        // Best effort: the client is told why before the connection closes.
        let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
        let _ = io.shutdown().await;
        let detail = format!("no server for SNI {sni:?}");
        return Err(Failure {
            sni,
            ..fail(HandshakeOutcome::UnknownSni, None, detail)
        });
    };
    *chosen = Some(index);
    let stream = match start
        .into_stream(server.rustls.clone())
        .into_fallible()
        .await
    {
        Ok(stream) => stream,
        Err((e, io)) => {
            // Taken in the poll that failed: see `verifier::take_refused`.
            let presented = verifier::take_refused();
            tokio::spawn(linger(io));
            return Err(Failure {
                sni,
                presented,
                ..fail(verifier::classify_io(&e), Some(index), e.to_string())
            });
        }
    };
    let (identity, chain) = client_of(stream.get_ref().1, &runtime.clients, server, &sni, index)?;
    Ok((stream, index, sni, identity, chain))
}

/// The client's certificate chain and identity once the handshake is done, shared with the
/// client's other connections ([`identity::Clients`]). rustls does not verify a resumed
/// session's certificate again, so that is done here.
fn client_of(
    tls: &rustls::ServerConnection,
    clients: &identity::Clients,
    server: &crate::runtime::Server,
    sni: &Option<String>,
    index: usize,
) -> Result<Client, Failure> {
    let fail = |outcome, server, detail: String| Failure {
        server,
        ..Failure::early(outcome, detail)
    };
    let chain = tls.peer_certificates().filter(|c| !c.is_empty());
    // rustls does not verify a resumed session's certificate again: the client may have
    // expired, or been revoked by a CRL loaded since (SPEC "Revocation and expiry").
    if tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
        && let (Some(verifier), Some(chain)) = (&server.verifier, chain)
        && let Err(outcome) = verifier::recheck(verifier.as_ref(), chain, UnixTime::now())
    {
        return Err(Failure {
            sni: sni.clone(),
            presented: chain.first().map(|c| c.clone().into_owned()),
            ..fail(
                outcome,
                Some(index),
                "resumed session: the client certificate is no longer accepted".into(),
            )
        });
    }
    let Some(chain) = chain else {
        return Ok((None, None));
    };
    match clients.client(chain) {
        Ok((identity, chain)) => Ok((Some(identity), Some(chain))),
        Err(e) => Err(Failure {
            sni: sni.clone(),
            presented: chain.first().cloned(),
            ..fail(
                HandshakeOutcome::InvalidClientCert,
                Some(index),
                e.to_string(),
            )
        }),
    }
}

/// A verified client's identity and chain (leaf first); both `None` without a certificate.
type Client = (
    Option<Arc<PeerIdentity>>,
    Option<Arc<[CertificateDer<'static>]>>,
);

/// After a failed handshake, whose alert has been sent: stop writing, then read and drop
/// what the client still sends until it closes, for at most [`LINGER`]. A TLS 1.3 client
/// sends its request right after its certificate, without waiting; closing with that data
/// unread makes the kernel answer with a reset, which the client reports instead of the
/// alert (curl: "getpeername() failed" rather than "certificate required").
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    use tokio::io::AsyncReadExt;
    let _ = io.shutdown().await;
    let mut sink = [0u8; 2048];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = io.read(&mut sink).await
            && n > 0
        {}
    })
    .await;
}
