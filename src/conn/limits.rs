//! Bounds that protect the process as a whole: how many sockets each listener may hold given
//! the open-file limit ([`plan`]), and how many connections one client address may hold on
//! the https listener ([`PerIp`]).
//!
//! Every listener shares one file-descriptor table. If the plaintext listener could fill it,
//! the https accept loop and every upstream connect would fail with `EMFILE` (the attack in
//! SPEC "Edge limits"). So at startup the soft `RLIMIT_NOFILE` is raised to the hard limit (as
//! Go's runtime and nginx's `worker_rlimit_nofile` do), and the configured caps are lowered,
//! with a warning, until they fit in it together: past a cap, new connections wait in the
//! kernel backlog and never take a descriptor.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::metrics::ActiveGuard;

/// Descriptors kept for everything that is not a client socket: stdio, epoll and event fds,
/// the listeners, the file watcher, certificate and config files read on reload.
pub(crate) const RESERVED_FDS: u64 = 64;

/// The admin listener's connection cap (SPEC: at most 64). Scrapers and probes need a few.
pub(crate) const ADMIN_CONNECTIONS: usize = 64;

/// Raises the soft open-file limit to the hard one and returns the soft limit now in effect
/// (`u64::MAX` when unlimited).
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current != now.maximum {
        let raised = rustix::process::Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return now.maximum.unwrap_or(u64::MAX);
        }
    }
    now.current.unwrap_or(u64::MAX)
}

/// What each listener may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub https: usize,
    pub plaintext: usize,
    pub admin: usize,
}

/// The configured caps, fitted into `nofile` descriptors. An https connection counts twice
/// (its client socket and, usually, one upstream socket); the plaintext listener gets at
/// most a quarter of what is left after the reserve and the admin listener, so a flood of
/// idle plaintext sockets can never starve the https listener. Returns the caps and, when
/// any was lowered, a sentence saying so for the operator.
pub(crate) fn plan(
    nofile: u64,
    max_connections: usize,
    max_plaintext: usize,
    plaintext: bool,
    admin: bool,
) -> (Caps, Option<String>) {
    let admin_cap = if admin { ADMIN_CONNECTIONS } else { 0 };
    let usable = nofile.saturating_sub(RESERVED_FDS + admin_cap as u64);
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let plaintext_cap = if plaintext {
        max_plaintext.min(to_usize(usable / 4)).max(1)
    } else {
        0
    };
    let https_cap = max_connections
        .min(to_usize(usable.saturating_sub(plaintext_cap as u64) / 2))
        .max(1);
    let caps = Caps {
        https: https_cap,
        plaintext: plaintext_cap,
        admin: admin_cap,
    };
    let lowered = https_cap < max_connections || (plaintext && plaintext_cap < max_plaintext);
    let note = lowered.then(|| {
        format!(
            "the open-file limit ({nofile}) cannot hold max_connections = {max_connections} \
             (2 descriptors each){}: using https {https_cap}{}; raise `ulimit -n` \
             (LimitNOFILE= under systemd) to use the configured values",
            if plaintext {
                format!(" and max_plaintext_connections = {max_plaintext}")
            } else {
                String::new()
            },
            if plaintext {
                format!(", plaintext {plaintext_cap}")
            } else {
                String::new()
            },
        )
    });
    (caps, note)
}

/// Everything one accepted connection holds: its listener's permit, its place in
/// `gatehouse_connections_active`, its per-address count, and the drain signal (the server
/// waits for every holder). Shared by the connection and whatever outlives its HTTP
/// exchange (an upgraded tunnel), so all of it is released when the last of them ends.
#[derive(Debug)]
pub(crate) struct Lease {
    _permit: OwnedSemaphorePermit,
    _active: ActiveGuard,
    ip: Option<IpSlot>,
    pub stop: watch::Receiver<bool>,
}

impl Lease {
    pub(crate) fn new(
        permit: OwnedSemaphorePermit,
        active: ActiveGuard,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            _permit: permit,
            _active: active,
            ip: None,
            stop,
        }
    }

    /// Counts the connection against its client address (`max_connections_per_ip`).
    pub(crate) fn set_ip(&mut self, slot: IpSlot) {
        self.ip = Some(slot);
    }
}

/// Open https connections per client address, for `max_connections_per_ip`.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a new connection from `ip`, or `None` when `ip` already holds `limit`.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut counts = self.counts();
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }

    /// Connections counted for `ip` now.
    #[cfg(test)]
    pub(crate) fn count(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_open_file_limit() {
        // (nofile, max_connections, max_plaintext, plaintext?, admin?) -> (https, plaintext, admin, lowered)
        let cases = [
            // Plenty of descriptors: the configured values.
            (1 << 20, 10_000, 1024, true, true, (10_000, 1024, 64, false)),
            (
                u64::MAX,
                10_000,
                1024,
                true,
                true,
                (10_000, 1024, 64, false),
            ),
            // ulimit -n 1024: 896 usable; plaintext a quarter, https half of the rest.
            (1024, 10_000, 1024, true, true, (336, 224, 64, true)),
            // No plaintext or admin listener: https takes it all.
            (1024, 10_000, 1024, false, false, (480, 0, 0, true)),
            // Only the plaintext cap is lowered.
            (20_000, 5_000, 10_000, true, true, (5_000, 4_968, 64, true)),
            // Absurdly low limits still leave one connection each.
            (10, 10_000, 1024, true, true, (1, 1, 64, true)),
        ];
        for (nofile, max, plain, has_plain, has_admin, (https, p, a, lowered)) in cases {
            let (caps, note) = plan(nofile, max, plain, has_plain, has_admin);
            assert_eq!(
                caps,
                Caps {
                    https,
                    plaintext: p,
                    admin: a
                },
                "nofile {nofile}"
            );
            assert_eq!(note.is_some(), lowered, "nofile {nofile}: {note:?}");
            let used = RESERVED_FDS + a as u64 + p as u64 + 2 * https as u64;
            if nofile >= 256 {
                assert!(
                    used <= nofile,
                    "nofile {nofile}: {used} descriptors planned"
                );
            }
        }
    }

    #[test]
    fn per_ip_counts_and_releases() {
        let table = PerIp::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.admit(a, 2).unwrap();
        let second = table.admit(mapped, 2).unwrap();
        assert!(table.admit(a, 2).is_none(), "third from the same address");
        let other = table.admit(b, 2);
        assert!(other.is_some(), "another address has its own count");
        assert_eq!(table.count(a), 2);
        drop(first);
        assert_eq!(table.count(a), 1);
        let third = table.admit(a, 2);
        assert!(third.is_some());
        drop((second, third, other));
        assert_eq!(table.count(a), 0);
        assert!(
            table.counts().is_empty(),
            "no entry outlives its connections"
        );
        assert!(table.admit(a, 0).is_none(), "limit 0 admits nothing here");
        assert!(table.counts().is_empty());
    }
}
