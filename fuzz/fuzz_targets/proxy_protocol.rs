//! The PROXY protocol header parser, checked by its properties:
//! 1. any bytes: no panic; a complete header is no longer than the input, and bytes after it
//!    change nothing;
//! 2. no prefix of a complete header is judged invalid (the reader reads byte by byte as they
//!    arrive, so a wrong early "invalid" would refuse a good load balancer), and every strict
//!    prefix is incomplete;
//! 3. v1 and v2 headers built from arbitrary addresses parse back to their source address.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use gatehouse::conn::proxy_protocol::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<u8>,
    v4: ([u8; 4], [u8; 4], u16, u16),
    v6: ([u8; 16], [u8; 16], u16, u16),
    v2_tlvs: Vec<u8>,
    pick: u8,
    trailing: Vec<u8>,
}

fn v2(family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x21); // version 2, PROXY
    out.push(family);
    let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(addresses);
    out.extend_from_slice(tlvs);
    out
}

fn check_prefixes(header: &[u8]) {
    for i in 0..header.len() {
        assert_eq!(parse(&header[..i]), Parsed::Incomplete, "prefix {i} of {header:?}");
    }
}

fuzz_target!(|input: Input| {
    // 1 and 2 on arbitrary bytes.
    if let Parsed::Complete(h) = parse(&input.raw) {
        assert!(h.len <= input.raw.len());
        assert_eq!(parse(&input.raw[..h.len]), Parsed::Complete(h.clone()));
        check_prefixes(&input.raw[..h.len]);
    }

    // 3: well-formed headers.
    let (s4, d4, sp4, dp4) = input.v4;
    let (s6, d6, sp6, dp6) = input.v6;
    let (header, want) = match input.pick % 4 {
        0 => {
            let (s, d) = (Ipv4Addr::from(s4), Ipv4Addr::from(d4));
            (
                format!("PROXY TCP4 {s} {d} {sp4} {dp4}\r\n").into_bytes(),
                Some(SocketAddr::from((s, sp4))),
            )
        }
        1 => {
            let (s, d) = (Ipv6Addr::from(s6), Ipv6Addr::from(d6));
            (
                format!("PROXY TCP6 {s} {d} {sp6} {dp6}\r\n").into_bytes(),
                Some(SocketAddr::from((s, sp6))),
            )
        }
        2 => {
            let mut a = Vec::new();
            a.extend_from_slice(&s4);
            a.extend_from_slice(&d4);
            a.extend_from_slice(&sp4.to_be_bytes());
            a.extend_from_slice(&dp4.to_be_bytes());
            // TLVs as type, 2-byte length, value: a well-formed list of at most 3.
            let mut tlvs = Vec::new();
            for chunk in input.v2_tlvs.chunks(8).take(3) {
                tlvs.push(0xE0 | (chunk[0] & 0x0F)); // custom TLV types
                tlvs.extend_from_slice(&u16::try_from(chunk.len() - 1).unwrap().to_be_bytes());
                tlvs.extend_from_slice(&chunk[1..]);
            }
            (v2(0x11, &a, &tlvs), Some(SocketAddr::from((Ipv4Addr::from(s4), sp4))))
        }
        _ => {
            let mut a = Vec::new();
            a.extend_from_slice(&s6);
            a.extend_from_slice(&d6);
            a.extend_from_slice(&sp6.to_be_bytes());
            a.extend_from_slice(&dp6.to_be_bytes());
            (v2(0x21, &a, &[]), Some(SocketAddr::from((Ipv6Addr::from(s6), sp6))))
        }
    };
    let mut with_more = header.clone();
    with_more.extend_from_slice(&input.trailing[..input.trailing.len().min(64)]);
    match parse(&with_more) {
        Parsed::Complete(h) => {
            assert_eq!(h.len, header.len(), "{header:?}");
            assert_eq!(h.source, want, "{header:?}");
        }
        other => panic!("{other:?} for a well-formed header {header:?}"),
    }
    check_prefixes(&header);
});
