//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) in front of the TLS
//! handshake, for gatehouse behind an L4 load balancer (`proxy.proxy_protocol = true`): the
//! header names the client, which becomes the connection's peer for policies, the access log
//! and `x-forwarded-for`. Parsing is the `ppp` crate's; this module only reads exactly the
//! header's bytes off the socket, so the ClientHello that follows is left for rustls.

use std::io;
use std::net::SocketAddr;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header accepted: a v1 header is at most 107 bytes; a v2 header is 16 bytes plus
/// addresses and TLVs (load balancers send tens of bytes of TLVs; HAProxy caps its own at 4 KiB).
pub(crate) const MAX_HEADER: usize = 4096;

/// The longest v1 line, CRLF included (the protocol's limit).
const V1_MAX: usize = 107;

/// What a complete header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes.
    pub len: usize,
    /// The client, for a proxied TCP connection; `None` for a v2 `LOCAL` connection (the load
    /// balancer's own health check) or a v1 `UNKNOWN` one: the socket's peer is kept.
    pub source: Option<SocketAddr>,
}

/// The result of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Complete(Header),
    /// Every byte so far belongs to a header that is not finished yet.
    Incomplete,
    Invalid(String),
}

/// Parses the header at the start of `bytes` (bytes after it are ignored).
pub fn parse(bytes: &[u8]) -> Parsed {
    // A v1 line is judged once it has ended: `ppp` takes some unfinished lines (one cut
    // inside the last port, say) for invalid ones.
    if bytes.starts_with(b"PROXY") || b"PROXY".starts_with(bytes) {
        match memchr::memchr(b'\n', bytes) {
            Some(_) => {}
            None if bytes.len() < V1_MAX => return Parsed::Incomplete,
            None => return Parsed::Invalid(format!("PROXY v1 line longer than {V1_MAX} bytes")),
        }
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => Parsed::Complete(Header {
            len: h.header.len(),
            source: match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            },
        }),
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, _) => {
                    return Parsed::Invalid(
                        "PROXY v2 header with neither an IPv4 nor an IPv6 source".into(),
                    );
                }
            };
            Parsed::Complete(Header {
                len: h.len(),
                source,
            })
        }
        HeaderResult::V1(Err(e)) => Parsed::Invalid(format!("no PROXY protocol header: {e}")),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(format!("bad PROXY v2 header: {e}")),
    }
}

/// Reads the header off `tcp`, consuming exactly its bytes. Bytes are peeked first and only
/// consumed while they belong to the header, so nothing of the TLS handshake is taken.
pub(crate) async fn read_header(tcp: &mut TcpStream) -> io::Result<Header> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut seen: Vec<u8> = Vec::with_capacity(256);
    let mut peeked = vec![0u8; MAX_HEADER];
    loop {
        let room = MAX_HEADER - seen.len();
        if room == 0 {
            return Err(invalid(format!(
                "PROXY header longer than {MAX_HEADER} bytes"
            )));
        }
        let n = tcp.peek(&mut peeked[..room]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete PROXY header",
            ));
        }
        let start = seen.len();
        seen.extend_from_slice(&peeked[..n]);
        match parse(&seen) {
            Parsed::Complete(header) => {
                // The header ends within what was peeked: take exactly its remaining bytes.
                let mut rest = vec![0u8; header.len - start];
                tcp.read_exact(&mut rest).await?;
                return Ok(header);
            }
            Parsed::Incomplete => {
                // All of it is header: consume it, so the next peek waits for new bytes.
                tcp.read_exact(&mut peeked[..n]).await?;
            }
            Parsed::Invalid(m) => return Err(invalid(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    /// A v2 header: version 2, `command`, TCP over `family`, the address block, then TLVs.
    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family | 0x01);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn v2_ipv4(src: [u8; 4], src_port: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend_from_slice(&[10, 0, 0, 1]);
        a.extend_from_slice(&src_port.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        v2(1, 0x10, &a, &[])
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn headers_and_what_they_say() {
        let v1_tcp4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec();
        let v1_tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n".to_vec();
        let v1_unknown = b"PROXY UNKNOWN\r\n".to_vec();
        let v2_4 = v2_ipv4([203, 0, 113, 7], 56324);
        let mut v6 = [0u8; 36];
        v6[..16].copy_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6[32..34].copy_from_slice(&56324u16.to_be_bytes());
        let v2_6 = v2(1, 0x20, &v6, &[]);
        let v2_tlvs = v2(1, 0x10, &v2_4[16..], &[0x04, 0x00, 0x03, b'a', b'b', b'c']);
        let v2_local = v2(0, 0x00, &[], &[]);
        let cases: Vec<(&str, Vec<u8>, Option<SocketAddr>)> = vec![
            ("v1 TCP4", v1_tcp4, addr("203.0.113.7:56324")),
            ("v1 TCP6", v1_tcp6, addr("[2001:db8::7]:56324")),
            ("v1 UNKNOWN", v1_unknown, None),
            ("v2 IPv4", v2_4, addr("203.0.113.7:56324")),
            ("v2 IPv6", v2_6, addr("[2001:db8::7]:56324")),
            ("v2 IPv4 with TLVs", v2_tlvs, addr("203.0.113.7:56324")),
            ("v2 LOCAL", v2_local, None),
        ];
        for (name, header, source) in cases {
            // Followed by the first bytes of a TLS ClientHello, which are not part of it.
            let mut bytes = header.clone();
            bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x02, 0x00]);
            assert_eq!(
                parse(&bytes),
                Parsed::Complete(Header {
                    len: header.len(),
                    source
                }),
                "{name}"
            );
            // Every proper prefix is incomplete, never invalid and never complete.
            for cut in 0..header.len() {
                assert_eq!(
                    parse(&header[..cut]),
                    Parsed::Incomplete,
                    "{name} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn what_is_not_a_header_is_invalid() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "a TLS ClientHello",
                vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00],
            ),
            (
                "an HTTP request",
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            ),
            (
                "v1 with a bad address",
                b"PROXY TCP4 203.0.113.999 10.0.0.1 1 2\r\n".to_vec(),
            ),
            (
                "v1 with a bad protocol",
                b"PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n".to_vec(),
            ),
            (
                "v1 too long",
                format!("PROXY TCP4 {}\r\n", "1".repeat(120)).into_bytes(),
            ),
            ("v2 version 1", {
                let mut h = v2_ipv4([1, 2, 3, 4], 1);
                h[12] = 0x11;
                h
            }),
        ];
        for (name, bytes) in cases {
            assert!(
                matches!(parse(&bytes), Parsed::Invalid(_)),
                "{name}: {:?}",
                parse(&bytes)
            );
        }
    }
}
