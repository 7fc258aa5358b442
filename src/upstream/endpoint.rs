//! A remote service's endpoint as the snapshot holds it.

use std::net::SocketAddr;
use std::sync::Arc;

/// Where a remote service lives, resolved (no DNS lookup on the request
/// path).
pub struct Endpoint {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Host name for SNI and the `Host` header (without port).
    pub host: String,
    /// `Host` header value (with the port when not the scheme's default).
    pub authority: String,
    /// Path of the base URL, no trailing `/` (may be empty).
    pub base_path: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
    /// Pools are keyed by this, so they outlive snapshots.
    pub pool_key: Arc<str>,
}
