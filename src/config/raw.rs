//! The serde mirror of the TOML file: one struct per table, `deny_unknown_fields`
//! everywhere, strings and `Option`s only. No logic lives here; `validate/` turns a
//! `RawConfig` into a checked [`crate::config::Config`].

use serde::Deserialize;

use crate::authz::raw::RawPolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: RawListen,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub server: Vec<RawServer>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub policy: Vec<RawPolicy>,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub log: RawLog,
    pub reload: Option<RawReload>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub https: String,
    pub http: Option<String>,
    pub admin: Option<String>,
    pub redirect_https_port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub session_cache_size: Option<i64>,
    pub key_exchange: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub hosts: Vec<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub credential_dir: Option<String>,
    pub client_auth: Option<String>,
    pub client_ca: Option<String>,
    pub client_crl: Option<Vec<String>>,
    pub allowed_sans: Option<Vec<String>>,
    pub allowed_spki_sha256: Option<Vec<String>>,
    pub allowed_cert_sha256: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub path_prefix: Option<String>,
    pub upstream: String,
    pub timeout: Option<String>,
    pub upstream_protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    pub path_normalization: Option<String>,
    pub escaped_slashes: Option<String>,
    pub headers_with_underscores: Option<String>,
    pub forward_client_cert: Option<String>,
    pub proxy_protocol: Option<bool>,
    pub handshake_timeout: Option<String>,
    pub request_header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub drain_timeout: Option<String>,
    pub max_request_header_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub h2_max_concurrent_streams: Option<i64>,
    pub h2_stream_window: Option<i64>,
    pub h2_connection_window: Option<i64>,
    pub stream_idle_timeout: Option<String>,
    pub max_connections_per_ip: Option<i64>,
    pub max_plaintext_connections: Option<i64>,
    pub upstream_max_connections: Option<i64>,
    pub allowed_upgrades: Option<Vec<String>>,
    pub client_cert_headers: Option<String>,
    pub trust_forwarded_headers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    pub workers: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    pub watch: Option<bool>,
}
