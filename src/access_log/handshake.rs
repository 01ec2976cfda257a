//! One access-log line per refused TLS handshake (SPEC "Access log"): `event = "handshake"`,
//! the client's address, the SNI, the handshake result, and the presented certificate's
//! subject, issuer, serial, SANs and `notAfter`, so an operator sees which client was turned
//! away and why without debug logs.
//!
//! A flood of bad clients must not flood the log: at most one line per second per client
//! address and result; the lines left out are counted in the next line's `suppressed`. The
//! table behind that is bounded ([`MAX_KEYS`]); when it is full of addresses refused within
//! the last second, lines for new addresses are left out and counted in the next line
//! written for any address. The certificate is parsed only for a line that is written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{self as access_log, AccessLog, LogLine, Value};
use crate::conn::handshake::Failure;
use crate::tls::HandshakeOutcome;
use crate::tls::credentials::CertSummary;

/// One line per this long per client address and result.
const WINDOW: Duration = Duration::from_secs(1);

/// Client addresses and results remembered at once.
const MAX_KEYS: usize = 4096;

/// One refused handshake, as logged.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeRecord {
    /// Always `handshake`.
    pub event: &'static str,
    pub time: String,
    pub peer: IpAddr,
    pub sni: Option<String>,
    pub result: &'static str,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub sans: Option<Vec<String>>,
    pub not_after: Option<String>,
    /// Lines left out since the last one for this address and result.
    pub suppressed: u64,
}

impl HandshakeRecord {
    /// The line for `failure` from `peer`, with the presented certificate described.
    pub(crate) fn new(peer: IpAddr, failure: &Failure, suppressed: u64) -> Self {
        let cert = failure
            .presented
            .as_ref()
            .and_then(|der| CertSummary::parse(der));
        Self {
            event: "handshake",
            time: access_log::now_rfc3339(),
            peer,
            sni: failure.sni.clone(),
            result: failure.outcome.as_str(),
            not_after: cert.as_ref().map(|c| access_log::rfc3339(c.not_after)),
            subject: cert.as_ref().map(|c| c.subject.clone()),
            issuer: cert.as_ref().map(|c| c.issuer.clone()),
            serial: cert.as_ref().map(|c| c.serial.clone()),
            sans: cert.map(|c| c.sans),
            suppressed,
        }
    }
}

impl LogLine for HandshakeRecord {
    fn fields(&self, each: &mut impl FnMut(&str, Value<'_>)) {
        each("event", Value::Text(self.event));
        each("time", Value::Text(&self.time));
        each("peer", Value::Ip(self.peer));
        each("sni", Value::opt(self.sni.as_deref()));
        each("result", Value::Text(self.result));
        each("subject", Value::opt(self.subject.as_deref()));
        each("issuer", Value::opt(self.issuer.as_deref()));
        each("serial", Value::opt(self.serial.as_deref()));
        each(
            "sans",
            self.sans.as_deref().map_or(Value::Missing, Value::List),
        );
        each("not_after", Value::opt(self.not_after.as_deref()));
        each("suppressed", Value::Number(self.suppressed));
    }
}

/// Where each (address, result) stands in its window.
#[derive(Debug, Clone, Copy)]
struct Slot {
    last_line: Instant,
    suppressed: u64,
}

/// The refused-handshake lines of one server process.
pub(crate) struct RefusedHandshakes {
    log: Option<AccessLog>,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    by_key: HashMap<(IpAddr, HandshakeOutcome), Slot>,
    /// Lines left out because the table was full, owed to the next line written.
    overflow: u64,
}

impl RefusedHandshakes {
    /// Lines go to `log`; none are written without one (the access log is off).
    pub(crate) fn new(log: Option<AccessLog>) -> Self {
        Self {
            log,
            slots: Mutex::new(Slots::default()),
        }
    }

    /// Writes the line for a refused handshake from `peer`, unless one for the same address
    /// and result was written less than a second ago (then it is counted).
    pub(crate) fn refused(&self, peer: IpAddr, failure: &Failure) {
        let Some(log) = &self.log else { return };
        let Some(suppressed) = self.admit(peer, failure.outcome, Instant::now()) else {
            return;
        };
        log.emit(&HandshakeRecord::new(peer, failure, suppressed));
    }

    /// `Some(lines left out before this one)` when a line is due now; `None` to leave it out.
    fn admit(&self, peer: IpAddr, outcome: HandshakeOutcome, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere mid-update of plain counters.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slots = &mut *slots;
        if let Some(slot) = slots.by_key.get_mut(&(peer, outcome)) {
            if now.duration_since(slot.last_line) < WINDOW {
                slot.suppressed += 1;
                return None;
            }
            let owed = slot.suppressed + std::mem::take(&mut slots.overflow);
            *slot = Slot {
                last_line: now,
                suppressed: 0,
            };
            return Some(owed);
        }
        if slots.by_key.len() >= MAX_KEYS {
            // Forget the keys whose window has passed; what they had left out is owed on.
            let mut lost = 0;
            slots.by_key.retain(|_, slot| {
                let keep = now.duration_since(slot.last_line) < WINDOW;
                if !keep {
                    lost += slot.suppressed;
                }
                keep
            });
            slots.overflow += lost;
            if slots.by_key.len() >= MAX_KEYS {
                slots.overflow += 1;
                return None;
            }
        }
        slots.by_key.insert(
            (peer, outcome),
            Slot {
                last_line: now,
                suppressed: 0,
            },
        );
        Some(std::mem::take(&mut slots.overflow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn one_line_per_second_per_address_and_result_and_the_rest_counted() {
        let r = RefusedHandshakes::new(None);
        let t0 = Instant::now();
        let expired = HandshakeOutcome::ExpiredClientCert;
        let untrusted = HandshakeOutcome::UntrustedClientCert;
        assert_eq!(r.admit(ip(1), expired, t0), Some(0));
        for _ in 0..5 {
            assert_eq!(
                r.admit(ip(1), expired, t0 + Duration::from_millis(10)),
                None
            );
        }
        // Another result, another address: lines of their own.
        assert_eq!(r.admit(ip(1), untrusted, t0), Some(0));
        assert_eq!(r.admit(ip(2), expired, t0), Some(0));
        // After the window, the next line carries the five left out.
        assert_eq!(
            r.admit(ip(1), expired, t0 + Duration::from_millis(1000)),
            Some(5)
        );
        assert_eq!(
            r.admit(ip(1), expired, t0 + Duration::from_millis(1500)),
            None
        );
        assert_eq!(
            r.admit(ip(1), expired, t0 + Duration::from_millis(2100)),
            Some(1)
        );
    }

    #[test]
    fn the_table_is_bounded_and_what_it_leaves_out_is_owed_to_the_next_line() {
        let r = RefusedHandshakes::new(None);
        let t0 = Instant::now();
        let bad = HandshakeOutcome::NoClientCert;
        for n in 0..MAX_KEYS as u32 {
            assert_eq!(r.admit(ip(n), bad, t0), Some(0));
        }
        // Full, and every key is inside its window: new addresses are left out, counted.
        assert_eq!(r.admit(ip(1 << 20), bad, t0), None);
        assert_eq!(r.admit(ip(1 << 21), bad, t0), None);
        assert_eq!(r.slots.lock().unwrap().by_key.len(), MAX_KEYS);
        // A second later the old keys make room, and the next line owes the two.
        let later = t0 + WINDOW;
        assert_eq!(r.admit(ip(1 << 22), bad, later), Some(2));
        assert_eq!(r.slots.lock().unwrap().by_key.len(), 1);
    }
}
