//! What each CLI command does, as library functions returning an exit code, so `main` stays
//! a dispatcher and tests can call the same code.

pub mod authz;
pub mod cert;
pub mod demo;
pub mod import;
pub mod verify;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::access_log::AccessLog;
use crate::cli::{ConfigArg, EchoArgs};
use crate::config::LogFormat;
use crate::request::normalize;
use crate::runtime::{Published, Runtime};
use crate::server::{self, Listeners};

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
pub(crate) async fn shutdown_signal() {
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

/// `RUST_LOG` wins over `log.level` (already parsed by the loader), as in every tokio service.
fn init_tracing(level: &[tracing_subscriber::filter::Directive], format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        level
            .iter()
            .cloned()
            .fold(tracing_subscriber::EnvFilter::new(""), |f, d| {
                f.add_directive(d)
            })
    });
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
pub(crate) fn summary(rt: &Runtime) -> String {
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
    let groups: Vec<&str> = c
        .tls
        .key_exchange
        .iter()
        .map(|g| g.as_str().unwrap_or("unknown"))
        .collect();
    let _ = writeln!(out, "key exchange: {}", groups.join(", "));
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
            crate::authz::Action::Allow => "allow",
            crate::authz::Action::Deny => "deny",
            crate::authz::Action::Audit => "audit",
        };
        let _ = writeln!(out, "  {:<6} {}", action, c.policies.name(i));
    }
    out
}

/// `gatehouse echo --listen ADDR`.
pub fn echo(args: &EchoArgs) -> ExitCode {
    init_tracing(
        &[tracing_subscriber::filter::LevelFilter::INFO.into()],
        LogFormat::Text,
    );
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
