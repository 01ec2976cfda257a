//! Hot reload: validate, then swap; on failure keep serving the old snapshot.
//!
//! A change in any directory holding the config file or a file it names (written in place,
//! replaced by rename, or swapped the Kubernetes way through a `..data` symlink), or a SIGHUP,
//! re-runs [`Runtime::load`] — the loader `run` and `check` use. Events are debounced so a
//! cert and key written one after the other are read together. Directories are watched, not
//! files, so renames and symlink swaps are seen; if the OS watcher cannot start, polling takes
//! over. A valid result is published whole (new handshakes use its TLS material, every request
//! its policies and routes); an invalid one is logged and counted, and nothing changes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics::{Metrics, ReloadLabels};
use crate::runtime::{Published, Runtime};
use crate::tls::credentials::CREDENTIAL_DIR_NAMES;

/// Quiet time after the last file event before reloading: lets a cert and its key, written
/// one after the other, land together (cert-manager and kubelet write within milliseconds).
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A stream of events never delays a reload by more than this (SPEC: applied within 2 s).
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// Polling interval when the OS watcher is unavailable.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Reloads one config file into one published snapshot.
pub struct Reloader {
    path: PathBuf,
    runtime: Arc<Published>,
    metrics: Arc<Metrics>,
    /// Reloads run one at a time.
    busy: Mutex<()>,
}

impl Reloader {
    pub fn new(path: &Path, runtime: Arc<Published>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            runtime,
            metrics,
            busy: Mutex::new(()),
        })
    }

    /// Loads and validates everything; swaps it in if valid. Blocking (file I/O, key parsing).
    pub fn reload(&self, cause: &str) -> Result<(), String> {
        let _one_at_a_time = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = Runtime::load(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|new| restart_only(&self.runtime.load().config, &new.config).map(|()| new));
        let outcome = match result {
            Ok(new) => {
                new.init_metrics(&self.metrics);
                self.runtime.store(Arc::new(new));
                tracing::info!(%cause, "reloaded configuration and certificates");
                Ok(())
            }
            Err(e) => {
                tracing::error!(%cause, error = %e, "reload failed; still serving the previous configuration");
                Err(e)
            }
        };
        let result = if outcome.is_ok() { "ok" } else { "error" };
        self.metrics
            .reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        outcome
    }
}

/// Settings that only take effect at startup: refuse a reload that changes them, rather than
/// accept it and silently keep the old value.
fn restart_only(old: &Config, new: &Config) -> Result<(), String> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("[listen]");
    }
    if old.workers != new.workers {
        changed.push("runtime.workers");
    }
    for (name, old, new) in [
        (
            "proxy.max_connections",
            old.proxy.max_connections,
            new.proxy.max_connections,
        ),
        (
            "proxy.max_plaintext_connections",
            old.proxy.max_plaintext_connections,
            new.proxy.max_plaintext_connections,
        ),
        (
            "proxy.upstream_max_connections",
            old.proxy.upstream_max_connections,
            new.proxy.upstream_max_connections,
        ),
    ] {
        if old != new {
            changed.push(name);
        }
    }
    if old.log != new.log {
        changed.push("[log]");
    }
    if old.reload_watch != new.reload_watch {
        changed.push("reload.watch");
    }
    match changed.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{} changed: these apply only at startup; restart gatehouse",
            changed.join(", ")
        )),
    }
}

/// The directories holding the config file and every file it names (`credential_dir`s
/// included, so a `..data` swap inside them is seen).
pub(crate) fn watched_dirs(rt: &Runtime) -> BTreeSet<PathBuf> {
    let parent = |p: &Path| p.parent().map(Path::to_path_buf);
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    dirs.extend(parent(&rt.source));
    for s in &rt.servers {
        dirs.extend(s.files.iter().filter_map(|f| parent(f)));
        if let crate::config::Credentials::Dir { dir, .. } = &s.config.credentials {
            dirs.insert(dir.clone());
        }
    }
    dirs.into_iter()
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect()
}

/// The file names whose changes matter in the watched directories: the config file, every
/// file it names, every name a `credential_dir` is read for, and (by prefix, see
/// [`is_relevant`]) Kubernetes' `..data` swap. Anything else in those directories, such as
/// a log file written next to the config, must not trigger a reload.
pub(crate) fn watched_names(rt: &Runtime) -> BTreeSet<OsString> {
    let mut names: BTreeSet<OsString> = BTreeSet::new();
    names.extend(rt.source.file_name().map(OsString::from));
    for s in &rt.servers {
        names.extend(
            s.files
                .iter()
                .filter_map(|f| f.file_name())
                .map(OsString::from),
        );
        if let crate::config::Credentials::Dir { .. } = &s.config.credentials {
            names.extend(CREDENTIAL_DIR_NAMES.iter().map(OsString::from));
        }
    }
    names
}

/// Does a change to `path` (in a watched directory) matter? Names starting with `..` are
/// the Kubernetes atomic writer's (`..data`, `..2026_11_23_...`), which swaps every file of
/// a mounted secret or ConfigMap at once.
pub(crate) fn is_relevant(path: &Path, names: &BTreeSet<OsString>) -> bool {
    path.file_name()
        .is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b".."))
}

/// Starts reloading: SIGHUP always, file changes when `watch` is set. The watches and the
/// signal handler are in place when this returns (a change right after startup is not
/// missed); the returned task runs until aborted.
pub fn spawn(reloader: Arc<Reloader>, watch: bool) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "SIGHUP handler unavailable"))
        .ok();
    let names = Arc::new(ArcSwap::from_pointee(watched_names(
        &reloader.runtime.load(),
    )));
    let mut watcher = if watch {
        start_watcher(&tx, names.clone())
    } else {
        None
    };
    let mut watching = BTreeSet::new();
    if let Some(w) = watcher.as_mut() {
        rewatch(
            w.as_mut(),
            &mut watching,
            watched_dirs(&reloader.runtime.load()),
        );
    }
    tokio::spawn(reload_loop(reloader, watcher, watching, names, hup, rx))
}

async fn reload_loop(
    reloader: Arc<Reloader>,
    mut watcher: Option<Box<dyn Watcher + Send>>,
    mut watching: BTreeSet<PathBuf>,
    names: Arc<ArcSwap<BTreeSet<OsString>>>,
    mut hup: Option<tokio::signal::unix::Signal>,
    mut rx: mpsc::UnboundedReceiver<()>,
) {
    loop {
        let cause = tokio::select! {
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            Some(()) = rx.recv() => {
                debounce(&mut rx).await;
                "file change"
            }
            else => return,
        };
        let r = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || r.reload(cause)).await;
        if let Some(w) = watcher.as_mut() {
            let rt = reloader.runtime.load();
            names.store(Arc::new(watched_names(&rt)));
            rewatch(w.as_mut(), &mut watching, watched_dirs(&rt));
        }
    }
}

/// Waits until no event came for [`DEBOUNCE`], or [`DEBOUNCE_MAX`] passed.
async fn debounce(rx: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    while let Ok(Some(())) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + DEBOUNCE),
        rx.recv(),
    )
    .await
    {}
}

fn start_watcher(
    tx: &mpsc::UnboundedSender<()>,
    names: Arc<ArcSwap<BTreeSet<OsString>>>,
) -> Option<Box<dyn Watcher + Send>> {
    let handler = {
        let tx = tx.clone();
        move |event: notify::Result<notify::Event>| {
            // Our own reads show up as Access events: ignore them, or every reload would
            // trigger the next. So do writes to unrelated files, such as our own log.
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let names = names.load();
            // No paths (or an overflowed queue): something changed, we cannot tell what.
            let unknown = event.paths.is_empty() || event.need_rescan();
            if unknown || event.paths.iter().any(|p| is_relevant(p, &names)) {
                let _ = tx.send(());
            }
        }
    };
    match notify::recommended_watcher(handler.clone()) {
        Ok(w) => Some(Box::new(w)),
        Err(e) => {
            tracing::warn!(error = %e, "file watcher unavailable; polling for changes instead");
            let config = notify::Config::default()
                .with_poll_interval(POLL_INTERVAL)
                .with_compare_contents(true);
            match notify::PollWatcher::new(handler, config) {
                Ok(w) => Some(Box::new(w)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch files; only SIGHUP reloads");
                    None
                }
            }
        }
    }
}

fn rewatch(w: &mut dyn Watcher, watching: &mut BTreeSet<PathBuf>, wanted: BTreeSet<PathBuf>) {
    for gone in watching.difference(&wanted) {
        let _ = w.unwatch(gone);
    }
    for dir in wanted.difference(watching) {
        if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
        }
    }
    *watching = wanted;
}

#[cfg(test)]
mod relevance_tests {
    use super::*;

    #[test]
    fn only_read_files_and_kubernetes_swaps_are_relevant() {
        let names: BTreeSet<OsString> = ["gatehouse.toml", "server.crt", "tls.crt"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let cases = [
            ("/etc/gatehouse/gatehouse.toml", true),
            ("gatehouse.toml", true),
            ("./certs/server.crt", true),
            ("/var/run/secrets/tls/tls.crt", true),
            ("/var/run/secrets/tls/..data", true),
            ("/var/run/secrets/tls/..data_tmp", true),
            ("/var/run/secrets/tls/..2026_11_23_18_00_00.123456789", true),
            ("/etc/gatehouse/gatehouse.log", false),
            ("/etc/gatehouse/.gatehouse.toml.swp", false),
            ("/etc/gatehouse/gatehouse.toml~", false),
            ("/etc/gatehouse/server.crt.tmp-write", false),
            ("/etc/gatehouse", false),
        ];
        for (path, want) in cases {
            assert_eq!(is_relevant(Path::new(path), &names), want, "{path}");
        }
    }
}
