//! The command line (SPEC §1), with clap's derive API. Usage errors exit 2 (clap's default).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "mTLS ingress proxy: TLS 1.3, client certificates, Istio-style authorization",
    after_help = "Examples:\n  gatehouse demo                       # try it: PKI + upstream + proxy on localhost\n  gatehouse check -c gatehouse.toml\n  gatehouse run -c gatehouse.toml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground (diagnostics on stderr, access log on stdout).
    #[command(after_help = "Example:\n  gatehouse run -c /etc/gatehouse/gatehouse.toml")]
    Run(ConfigArg),
    /// Zero-setup quickstart: dev PKI + echo upstream + proxy on 127.0.0.1, prints curl commands.
    #[command(
        after_help = "Example:\n  gatehouse demo\n  gatehouse demo --dir ./demo --https-port 0"
    )]
    Demo(DemoArgs),
    /// Validate the config and every file it names, then print a summary.
    #[command(after_help = "Example:\n  gatehouse check -c config/gatehouse.toml")]
    Check(ConfigArg),
    /// Dry-run the policy engine for one request.
    #[command(
        after_help = "Example:\n  gatehouse authz -c config/gatehouse.toml --principal test.client --method GET --host test.com --path /status/418"
    )]
    Authz(AuthzArgs),
    /// Make a dev PKI: a CA, server and client certificates (PEM; keys with mode 0600).
    #[command(
        subcommand,
        after_help = "Example:\n  gatehouse cert ca --out certs\n  gatehouse cert server --ca certs --out certs --dns test.com\n  gatehouse cert client --ca certs --out certs --uri spiffe://test.client"
    )]
    Cert(CertCommand),
    /// A small httpbin-like upstream: /status/<code>, /headers, /anything, /bytes/<n>, /delay/<s>.
    #[command(after_help = "Example:\n  gatehouse echo --listen 127.0.0.1:8000")]
    Echo(EchoArgs),
    /// An mTLS load generator: keep-alive HTTP/1.1, HTTP/2 streams, or a handshake per request.
    #[command(
        after_help = "Example:\n  gatehouse bench https://test.com:8443/ --cacert certs/ca.crt --cert certs/client.crt --key certs/client.key -c 32 -d 10s\n  gatehouse bench https://test.com:8443/ --connect 10.0.0.7:8443 --cacert certs/ca.crt --cert certs/client.crt --key certs/client.key --new-connection --resume --json"
    )]
    Bench(BenchArgs),
    /// Would this client certificate be accepted? The handshake's own checks, on a file.
    #[command(
        after_help = "Example:\n  gatehouse verify -c config/gatehouse.toml --cert certs/client.crt\n  gatehouse verify -c config/gatehouse.toml --cert client.pem --sni api.example.com"
    )]
    Verify(VerifyArgs),
    /// Translate Istio or ingress-nginx YAML into one gatehouse config (TOML on stdout).
    #[command(
        subcommand,
        after_help = "Exit status: 0 everything translated, 3 something was reported (listed at the top of the output and on stderr), 1 unreadable input or nothing to translate.\n\nExample:\n  gatehouse import istio gateway.yaml virtualservice.yaml > gatehouse.toml\n  kubectl get ingress -A -o yaml | gatehouse import ingress-nginx - --secrets-dir /etc/gatehouse/secrets"
    )]
    Import(ImportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Istio Gateway, VirtualService and AuthorizationPolicy objects.
    Istio(ImportArgs),
    /// networking.k8s.io/v1 Ingress objects and their nginx.ingress.kubernetes.io annotations.
    #[command(name = "ingress-nginx")]
    IngressNginx(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Kubernetes YAML files (multi-document; `-` reads standard input).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Where secrets are mounted, one directory per secret (credentialName, secretName).
    #[arg(long, value_name = "DIR", default_value = crate::import::DEFAULT_SECRETS_DIR)]
    pub secrets_dir: String,
    /// The upstream of a service port, with {service}, {namespace} and {port} filled in
    /// (default: http://{service}.{namespace}.svc.cluster.local:{port}).
    #[arg(long, value_name = "TPL")]
    pub upstream_template: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The TOML config file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// The client certificate (PEM, leaf first, then any intermediates the client sends).
    #[arg(long, value_name = "PEM")]
    pub cert: PathBuf,
    /// The SNI the client sends, which picks the [[server]] (default: the first one).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuthzArgs {
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// Take the identity from this client certificate (PEM, leaf first), as the proxy does.
    #[arg(long, value_name = "PEM", conflicts_with = "principal")]
    pub cert: Option<PathBuf>,
    /// Act as a client with this principal (the SPIFFE ID without `spiffe://`).
    #[arg(long, value_name = "ID")]
    pub principal: Option<String>,
    /// The SNI the client sent (default: the host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    #[arg(long, value_name = "M")]
    pub method: String,
    #[arg(long, value_name = "H")]
    pub host: String,
    /// The request target: a path, with a query if you like (admitted and normalized as the
    /// proxy would).
    #[arg(long, value_name = "P")]
    pub path: String,
    /// A request header, repeatable.
    #[arg(long = "header", value_name = "K=V")]
    pub headers: Vec<String>,
    /// The client address (default 127.0.0.1).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub source_ip: std::net::IpAddr,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the PKI and config (default: a fresh temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// 0 picks a free port.
    #[arg(long, value_name = "N", default_value_t = 8443)]
    pub https_port: u16,
    #[arg(long, value_name = "N", default_value_t = 8080)]
    pub http_port: u16,
    #[arg(long, value_name = "N", default_value_t = 9901)]
    pub admin_port: u16,
    #[arg(long, value_name = "N", default_value_t = 8000)]
    pub upstream_port: u16,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
}

/// `gatehouse bench`: what to load and how (SPEC §1).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The https:// URL to request; its host is the SNI and the Host header.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Dial this address instead of resolving the URL's host (as curl's --connect-to).
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// CA bundle (PEM) that verifies the server (default: the system's bundle).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate chain to present (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Concurrent connections (with --new-connection: concurrent requests).
    #[arg(short = 'c', long = "connections", value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// How long to measure, after the warm-up ("500ms", "10s", "2m").
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: std::time::Duration,
    /// Load run before measuring, not counted.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub warmup: std::time::Duration,
    /// Speak HTTP/2 (ALPN h2), several streams per connection.
    #[arg(long, conflicts_with = "new_connection")]
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, value_name = "N", default_value_t = 16, requires = "http2",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub streams: u32,
    /// A new TCP and TLS connection for every request (HTTP/1.1): measures handshakes.
    #[arg(long)]
    pub new_connection: bool,
    /// With --new-connection: resume a TLS session instead of a full handshake.
    #[arg(long, requires = "new_connection")]
    pub resume: bool,
    #[arg(long, value_name = "M", default_value = "GET")]
    pub method: String,
    /// Send a request body of this many bytes.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub body_bytes: u64,
    /// A request header, repeatable.
    #[arg(long = "header", value_name = "K=V")]
    pub headers: Vec<String>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
        .ok_or_else(|| format!("{s:?}: expected a duration like \"500ms\", \"10s\", \"5m\""))
}

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// A self-signed CA: ca.crt, ca.key.
    #[command(after_help = "Example:\n  gatehouse cert ca --out config/certs")]
    Ca {
        #[arg(long, value_name = "NAME", default_value = "gatehouse dev CA")]
        cn: String,
        #[command(flatten)]
        common: CertCommon,
    },
    /// A server certificate (EKU serverAuth): <name>.crt (leaf then CA), <name>.key.
    #[command(
        after_help = "Example:\n  gatehouse cert server --ca config/certs --out config/certs --dns test.com --dns '*.mtls.example.com' --ip 127.0.0.1"
    )]
    Server {
        /// Directory with ca.crt and ca.key.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        #[arg(long, default_value = "server")]
        name: String,
        /// A DNS SAN; repeat for more.
        #[arg(long, value_name = "NAME", required = true)]
        dns: Vec<String>,
        /// An IP SAN; repeat for more.
        #[arg(long, value_name = "IP")]
        ip: Vec<std::net::IpAddr>,
        #[command(flatten)]
        common: CertCommon,
    },
    /// A client certificate (EKU clientAuth): <name>.crt (leaf then CA), <name>.key.
    #[command(
        after_help = "Example:\n  gatehouse cert client --ca config/certs --out config/certs --uri spiffe://test.client"
    )]
    Client {
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        #[arg(long, default_value = "client")]
        name: String,
        /// A URI SAN such as spiffe://test.client; repeat for more.
        #[arg(long, value_name = "URI")]
        uri: Vec<String>,
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        #[arg(long, value_name = "ADDR")]
        email: Vec<String>,
        /// The subject CN (default: the name).
        #[arg(long, value_name = "CN")]
        cn: Option<String>,
        /// Also write <name>.p12 (key + chain) protected by this password, for browsers and phones.
        #[arg(long, value_name = "PW")]
        p12_password: Option<String>,
        #[command(flatten)]
        common: CertCommon,
    },
}

#[derive(Debug, Args)]
pub struct CertCommon {
    /// Where to write the files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// ecdsa-p256 | ecdsa-p384 | ed25519 | rsa2048 | rsa4096
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256", value_parser = parse_key_type)]
    pub key_type: crate::dev::pki::KeyType,
    /// Validity in days (default: CA 3650, leaves 365).
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
}

fn parse_key_type(s: &str) -> Result<crate::dev::pki::KeyType, String> {
    crate::dev::pki::KeyType::parse(s).ok_or_else(|| {
        let names: Vec<&str> = crate::dev::pki::KeyType::NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect();
        format!("expected one of {}", names.join(", "))
    })
}
