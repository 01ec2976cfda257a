//! RFC 9440 at the upstream, byte for byte. A chain issued at test time (root -> intermediate
//! 1 -> intermediate 2 -> client leaf; the server's `client_ca` holds only the root) is
//! presented as leaf, int2, int1 over HTTP/1.1 and HTTP/2, and the request head the proxy
//! wrote upstream is read off the wire (the tap): one `client-cert` holding the leaf, one
//! `client-cert-chain` holding int2 then int1, parsed back with a strict RFC 8941 parser and
//! x509-parser. Client-sent `client-cert` / `client-cert-chain` (any case, repeated) never
//! reach the upstream: replaced under `rfc9440`, removed under `none` and for a client
//! without a certificate.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::x509::{provider, read_chain, roots, x509};
use common::*;
use http_body_util::Full;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

const RFC9440: &str = "[proxy]\nclient_cert_headers = \"rfc9440\"";
const NONE: &str = "[proxy]\nclient_cert_headers = \"none\"";
const OPTIONAL: &str = "client_auth = \"optional\"";
/// base64("forged"): every forged value carries it, so its absence upstream is checkable.
const FORGED: &str = "Zm9yZ2Vk";

// === certificates, issued at test time ===

/// root (the pki's CA) -> int1 -> int2 -> leaf, as DER; and a leaf issued by the root alone.
struct Chain {
    root: Vec<u8>,
    int1: Vec<u8>,
    int2: Vec<u8>,
    leaf: Vec<u8>,
    leaf_key_pem: String,
    /// Issued directly by the root, presented without intermediates.
    direct: gatehouse::dev::pki::Leaf,
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
}

fn ca_params(cn: &str, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    params
}

fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "client");
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://test.client".to_owned().try_into().unwrap(),
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    params
}

impl Chain {
    fn issue(pki: &TestPki) -> Self {
        let root_key = KeyPair::from_pem(&pki.ca.key_pem).unwrap();
        let root = Issuer::from_ca_cert_pem(&pki.ca.cert_pem, root_key).unwrap();
        let int1 = CertifiedIssuer::signed_by(
            ca_params("Test Intermediate 1", 1),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let int2 = CertifiedIssuer::signed_by(
            ca_params("Test Intermediate 2", 0),
            KeyPair::generate().unwrap(),
            &int1,
        )
        .unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = leaf_params().signed_by(&key, &int2).unwrap();
        let direct = pki
            .ca
            .issue(&gatehouse::dev::pki::LeafSpec::client_uri(
                "spiffe://direct.client",
            ))
            .unwrap();
        Self {
            root: read_chain(&pki.path("ca.crt"))[0].to_vec(),
            int1: int1.der().to_vec(),
            int2: int2.der().to_vec(),
            leaf: leaf.der().to_vec(),
            leaf_key_pem: key.serialize_pem(),
            direct,
        }
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
}

/// `:` standard base64 (padded) `:`, the RFC 8941 byte sequence the proxy must write.
fn item(der: &[u8]) -> String {
    format!(":{}:", STANDARD.encode(der))
}

// === the proxy, its tapped upstream and the request head on the wire ===

/// A proxy for `test.com` whose client CA is the chain's root, in front of a tapped echo.
struct Gate {
    pki: TestPki,
    proxy: Proxy,
    tap: Tap,
    chain: Chain,
}

impl Gate {
    async fn start(server_extra: &str, extra: &str) -> Self {
        let pki = TestPki::new();
        pki.server("server", &["test.com"]);
        let chain = Chain::issue(&pki);
        let (tap, upstream) = Tap::start(start_echo().await).await;
        let cfg = config(&pki, &["test.com"], upstream, server_extra, extra);
        let proxy = Proxy::start(pki.dir.path(), &cfg).await;
        Self {
            pki,
            proxy,
            tap,
            chain,
        }
    }

    fn presenting(&self, certs: &[&[u8]], key_pem: &str) -> ClientOpts {
        let mut opts = ClientOpts::new(&self.pki, None);
        opts.identity = Some((certs.iter().map(|c| pem(c)).collect(), key_pem.to_owned()));
        opts
    }

    /// The leaf, then int2, then int1.
    fn full(&self) -> ClientOpts {
        let c = &self.chain;
        self.presenting(&[&c.leaf, &c.int2, &c.int1], &c.leaf_key_pem)
    }

    /// The root-issued leaf alone.
    fn leaf_only(&self) -> ClientOpts {
        let d = &self.chain.direct;
        self.presenting(&[&d.der], &d.key_pem)
    }

    fn anonymous(&self) -> ClientOpts {
        ClientOpts::new(&self.pki, None)
    }

    /// Sends `req` on a fresh connection; the request head the upstream got.
    async fn forward(&self, opts: &ClientOpts, req: http::Request<Full<Bytes>>) -> Head {
        let before = self.tap.sent().len();
        let r = request(self.proxy.https, "test.com", opts, req)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let want = if opts.alpn == [b"h2".to_vec()] {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(r.version, want);
        Head::of(&self.tap.sent()[before..])
    }

    /// Sends raw HTTP/1.1 bytes on a fresh connection; the request head the upstream got.
    async fn forward_raw(&self, opts: &ClientOpts, bytes: &[u8]) -> Head {
        let before = self.tap.sent().len();
        let h1 = opts.clone().h1();
        let res = raw(self.proxy.https, "test.com", &h1, bytes, STEP).await;
        assert_eq!(status_of(&res), 200, "{res}");
        Head::of(&self.tap.sent()[before..])
    }
}

/// `GET /headers` with `fields` added in order (repeats kept), HTTP/1.1 or HTTP/2.
fn get_with(h2: bool, fields: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut b = if h2 {
        http::Request::get("https://test.com/headers").version(http::Version::HTTP_2)
    } else {
        http::Request::get("/headers").header("host", "test.com")
    };
    for (k, v) in fields {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// The first request head in what the proxy wrote upstream, as it was on the wire.
struct Head(String);

impl Head {
    fn of(wire: &str) -> Self {
        let end = wire
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("no request head upstream: {wire:?}"));
        let head = &wire[..end];
        assert!(head.starts_with("GET /headers HTTP/1.1\r\n"), "{head}");
        Self(head.to_owned())
    }

    /// The value of every field line named `name` (any case), without the OWS around it.
    fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .split("\r\n")
            .skip(1)
            .map(|l| l.split_once(':').unwrap_or_else(|| panic!("{l:?}")))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_matches([' ', '\t']))
            .collect()
    }

    /// Exactly one `client-cert` holding `leaf`, and exactly one `client-cert-chain` holding
    /// `chain` in order, or none at all when `chain` is empty. Nothing forged.
    #[track_caller]
    fn expect(&self, leaf: &[u8], chain: &[&[u8]]) {
        assert_eq!(self.values("client-cert"), [item(leaf)], "{}", self.0);
        let want: Vec<String> = chain.iter().map(|c| item(c)).collect();
        let want: Vec<String> = Some(want.join(", "))
            .filter(|w| !w.is_empty())
            .into_iter()
            .collect();
        assert_eq!(self.values("client-cert-chain"), want, "{}", self.0);
        assert!(!self.0.contains(FORGED), "{}", self.0);
    }

    /// Neither header, forged or not.
    #[track_caller]
    fn expect_none(&self) {
        assert!(self.values("client-cert").is_empty(), "{}", self.0);
        assert!(self.values("client-cert-chain").is_empty(), "{}", self.0);
        assert!(!self.0.contains(FORGED), "{}", self.0);
    }
}

// === a strict RFC 8941 parser for what RFC 9440 sends ===

/// A byte sequence (RFC 8941 §4.2.7) at the start of `s`: `:`, base64 with its padding
/// (decoded canonically), `:`. Returns the bytes and what follows.
fn byte_sequence(s: &str) -> Result<(Vec<u8>, &str), String> {
    let rest = s
        .strip_prefix(':')
        .ok_or_else(|| format!("not a byte sequence: {s:?}"))?;
    let end = rest
        .find(':')
        .ok_or_else(|| format!("unterminated byte sequence: {s:?}"))?;
    let b64 = &rest[..end];
    if let Some(c) = b64
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
    {
        return Err(format!("{c:?} in a byte sequence"));
    }
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| format!("base64 {b64:?}: {e}"))?;
    Ok((bytes, &rest[end + 1..]))
}

/// `Client-Cert`: one byte sequence, no parameters (RFC 9440 defines none).
fn sf_binary_item(value: &str) -> Result<Vec<u8>, String> {
    let (bytes, rest) = byte_sequence(value.trim_start_matches(' '))?;
    match rest.trim_end_matches(' ') {
        "" => Ok(bytes),
        extra => Err(format!("after the item: {extra:?}")),
    }
}

/// `Client-Cert-Chain`: a list (RFC 8941 §4.2.1) of byte sequences without parameters,
/// members separated by `,` with optional SP / HTAB around it; no trailing comma.
fn sf_binary_list(value: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut s = value.trim_matches(' ');
    let mut members = Vec::new();
    while !s.is_empty() {
        let (bytes, rest) = byte_sequence(s)?;
        members.push(bytes);
        s = rest.trim_start_matches([' ', '\t']);
        if s.is_empty() {
            break;
        }
        s = s
            .strip_prefix(',')
            .ok_or_else(|| format!("expected ',' at {s:?}"))?
            .trim_start_matches([' ', '\t']);
        if s.is_empty() {
            return Err("trailing comma".into());
        }
    }
    Ok(members)
}

#[test]
fn the_strict_parser_takes_rfc8941_byte_sequences_and_nothing_else() {
    assert_eq!(sf_binary_item(":YQ==:"), Ok(b"a".to_vec()));
    assert_eq!(sf_binary_item("::"), Ok(Vec::new()));
    let ab = Ok(vec![b"a".to_vec(), b"bc".to_vec()]);
    for good in ":YQ==:, :YmM=:|:YQ==:,:YmM=:|:YQ==: \t,\t :YmM=:| :YQ==:, :YmM=: ".split('|') {
        assert_eq!(sf_binary_list(good), ab, "{good:?}");
    }
    for bad in "YQ==|:YQ:|:YQ=:|:YR==:|:YQ==|:YQ==:;a=1|:YQ==: x|:Y-Q=:|:YQ==:,".split('|') {
        assert!(sf_binary_item(bad).is_err(), "{bad:?}");
    }
    for bad in ":YQ==:,|:YQ==: :YmM=:|,:YQ==:|:YQ==:,,:YmM=:|:YQ==:;a, :YmM=:".split('|') {
        assert!(sf_binary_list(bad).is_err(), "{bad:?}");
    }
}

// === the tests ===

/// Parses the two values back to DER and checks them against what was issued: the same
/// bytes, subjects and issuers chaining up, and a chain webpki accepts with only the root.
fn assert_chains_up(head: &Head, chain: &Chain) {
    let leaf = sf_binary_item(head.values("client-cert")[0]).unwrap();
    let rest = sf_binary_list(head.values("client-cert-chain")[0]).unwrap();
    assert_eq!(leaf, chain.leaf);
    assert_eq!(rest, [chain.int2.clone(), chain.int1.clone()]);
    let (l, i2, i1, root) = (
        x509(&leaf),
        x509(&rest[0]),
        x509(&rest[1]),
        x509(&chain.root),
    );
    assert_eq!(l.subject().to_string(), "CN=client");
    assert_eq!(i2.subject().to_string(), "CN=Test Intermediate 2");
    assert_eq!(i1.subject().to_string(), "CN=Test Intermediate 1");
    assert_eq!(l.issuer().as_raw(), i2.subject().as_raw(), "leaf by int2");
    assert_eq!(i2.issuer().as_raw(), i1.subject().as_raw(), "int2 by int1");
    assert_eq!(
        i1.issuer().as_raw(),
        root.subject().as_raw(),
        "int1 by root"
    );
    assert!(!l.is_ca() && i2.is_ca() && i1.is_ca());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(&CertificateDer::from(chain.root.clone())),
        provider(),
    )
    .build()
    .unwrap();
    let intermediates = [
        CertificateDer::from(rest[0].clone()),
        CertificateDer::from(rest[1].clone()),
    ];
    verifier
        .verify_client_cert(&CertificateDer::from(leaf), &intermediates, UnixTime::now())
        .expect("the forwarded chain verifies against the root");
}

fn h(opts: ClientOpts, h2: bool) -> ClientOpts {
    if h2 { opts.h2() } else { opts.h1() }
}

#[tokio::test]
async fn leaf_and_two_intermediates_reach_the_upstream_byte_for_byte_over_http1() {
    let gate = Gate::start("", RFC9440).await;
    let head = gate.forward(&gate.full().h1(), get_with(false, &[])).await;
    let c = &gate.chain;
    head.expect(&c.leaf, &[&c.int2, &c.int1]);
    assert_chains_up(&head, c);
}

#[tokio::test]
async fn leaf_and_two_intermediates_reach_the_upstream_byte_for_byte_over_http2() {
    let gate = Gate::start("", RFC9440).await;
    let head = gate.forward(&gate.full().h2(), get_with(true, &[])).await;
    let c = &gate.chain;
    head.expect(&c.leaf, &[&c.int2, &c.int1]);
    assert_chains_up(&head, c);
}

#[tokio::test]
async fn a_leaf_sent_alone_gets_client_cert_and_no_chain_over_http1_and_http2() {
    let gate = Gate::start("", RFC9440).await;
    let direct = &gate.chain.direct.der;
    for h2 in [false, true] {
        let head = gate
            .forward(&h(gate.leaf_only(), h2), get_with(h2, &[]))
            .await;
        head.expect(direct, &[]);
        let value = head.values("client-cert")[0];
        assert_eq!(&sf_binary_item(value).unwrap(), direct);
    }
}

/// Forged certificate fields: both names, mixed case, repeated; then each name alone (so
/// neither is only noticed because the other came along), one of them empty.
const FORGERIES: [&[(&str, &str)]; 3] = [
    &[
        ("Client-Cert", ":Zm9yZ2Vk:"),
        ("CLIENT-CERT-CHAIN", ":Zm9yZ2Vk:"),
        ("client-cert", ":Zm9yZ2VkLWxlYWY=:"),
        ("cLiEnT-cErT-cHaIn", ":Zm9yZ2Vk:, :Zm9yZ2VkLWludA==:"),
    ],
    &[("Client-Cert", ":Zm9yZ2Vk:"), ("CLIENT-CERT", "")],
    &[("client-CERT-chain", ":Zm9yZ2Vk:, :Zm9yZ2Vk:")],
];

/// What the upstream got from a client sending each forgery over HTTP/1.1 (raw bytes, the
/// names as written) and over HTTP/2 (where names are lowercase).
async fn forged_heads(gate: &Gate, opts: &ClientOpts) -> Vec<Head> {
    let mut heads = Vec::new();
    for fields in FORGERIES {
        let mut req = String::from("GET /headers HTTP/1.1\r\nHost: test.com\r\n");
        for (k, v) in fields {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        heads.push(gate.forward_raw(opts, req.as_bytes()).await);
        heads.push(
            gate.forward(&opts.clone().h2(), get_with(true, fields))
                .await,
        );
    }
    heads
}

#[tokio::test]
async fn forged_headers_are_replaced_by_one_proxy_made_value_each_under_rfc9440() {
    let gate = Gate::start("", RFC9440).await;
    let c = &gate.chain;
    for head in forged_heads(&gate, &gate.full()).await {
        head.expect(&c.leaf, &[&c.int2, &c.int1]);
        assert_chains_up(&head, c);
    }
    // Without intermediates a forged chain goes and none is made.
    for head in forged_heads(&gate, &gate.leaf_only()).await {
        head.expect(&c.direct.der, &[]);
    }
}

#[tokio::test]
async fn forged_headers_never_reach_the_upstream_under_none() {
    let gate = Gate::start("", NONE).await;
    for opts in [gate.full(), gate.leaf_only()] {
        for head in forged_heads(&gate, &opts).await {
            head.expect_none();
        }
    }
    // And `none` adds nothing of its own.
    for h2 in [false, true] {
        let head = gate.forward(&h(gate.full(), h2), get_with(h2, &[])).await;
        head.expect_none();
    }
}

#[tokio::test]
async fn forged_headers_never_reach_the_upstream_from_a_client_without_a_certificate() {
    let gate = Gate::start(OPTIONAL, RFC9440).await;
    for head in forged_heads(&gate, &gate.anonymous()).await {
        head.expect_none();
    }
    // The same proxy still sends the real ones for a client with a certificate.
    let c = &gate.chain;
    for head in forged_heads(&gate, &gate.full()).await {
        head.expect(&c.leaf, &[&c.int2, &c.int1]);
    }
}

#[tokio::test]
async fn a_resumed_session_carries_the_same_headers() {
    let gate = Gate::start("", RFC9440).await;
    // One client config for both connections: its session store lets the second resume.
    let cfg = gate.full().h1().config();
    let c = &gate.chain;
    for want in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed] {
        let tcp = tokio::net::TcpStream::connect(gate.proxy.https)
            .await
            .unwrap();
        let connect = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(ServerName::try_from("test.com").unwrap(), tcp);
        let tls = tokio::time::timeout(STEP, connect).await.unwrap().unwrap();
        assert_eq!(tls.get_ref().1.handshake_kind(), Some(want));
        let before = gate.tap.sent().len();
        let r = request_on(tls, get_with(false, &[])).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        Head::of(&gate.tap.sent()[before..]).expect(&c.leaf, &[&c.int2, &c.int1]);
    }
}
