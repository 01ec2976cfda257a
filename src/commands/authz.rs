//! `gatehouse authz`: one request, described on the command line, through the proxy's own
//! admission steps and policy engine (the production functions, not copies).

use std::process::ExitCode;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::fail;
use crate::authz;
use crate::cli::AuthzArgs;
use crate::http::admission::{self, Refused};
use crate::identity::{self, PeerIdentity};
use crate::request::{ConnInfo, RequestView};
use crate::runtime::Runtime;
use crate::tls::credentials;

/// `gatehouse authz ...`: the request through the proxy's own admission steps and policy
/// engine. First line `ALLOW ...`, `DENY ...` or `REFUSED <status>: why` (the proxy answers
/// before authorization); exit 0 for all three, 1 on a bad config or cert, 2 on bad arguments.
pub fn run(args: &AuthzArgs) -> ExitCode {
    let rt = match Runtime::load(&args.config) {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let (identity, chain) = match client(args) {
        Ok(client) => client,
        Err(e) => return fail(&e),
    };
    let usage = |msg: String| {
        eprintln!("gatehouse authz: {msg}");
        ExitCode::from(2)
    };
    let Ok(method) = Method::from_bytes(args.method.as_bytes()) else {
        return usage(format!("bad --method {:?}", args.method));
    };
    let mut headers = HeaderMap::new();
    match HeaderValue::from_str(&args.host) {
        Ok(host) => headers.insert(http::header::HOST, host),
        Err(_) => return usage(format!("bad --host {:?}", args.host)),
    };
    for kv in &args.headers {
        let parsed = kv.split_once('=').and_then(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        });
        match parsed {
            Some((k, v)) => {
                headers.append(k, v);
            }
            None => return usage(format!("bad --header {kv:?}: expected NAME=VALUE")),
        }
    }
    // The SNI a client connecting to that host would send.
    let sni = match &args.sni {
        Some(s) => s.to_ascii_lowercase(),
        None => {
            let name = crate::host::strip_port(&args.host);
            name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
        }
    };
    let Some((server, _)) =
        crate::host::select(&rt.servers, |s| &s.config.hosts, Some(sni.as_str()))
    else {
        return usage(format!(
            "no [[server]] serves SNI {sni:?}: the TLS handshake would fail (unknown_sni)"
        ));
    };
    let conn = ConnInfo {
        peer: std::net::SocketAddr::new(args.source_ip, 0),
        listener_port: rt.config.listen.https.port(),
        sni: Some(sni),
        server,
        identity,
        chain,
    };
    println!("{}", verdict(&rt, &method, &args.path, headers, &conn));
    ExitCode::SUCCESS
}

/// The client the request comes from: `--cert`'s identity and chain, a bare `--principal`,
/// or no certificate.
type Client = (
    Option<Arc<PeerIdentity>>,
    Option<Arc<[rustls_pki_types::CertificateDer<'static>]>>,
);

fn client(args: &AuthzArgs) -> Result<Client, String> {
    Ok(match (&args.cert, &args.principal) {
        (Some(path), _) => {
            let read = credentials::read_chain(path)
                .map_err(|e| e.to_string())
                .and_then(|chain| {
                    let id = identity::from_leaf(&chain[0])
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    Ok((id, chain))
                });
            let (id, chain) = read?;
            (Some(Arc::new(id)), Some(Arc::from(chain)))
        }
        (None, Some(p)) => (
            Some(Arc::new(PeerIdentity {
                principals: vec![p.clone()],
                uri_sans: vec![format!("spiffe://{p}")],
                ..PeerIdentity::default()
            })),
            None,
        ),
        (None, None) => (None, None),
    })
}

/// The proxy's answer to one request, as `gatehouse authz` prints it.
pub(crate) fn verdict(
    rt: &Runtime,
    method: &Method,
    target: &str,
    mut headers: HeaderMap,
    conn: &ConnInfo,
) -> String {
    // hyper refuses what is not a request target before gatehouse sees it.
    let Ok(uri) = target.parse::<http::Uri>() else {
        return format!("REFUSED 400: {target:?} is not a valid request target");
    };
    let hosts = &rt.servers[conn.server].config.hosts;
    let admitted = match admission::admit(
        method,
        &uri,
        http::Version::HTTP_11,
        &mut headers,
        conn,
        hosts,
        &rt.config.proxy,
    ) {
        Ok(admitted) => admitted,
        Err(Refused::OptionsStar) => {
            return "ALLOW: the proxy answers OPTIONS * itself with 204; no policy is evaluated"
                .into();
        }
        Err(Refused::Redirect(location)) => {
            return format!(
                "REFUSED 307: escaped slash in the path (escaped_slashes = \"redirect\"): location {location}"
            );
        }
        Err(Refused::Error(e)) => {
            return format!("REFUSED {}: {}", e.status().as_u16(), e.detail());
        }
    };
    let view = RequestView {
        method,
        host: Some(admitted.host_name()),
        path: &admitted.path,
        headers: &headers,
        conn,
    };
    authz::evaluate(&rt.config.policies, &view).explain(&rt.config.policies)
}
