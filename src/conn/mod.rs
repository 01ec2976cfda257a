//! The connection layer: what happens to an accepted socket, below the request service. A
//! [`proxy_protocol`] header when configured, then the TLS [`handshake`] (server by SNI,
//! client certificate checked), both under one deadline; [`limits`] fits the caps into the
//! open-file limit and counts connections per client address; the [`watchdog`] holds each
//! HTTP connection to its head, idle and stream-idle timeouts, with [`head_scan`] watching
//! HTTP/1 request heads on the wire.

pub(crate) mod handshake;
pub mod head_scan;
pub mod limits;
pub mod proxy_protocol;
pub(crate) mod watchdog;
