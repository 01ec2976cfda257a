//! What each CLI command does, as library functions returning an exit code, so `main` stays
//! a dispatcher and tests can call the same code.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::authz;
use crate::cli::{AuthzArgs, ConfigArg, EchoArgs};
use crate::config::LogFormat;
use crate::http::access_log::AccessLog;
use crate::http::admission::{self, Refused};
use crate::identity::{self, PeerIdentity};
use crate::request::normalize;
use crate::request::{ConnInfo, RequestView};
use crate::runtime::{Published, Runtime};
use crate::server::{self, Listeners};
use crate::tls::credentials;

/// `gatehouse run -c FILE`.
pub fn run(args: &ConfigArg) -> ExitCode {
    let rt = match Runtime::load(&args.config) {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    init_tracing(&rt.config.log.level, rt.config.log.format);
    if rt.config.proxy.normalization.mode == normalize::PathNormalization::None {
        tracing::warn!(
            "path_normalization = \"none\" is unsafe: policies see paths exactly as clients send them"
        );
    }
    // One worker: a current-thread runtime, so the accept loop, every connection and every
    // upstream exchange share one thread with no work-stealing queues to synchronize.
    let mut builder = match rt.config.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    if rt.config.workers > 1 {
        builder.worker_threads(rt.config.workers);
    }
    let tokio_rt = match builder.build() {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let metrics = crate::metrics::Metrics::new();
    let (access_log, drained) = match rt.config.log.access_log {
        true => match AccessLog::start(
            rt.config.log.format,
            Box::new(std::io::stdout()),
            metrics.access_log_dropped.clone(),
        ) {
            Ok((log, drained)) => (Some(log), Some(drained)),
            Err(e) => return fail(&e),
        },
        false => (None, None),
    };
    let result = tokio_rt.block_on(async move {
        let listeners = Listeners::bind(&rt.config.listen).await?;
        let watch = rt.config.reload_watch;
        let source = rt.source.clone();
        let runtime = Published::new(rt);
        let reloader = crate::reload::Reloader::new(&source, runtime.clone(), metrics.clone());
        // Ends with the process, after `server::run` has drained.
        let _reload = crate::reload::spawn(reloader, watch);
        server::run(listeners, runtime, access_log, metrics, shutdown_signal()).await
    });
    // Ends every task left, and with them the access log's last senders; then the lines
    // still queued are written before the process exits.
    drop(tokio_rt);
    if let Some(drained) = drained {
        drained.wait(Duration::from_secs(2));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default disposition.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::builder().parse(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub(crate) fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("gatehouse: {e}");
    ExitCode::from(1)
}

/// `gatehouse check -c FILE`: the summary of SPEC §1.
pub fn check(args: &ConfigArg) -> ExitCode {
    match Runtime::load(&args.config) {
        Ok(rt) => {
            let _ = std::io::stdout().write_all(summary(&rt).as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The text `check` prints.
pub fn summary(rt: &Runtime) -> String {
    use std::fmt::Write as _;
    let c = &rt.config;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = format!("{}: OK\n", rt.source.display());
    let _ = writeln!(out, "listeners:");
    let _ = writeln!(out, "  https  {}", c.listen.https);
    if let Some(a) = c.listen.http {
        let _ = writeln!(
            out,
            "  http   {a} (301 to https port {})",
            c.listen
                .redirect_https_port
                .unwrap_or(c.listen.https.port())
        );
    }
    if let Some(a) = c.listen.admin {
        let _ = writeln!(out, "  admin  {a}");
    }
    let _ = writeln!(out, "servers:");
    for (i, s) in rt.servers.iter().enumerate() {
        let auth = match s.config.client_auth {
            crate::config::ClientAuth::None => "none",
            crate::config::ClientAuth::Optional => "optional",
            crate::config::ClientAuth::Required => "required",
        };
        let _ = writeln!(
            out,
            "  [{i}] hosts {} (client_auth {auth})",
            s.config.names.join(", ")
        );
        for (kind, cert) in &s.certs {
            let _ = writeln!(
                out,
                "      {:<12} {}  expires in {} days",
                kind.as_str(),
                cert.subject,
                cert.days_left(now)
            );
        }
    }
    let _ = writeln!(out, "routes:");
    for r in &c.routes {
        let hosts = if r.hosts.is_empty() {
            "*".to_owned()
        } else {
            format!("{:?}", r.hosts)
        };
        let _ = writeln!(
            out,
            "  {:<10} hosts {hosts} path_prefix {} -> {} (timeout {:?})",
            r.name, r.path_prefix, r.upstream, r.timeout
        );
    }
    let _ = writeln!(out, "policies:");
    if c.policies.is_empty() {
        let _ = writeln!(out, "  (none: every authenticated request is allowed)");
    }
    for i in 0..c.policies.len() {
        let action = match c.policies.action(i) {
            authz::Action::Allow => "allow",
            authz::Action::Deny => "deny",
            authz::Action::Audit => "audit",
        };
        let _ = writeln!(out, "  {:<6} {}", action, c.policies.name(i));
    }
    out
}

/// `gatehouse authz ...`: the request through the proxy's own admission steps and policy
/// engine. First line `ALLOW ...`, `DENY ...` or `REFUSED <status>: why` (the proxy answers
/// before authorization); exit 0 for all three, 1 on a bad config or cert, 2 on bad arguments.
pub fn authz(args: &AuthzArgs) -> ExitCode {
    let rt = match Runtime::load(&args.config) {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let (identity, chain) = match (&args.cert, &args.principal) {
        (Some(path), _) => {
            let read = credentials::read_chain(path)
                .map_err(|e| e.to_string())
                .and_then(|chain| {
                    let id = identity::from_leaf(&chain[0])
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    Ok((id, chain))
                });
            match read {
                Ok((id, chain)) => (Some(Arc::new(id)), Some(Arc::from(chain))),
                Err(e) => return fail(&e),
            }
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

/// The proxy's answer to one request, as `gatehouse authz` prints it.
pub fn verdict(
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

/// `gatehouse echo --listen ADDR`.
pub fn echo(args: &EchoArgs) -> ExitCode {
    init_tracing("info", LogFormat::Text);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", args.listen)),
        };
        eprintln!("gatehouse echo listening on http://{}", args.listen);
        tokio::select! {
            () = crate::dev::echo::serve(listener) => {}
            () = shutdown_signal() => {}
        }
        ExitCode::SUCCESS
    })
}
