//! The compiled, immutable config every worker reads: services, Model APIs
//! with their selection, consumers, limits and moderation, the host index
//! and the edge's settings. Made by [`compile`] on the control thread
//! (it may resolve DNS and read files); the data plane only reads it.
//!
//! A layer above the policies it compiles (`auth`, `limit`, `moderation`,
//! `tls`, `observe`'s checks): they never import it.

mod compile;

pub use compile::{compile, dns_changed, resolve, Mode, MAX_TIMEOUT_MS};

use crate::config::catalog::{Protocol, RouteDef, Scenario};
use crate::config::raw::{ModelApiSpec, ServiceSpec};
use crate::provider::Provider;
use crate::upstream::health::OutlierPolicy;
use crate::upstream::Endpoint;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the HTTP edge, read per connection.
#[derive(Clone, Debug)]
pub struct EdgeLimits {
    pub head: crate::http::head::Limits,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub body_buffer_bytes: usize,
    /// The longest a request body may take to arrive, in total.
    pub body_read_timeout: Duration,
    /// Largest SSE event relayed.
    pub max_event_bytes: usize,
    /// Process-wide memory for JSON bodies held past `body_buffer_bytes`.
    pub body_memory_bytes: usize,
    /// Peers whose forwarding headers are passed on.
    pub trusted_proxies: Vec<crate::config::cidr::Cidr>,
}

/// What serves a service's requests: the in-process `mock` provider, or a
/// remote endpoint.
pub enum Backend {
    Mock,
    Remote(Endpoint),
}

pub struct Service {
    pub name: String,
    pub provider: &'static Provider,
    pub backend: Backend,
    pub keys: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub api_version: Option<String>,
    pub resource_group: String,
    pub outlier: Option<OutlierPolicy>,
    pub spec: ServiceSpec,
}

impl Service {
    /// The remote endpoint, for a service that has one.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match &self.backend {
            Backend::Remote(e) => Some(e),
            Backend::Mock => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Target {
    pub service: usize,
    /// `None` passes the client's model name through.
    pub model: Option<String>,
}

pub enum Selection {
    Single(Target),
    ByModel(Vec<(String, Target)>),
    ByWeight {
        targets: Vec<Target>,
        weights: Vec<u32>,
    },
}

pub struct ModelApi {
    pub name: String,
    pub scenario: Scenario,
    pub protocol: Protocol,
    pub routes: &'static [RouteDef],
    pub base_path: String,
    pub strip_base_path: bool,
    pub selection: Selection,
    pub fallback: Vec<Target>,
    pub first_packet_timeout: Option<Duration>,
    /// Origins that may call it from a browser.
    pub cors: Option<Cors>,
    pub resource_group: String,
    /// Consumers admitted (auth), its own limits, its moderation.
    pub auth: crate::auth::ApiAuth,
    pub limits: crate::limit::ApiLimits,
    pub moderation: Option<Arc<crate::moderation::Policy>>,
    pub spec: ModelApiSpec,
}

/// A Model API's compiled CORS settings.
#[derive(Debug)]
pub struct Cors {
    pub any_origin: bool,
    pub origins: Vec<String>,
    /// `access-control-allow-headers`, joined.
    pub headers: String,
    pub max_age: String,
}

impl Cors {
    /// Whether a page of `origin` may call the Model API.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }
}

/// Model APIs per host tier, each list ordered by base path, longest first.
#[derive(Default)]
pub struct HostIndex {
    exact: HashMap<String, Vec<usize>>,
    /// (".suffix", apis), longest suffix first.
    suffixes: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

pub struct Snapshot {
    pub generation: u64,
    pub edge: EdgeLimits,
    pub services: Vec<Service>,
    pub apis: Vec<ModelApi>,
    pub hosts: HostIndex,
    pub drain_timeout: Duration,
    pub consumers: crate::auth::Consumers,
    /// Rate-limit windows; `shared::Shared::publish` swaps in the ones
    /// that outlive snapshots.
    pub limits: crate::limit::Table,
    /// For connections accepted on `server.tls.listen`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HostIndex {
    /// The Model APIs serving `host` (port ignored, case-insensitive), in
    /// the order base paths should be tried.
    pub fn lookup(&self, host: &str) -> &[usize] {
        let host = host_without_port(host);
        let mut lower = [0u8; 256];
        let host = if host.len() <= lower.len() && host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower[..host.len()].copy_from_slice(host.as_bytes());
            lower[..host.len()].make_ascii_lowercase();
            std::str::from_utf8(&lower[..host.len()]).unwrap_or(host)
        } else {
            host
        };
        if let Some(apis) = self.exact.get(host) {
            return apis;
        }
        for (suffix, apis) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return apis;
            }
        }
        &self.any
    }
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// Whether `path` is under `base` at a segment boundary.
pub fn under_base<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    if base == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(base.trim_end_matches('/'))?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

impl Snapshot {
    pub fn service(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

impl crate::observe::Labels for Snapshot {
    fn model_api(&self, index: usize) -> Option<crate::observe::ApiLabels<'_>> {
        self.apis.get(index).map(|a| crate::observe::ApiLabels {
            name: &a.name,
            resource_group: &a.resource_group,
            monitored: a.spec.monitoring.enabled,
        })
    }

    fn service_name(&self, index: usize) -> Option<&str> {
        self.services.get(index).map(|s| s.name.as_str())
    }
}
