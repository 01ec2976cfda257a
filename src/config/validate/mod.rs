//! `RawConfig` → [`Config`]: resolve paths, parse durations and addresses, compile patterns
//! and policies. Every problem is collected (not just the first) with its field path.
//! Raw structs are destructured exhaustively so a new raw field cannot be silently dropped.
//! One file per section: [`server`], [`route`], [`proxy`] (with its table of limits); the
//! small sections (`listen`, `tls`, `runtime`, `log`) and the shared parsers are here.

mod proxy;
mod route;
mod server;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::authz::Policies;

/// Collects field errors while validation goes on.
#[derive(Default)]
pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }
}

pub(in crate::config) fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<FieldError>> {
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
        .filter_map(|(i, s)| server::validate(s, &format!("server[{i}]"), base, &mut errs))
        .collect();
    server::check_duplicate_hosts(&servers, &mut errs);
    let routes: Vec<RouteConfig> = route
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| route::validate(r, i, base, &mut errs))
        .collect();
    let policies = Policies::compile(&policy)
        .map_err(|e| errs.0.extend(e.into_iter().map(FieldError::from)))
        .ok();
    let proxy = proxy::validate(proxy, &mut errs);
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
        key_exchange,
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
        key_exchange: key_exchange_groups(key_exchange, errs),
    }
}

/// `tls.key_exchange`: names as IANA writes them, any case, each once, at least one; only the
/// groups the TLS library implements.
fn key_exchange_groups(names: Option<Vec<String>>, errs: &mut Errors) -> Vec<rustls::NamedGroup> {
    let Some(names) = names else {
        return TlsSettings::DEFAULT_KEY_EXCHANGE.to_vec();
    };
    let supported = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
    let name_of = |g: rustls::NamedGroup| g.as_str().unwrap_or("unknown");
    if names.is_empty() {
        errs.push("tls.key_exchange", "at least one group is required");
    }
    let mut out: Vec<rustls::NamedGroup> = Vec::with_capacity(names.len());
    for (i, text) in names.iter().enumerate() {
        let at = format!("tls.key_exchange[{i}]");
        match supported
            .iter()
            .map(|g| g.name())
            .find(|g| name_of(*g).eq_ignore_ascii_case(text))
        {
            Some(g) if out.contains(&g) => errs.push(at, format!("{text:?} is listed twice")),
            Some(g) => out.push(g),
            None => {
                let known: Vec<&str> = supported.iter().map(|g| name_of(g.name())).collect();
                errs.push(
                    at,
                    format!("{text:?}: expected one of {}", known.join(", ")),
                );
            }
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
    let directives: Result<Vec<_>, _> = level
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse::<tracing_subscriber::filter::Directive>())
        .collect();
    let level = directives.unwrap_or_else(|_| {
        errs.push(
            "log.level",
            format!("{level:?}: expected error, warn, info, debug, trace or a RUST_LOG filter"),
        );
        Vec::new()
    });
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

pub(super) fn choice<T: Copy>(
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

pub(super) fn int_in<T: TryFrom<i64>>(
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

pub(super) fn duration(text: &str, path: &str, errs: &mut Errors) -> Option<Duration> {
    match parse_duration(text) {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            errs.push(path, format!("{text:?}: expected a positive duration like \"500ms\", \"10s\", \"5m\" or \"1h\""));
            None
        }
    }
}
