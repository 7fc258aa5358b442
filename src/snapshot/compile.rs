//! Validates a config and compiles it into the immutable `Snapshot` every
//! worker reads. Runs on the control thread only (it may resolve DNS and
//! read files); the data plane never calls it.

use super::{Backend, EdgeLimits, HostIndex, ModelApi, Selection, Service, Snapshot, Target};
use crate::config::catalog::{self, Protocol, Scenario};
use crate::config::raw::{ModelApiSpec, RawConfig, SelectionSpec, ServiceSpec, TargetSpec};
use crate::config::{resolve_secret, valid_name, Problems};
use crate::provider::{self, Provider};
use crate::upstream::health::OutlierPolicy;
use crate::upstream::Endpoint;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How much of the outside world compilation may touch. In every mode but
/// `CheckWithoutSecrets` a secret (`env:NAME`, `file:PATH`) that does not
/// resolve is an error: `serve` refuses it (fail closed) and `check` says
/// so, with the field's path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `modelgate check`: no DNS, no files beyond secrets.
    Check,
    /// `modelgate check --skip-secrets` (CI without the secrets): secret
    /// references are not resolved.
    CheckWithoutSecrets,
    /// Serving: resolve hosts and load CA files.
    Serve,
}

impl Mode {
    /// A secret field's value: `Ok(None)` for a reference left unresolved
    /// (`CheckWithoutSecrets`).
    fn secret(self, value: &str) -> Result<Option<String>, String> {
        let reference = value.starts_with("env:") || value.starts_with("file:");
        if reference && self == Mode::CheckWithoutSecrets {
            return Ok(None);
        }
        resolve_secret(value).map(Some)
    }
}

/// The secrets outside services: admin tokens and consumer keys. Returns
/// the paths of the consumer keys it judged (their own compile step only
/// warns and skips them; here they are errors).
fn check_secrets(raw: &RawConfig, mode: Mode, p: &mut Problems) -> Vec<String> {
    let token = |at: String, value: &str, p: &mut Problems| match mode.secret(value) {
        Ok(Some(v)) if v.is_empty() => p.error(at, "must not be empty"),
        Ok(_) => {}
        Err(e) => p.error(at, e),
    };
    if let Some(t) = &raw.admin.token {
        token("admin.token".into(), t, p);
    }
    for (i, t) in raw.admin.tokens.iter().enumerate() {
        token(format!("admin.tokens[{i}].token"), &t.token, p);
        for (g, group) in t.resource_groups.iter().enumerate() {
            if !valid_name(group) {
                p.error(
                    format!("admin.tokens[{i}].resource_groups[{g}]"),
                    "must be 1-64 letters, digits, '_' or '-'",
                );
            }
        }
    }
    let mut judged = Vec::new();
    for (i, c) in raw.consumers.iter().enumerate() {
        for (k, key) in c.keys.iter().enumerate() {
            if !(key.starts_with("env:") || key.starts_with("file:")) {
                continue;
            }
            let at = format!("consumers[{i}].keys[{k}]");
            if let Err(e) = mode.secret(key) {
                p.error(at.clone(), e);
            }
            judged.push(at);
        }
    }
    judged
}

/// A parsed base URL.
struct BaseUrl {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_base_url(url: &str) -> Result<BaseUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err("has no host".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unclosed [ in host")?;
        let port = v6[end + 1..].strip_prefix(':');
        (v6[..end].to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("invalid port {p:?}"))?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
        return Err(format!("invalid host {host:?}"));
    }
    if path.contains(['?', '#']) {
        return Err("must not carry a query or fragment".into());
    }
    Ok(BaseUrl {
        tls,
        host,
        port,
        path: path.trim_end_matches('/').to_string(),
    })
}

fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {path}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("bad certificate in {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate in {path}: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn compile_service(i: usize, s: &ServiceSpec, mode: Mode, p: &mut Problems) -> Option<Service> {
    let at = format!("services[{i}]");
    if !valid_name(&s.name) {
        p.error(
            format!("{at}.name"),
            "must be 1-64 letters, digits, '_' or '-'",
        );
    }
    if !valid_name(&s.resource_group) {
        p.error(
            format!("{at}.resource_group"),
            "must be 1-64 letters, digits, '_' or '-'",
        );
    }
    let Some(provider) = provider::by_kind(&s.provider) else {
        let kinds: Vec<&str> = provider::KINDS.iter().map(|k| k.kind).collect();
        p.error(
            format!("{at}.provider"),
            format!(
                "unknown provider {:?}; one of {}",
                s.provider,
                kinds.join(", ")
            ),
        );
        return None;
    };
    for (field, ms) in [
        ("connect_timeout_ms", s.connect_timeout_ms),
        ("timeout_ms", s.timeout_ms),
        (
            "outlier_detection.ejection_ms",
            s.outlier_detection.ejection_ms,
        ),
    ] {
        check_timeout(&format!("{at}.{field}"), ms, p);
    }
    if s.connect_timeout_ms == 0 || s.timeout_ms == 0 {
        let field = if s.connect_timeout_ms == 0 {
            "connect_timeout_ms"
        } else {
            "timeout_ms"
        };
        p.error(format!("{at}.{field}"), "must be greater than 0");
    }
    let mut keys = Vec::new();
    for (k, key) in s.api_keys.iter().enumerate() {
        match mode.secret(key) {
            Ok(Some(v)) if v.is_empty() => p.error(format!("{at}.api_keys[{k}]"), "is empty"),
            Ok(Some(v)) => keys.push(v),
            Ok(None) => {}
            Err(e) => p.error(format!("{at}.api_keys[{k}]"), e),
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &s.headers {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            p.error(format!("{at}.headers.{name}"), "invalid header name");
            continue;
        }
        match mode.secret(value) {
            Ok(Some(v)) if v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)) => {
                headers.push((name.to_ascii_lowercase(), v))
            }
            Ok(Some(_)) => p.error(
                format!("{at}.headers.{name}"),
                "value has control characters",
            ),
            Ok(None) => {}
            Err(e) => p.error(format!("{at}.headers.{name}"), e),
        }
    }
    let backend = if provider.is_mock() {
        Backend::Mock
    } else {
        let url = s.base_url.as_deref().or(provider.default_base_url);
        let Some(url) = url else {
            p.error(
                format!("{at}.base_url"),
                format!("required for provider {}", provider.kind),
            );
            return None;
        };
        let base = match parse_base_url(url) {
            Ok(b) => b,
            Err(e) => {
                p.error(format!("{at}.base_url"), e);
                return None;
            }
        };
        let tls = if base.tls {
            let ca = if mode == Mode::Serve {
                s.ca_file.as_deref()
            } else {
                None
            };
            match tls_config(ca) {
                Ok(c) => Some(c),
                Err(e) => {
                    p.error(format!("{at}.ca_file"), e);
                    None
                }
            }
        } else {
            None
        };
        let addrs = if mode == Mode::Serve {
            resolve(&base.host, base.port).unwrap_or_else(|e| {
                p.warn(
                    format!("{at}.base_url"),
                    format!("cannot resolve {}: {e}", base.host),
                );
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let default_port = if base.tls { 443 } else { 80 };
        let host_part = if base.host.contains(':') {
            format!("[{}]", base.host)
        } else {
            base.host.clone()
        };
        let authority = if base.port == default_port {
            host_part
        } else {
            format!("{host_part}:{}", base.port)
        };
        let scheme = if base.tls { "https" } else { "http" };
        let ca = s.ca_file.as_deref().unwrap_or("");
        Backend::Remote(Endpoint {
            pool_key: format!("{scheme}://{}:{}#{ca}", base.host, base.port).into(),
            tls,
            host: base.host,
            authority,
            base_path: base.path,
            port: base.port,
            addrs,
        })
    };
    Some(Service {
        name: s.name.clone(),
        provider,
        backend,
        keys,
        headers,
        connect_timeout: Duration::from_millis(s.connect_timeout_ms),
        timeout: Duration::from_millis(s.timeout_ms),
        api_version: s.api_version.clone(),
        resource_group: s.resource_group.clone(),
        outlier: (s.outlier_detection.consecutive_failures > 0).then(|| OutlierPolicy {
            consecutive_failures: s.outlier_detection.consecutive_failures,
            ejection: Duration::from_millis(s.outlier_detection.ejection_ms.max(1)),
        }),
        spec: s.clone(),
    })
}

/// Longest timeout accepted (7 days): a deadline far past it would
/// overflow `Instant` arithmetic.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;

fn check_timeout(at: &str, ms: u64, p: &mut Problems) {
    if ms > MAX_TIMEOUT_MS {
        p.error(at, format!("must be at most {MAX_TIMEOUT_MS} (7 days)"));
    }
}

/// Limits are JSON integers: at most i64::MAX.
fn check_limits(at: &str, l: &crate::config::raw::RateLimitsSpec, p: &mut Problems) {
    for (field, v) in [
        ("requests_per_minute", l.requests_per_minute),
        ("tokens_per_minute", l.tokens_per_minute),
    ] {
        if v.is_some_and(|v| v > i64::MAX as u64) {
            p.error(format!("{at}.{field}"), "too large");
        }
    }
}

/// Whether resolving the hosts of `snap`'s services again gives other
/// addresses than the snapshot holds (blocking: control thread only).
pub fn dns_changed(snap: &Snapshot) -> bool {
    snap.services
        .iter()
        .filter_map(|s| match &s.backend {
            Backend::Remote(e) => Some(e),
            Backend::Mock => None,
        })
        .any(|u| {
            if u.host.parse::<std::net::IpAddr>().is_ok() {
                return false;
            }
            match resolve(&u.host, u.port) {
                Ok(mut now) => {
                    let mut was = u.addrs.clone();
                    now.sort();
                    was.sort();
                    now != was
                }
                Err(_) => false,
            }
        })
}

/// Resolves a host once; IP literals need no lookup.
pub fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ));
    }
    Ok(addrs)
}

fn valid_domain(d: &str) -> bool {
    let host = d.strip_prefix("*.").unwrap_or(d);
    d == "*"
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with('.')
            && !host.ends_with('.'))
}

struct ApiContext<'a> {
    services: &'a HashMap<&'a str, (usize, Option<&'static Provider>)>,
}

impl ApiContext<'_> {
    fn target(
        &self,
        at: &str,
        service: &str,
        model: &Option<String>,
        scenario: Scenario,
        protocol: Protocol,
        p: &mut Problems,
    ) -> Option<Target> {
        let Some(&(index, provider)) = self.services.get(service) else {
            p.error(
                format!("{at}.service"),
                format!("unknown service {service:?}"),
            );
            return None;
        };
        if let Some(provider) = provider {
            let ok = if scenario == Scenario::Text {
                provider.serves(protocol)
            } else {
                provider.speaks(protocol)
            };
            if !ok {
                p.error(
                    format!("{at}.service"),
                    format!(
                        "service {service:?} (provider {}) does not speak the {} protocol{}",
                        provider.kind,
                        protocol.as_str(),
                        if scenario == Scenario::Text {
                            " natively or by translation"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        if matches!(model, Some(m) if m.is_empty()) {
            p.error(
                format!("{at}.model"),
                "must not be empty (use null to pass the client's model)",
            );
        }
        Some(Target {
            service: index,
            model: model.clone(),
        })
    }
}

/// Validates one Model API on its own (the checks that need no other API).
/// `at` is the path prefix of its fields (`model_apis[2]`, or empty for
/// an admin request body).
fn compile_api(at: &str, a: &ModelApiSpec, ctx: &ApiContext, p: &mut Problems) -> Option<ModelApi> {
    let field = |f: &str| {
        if at.is_empty() {
            f.to_string()
        } else {
            format!("{at}.{f}")
        }
    };
    if !valid_name(&a.name) {
        p.error(field("name"), "must be 1-64 letters, digits, '_' or '-'");
    }
    let scenario = match a.scenario.parse::<Scenario>() {
        Ok(s) => s,
        Err(e) => {
            p.error(field("scenario"), e.to_string());
            return None;
        }
    };
    let protocol = match a.protocol.parse::<Protocol>() {
        Ok(pr) if scenario.protocols().contains(&pr) => pr,
        Ok(_) | Err(_) => {
            let offered: Vec<&str> = scenario.protocols().iter().map(|p| p.as_str()).collect();
            p.error(
                field("protocol"),
                format!(
                    "{:?} is not offered by scenario {}; one of {}",
                    a.protocol,
                    scenario.as_str(),
                    offered.join(", ")
                ),
            );
            return None;
        }
    };
    if a.domains.is_empty() {
        p.error(field("domains"), "at least one domain is required");
    }
    for (i, d) in a.domains.iter().enumerate() {
        if !valid_domain(d) {
            p.error(
                field(&format!("domains[{i}]")),
                format!("invalid domain {d:?}: use a host, *.suffix or *"),
            );
        }
    }
    if !a.base_path.starts_with('/') || a.base_path.contains(['?', '#', ' ']) {
        p.error(field("base_path"), "must start with / and hold no query");
    }
    let target = |at: String, service: &str, model: &Option<String>, p: &mut Problems| {
        ctx.target(&at, service, model, scenario, protocol, p)
    };
    let selection = match &a.service {
        SelectionSpec::Single { target: t } => {
            target(field("service.target"), &t.service, &t.model, p).map(Selection::Single)
        }
        SelectionSpec::ByModel { rules } => {
            if rules.is_empty() {
                p.error(field("service.rules"), "at least one rule is required");
            }
            let mut out = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                let at = field(&format!("service.rules[{i}]"));
                if r.pattern.is_empty() {
                    p.error(format!("{at}.pattern"), "must not be empty");
                }
                if let Some(t) = target(at, &r.service, &r.model, p) {
                    out.push((r.pattern.clone(), t));
                }
            }
            Some(Selection::ByModel(out))
        }
        SelectionSpec::ByWeight { targets } => {
            if targets.is_empty() {
                p.error(field("service.targets"), "at least one target is required");
            }
            let (mut ts, mut ws) = (Vec::new(), Vec::new());
            for (i, t) in targets.iter().enumerate() {
                let at = field(&format!("service.targets[{i}]"));
                if t.weight <= 0 || t.weight > u32::MAX as i64 {
                    p.error(format!("{at}.weight"), "must be a positive integer");
                }
                if let Some(tt) = target(at, &t.service, &t.model, p) {
                    ts.push(tt);
                    ws.push(t.weight.clamp(1, u32::MAX as i64) as u32);
                }
            }
            Some(Selection::ByWeight {
                targets: ts,
                weights: ws,
            })
        }
    };
    let mut fallback = Vec::new();
    if a.fallback.enabled {
        for (i, TargetSpec { service, model }) in a.fallback.targets.iter().enumerate() {
            if let Some(t) = target(field(&format!("fallback.targets[{i}]")), service, model, p) {
                fallback.push(t);
            }
        }
    }
    check_timeout(
        &field("first_packet_timeout_ms"),
        a.first_packet_timeout_ms,
        p,
    );
    check_limits(&field("limits"), &a.limits, p);
    let cors = a.cors.as_ref().map(|c| compile_cors(&field("cors"), c, p));
    if !valid_name(&a.resource_group) {
        p.error(
            field("resource_group"),
            "must be 1-64 letters, digits, '_' or '-'",
        );
    }
    let moderation = crate::moderation::Policy::compile(
        &field("moderation"),
        &a.moderation,
        |name| {
            let &(i, provider) = ctx.services.get(name)?;
            let remote_openai =
                provider.is_some_and(|p| !p.is_mock() && p.speaks(Protocol::Openai));
            Some((i, remote_openai))
        },
        p,
    );
    Some(ModelApi {
        name: a.name.clone(),
        scenario,
        protocol,
        routes: catalog::routes(scenario, protocol),
        base_path: a.base_path.clone(),
        strip_base_path: a.strip_base_path,
        selection: selection?,
        fallback,
        first_packet_timeout: (a.first_packet_timeout_ms > 0)
            .then(|| Duration::from_millis(a.first_packet_timeout_ms)),
        cors,
        resource_group: a.resource_group.clone(),
        auth: Default::default(),
        limits: Default::default(),
        moderation,
        spec: a.clone(),
    })
}

fn compile_cors(
    at: &str,
    c: &super::super::config::raw::CorsSpec,
    p: &mut Problems,
) -> super::Cors {
    if c.origins.is_empty() {
        p.error(
            format!("{at}.origins"),
            "list at least one origin (or \"*\")",
        );
    }
    for (i, o) in c.origins.iter().enumerate() {
        let ok = o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && o.bytes().all(|b| b.is_ascii_graphic()));
        if !ok {
            p.error(
                format!("{at}.origins[{i}]"),
                "an origin is scheme://host[:port] (no path) or \"*\"",
            );
        }
    }
    for (i, h) in c.headers.iter().enumerate() {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            p.error(format!("{at}.headers[{i}]"), "not a header name");
        }
    }
    if c.max_age_s > 86_400 {
        p.error(format!("{at}.max_age_s"), "at most 86400");
    }
    super::Cors {
        any_origin: c.origins.iter().any(|o| o == "*"),
        origins: c.origins.iter().filter(|o| *o != "*").cloned().collect(),
        headers: c.headers.join(", "),
        max_age: c.max_age_s.to_string(),
    }
}

/// Compiles `raw` into a snapshot, or returns every problem found.
pub fn compile(
    raw: &RawConfig,
    generation: u64,
    mode: Mode,
) -> Result<(Snapshot, Problems), Problems> {
    let mut p = Problems::default();
    let s = &raw.server;
    if s.listen.is_empty() {
        p.error("server.listen", "at least one address is required");
    }
    for (i, l) in s.listen.iter().enumerate() {
        if l.parse::<SocketAddr>().is_err() {
            p.error(
                format!("server.listen[{i}]"),
                format!("{l:?} is not an IP:port address"),
            );
        }
    }
    for (i, l) in s.tls.listen.iter().enumerate() {
        if l.parse::<SocketAddr>().is_err() {
            p.error(
                format!("server.tls.listen[{i}]"),
                format!("{l:?} is not an IP:port address"),
            );
        }
    }
    let tls = if s.tls.listen.is_empty() && s.tls.certs.is_empty() {
        None
    } else if s.tls.certs.is_empty() {
        p.error(
            "server.tls.certs",
            "TLS listeners need at least one certificate",
        );
        None
    } else {
        if s.tls.listen.is_empty() {
            p.warn(
                "server.tls.listen",
                "certificates are configured but no TLS listener",
            );
        }
        crate::tls::server_config(&s.tls.certs, "server.tls", &mut p)
    };
    if raw.admin.listen.parse::<SocketAddr>().is_err() {
        p.error(
            "admin.listen",
            format!("{:?} is not an IP:port address", raw.admin.listen),
        );
    }
    if let Err(e) = crate::config::cluster::Settings::from_raw(&raw.cluster) {
        p.error(e.path, e.message);
    }
    let l = &s.limits;
    if l.max_header_bytes < 1024 {
        p.error("server.limits.max_header_bytes", "must be at least 1024");
    }
    if l.max_headers == 0 {
        p.error("server.limits.max_headers", "must be at least 1");
    }
    if l.max_connections == 0 {
        p.error("server.limits.max_connections", "must be at least 1");
    }
    crate::observe::check(raw, &mut p);
    let mut trusted_proxies = Vec::new();
    for (i, t) in s.trusted_proxies.iter().enumerate() {
        match crate::config::cidr::Cidr::parse(t) {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => p.error(format!("server.trusted_proxies[{i}]"), e),
        }
    }
    let secret_keys = check_secrets(raw, mode, &mut p);

    let mut services = Vec::new();
    let mut by_name: HashMap<&str, (usize, Option<&'static Provider>)> = HashMap::new();
    for (i, spec) in raw.services.iter().enumerate() {
        if by_name.contains_key(spec.name.as_str()) {
            p.conflict(
                format!("services[{i}].name"),
                format!("duplicate service {:?}", spec.name),
            );
            continue;
        }
        let compiled = compile_service(i, spec, mode, &mut p);
        by_name.insert(
            &spec.name,
            (services.len(), compiled.as_ref().map(|c| c.provider)),
        );
        // Keep indexes aligned with `by_name` even for broken services;
        // the whole compile fails anyway when any error was recorded.
        if let Some(c) = compiled {
            services.push(c);
        } else {
            services.push(placeholder_service(spec));
        }
    }

    let mut limits = crate::limit::Table::default();
    let consumers = crate::auth::Consumers::compile(&raw.consumers, &mut limits, &mut p);
    // Consumer key references were judged above (an error when they do not
    // resolve); the warning that the key is skipped would only repeat it.
    p.warnings.retain(|w| !secret_keys.contains(&w.path));
    let ctx = ApiContext { services: &by_name };
    let mut apis: Vec<ModelApi> = Vec::new();
    let mut holders: HashMap<(String, String), String> = HashMap::new();
    for (i, spec) in raw.model_apis.iter().enumerate() {
        let at = format!("model_apis[{i}]");
        if apis.iter().any(|a| a.name == spec.name) {
            p.conflict(
                format!("{at}.name"),
                format!("duplicate Model API {:?}", spec.name),
            );
        }
        for (d, domain) in spec.domains.iter().enumerate() {
            let key = (domain.to_ascii_lowercase(), normalize_base(&spec.base_path));
            if let Some(holder) = holders.get(&key) {
                p.conflict(
                    format!("{at}.domains[{d}]"),
                    format!("domain {domain:?} with base path {:?} is already held by Model API {holder:?}", spec.base_path),
                );
            } else {
                holders.insert(key, spec.name.clone());
            }
        }
        if let Some(mut api) = compile_api(&at, spec, &ctx, &mut p) {
            guard_api(&at, &mut api, &consumers, &mut limits, &mut p);
            apis.push(api);
        }
    }
    for (i, c) in raw.consumers.iter().enumerate() {
        if !valid_name(&c.name) {
            p.error(
                format!("consumers[{i}].name"),
                "must be 1-64 letters, digits, '_' or '-'",
            );
        } else if raw.consumers[..i].iter().any(|o| o.name == c.name) {
            p.conflict(
                format!("consumers[{i}].name"),
                format!("duplicate consumer {:?}", c.name),
            );
        }
        check_limits(&format!("consumers[{i}].limits"), &c.limits, &mut p);
        if !valid_name(&c.resource_group) {
            p.error(
                format!("consumers[{i}].resource_group"),
                "must be 1-64 letters, digits, '_' or '-'",
            );
        }
    }
    if !p.errors.is_empty() {
        return Err(p);
    }

    let hosts = index_hosts(&apis);
    let snapshot = Snapshot {
        generation,
        edge: EdgeLimits {
            head: crate::http::head::Limits {
                max_header_bytes: l.max_header_bytes,
                max_headers: l.max_headers,
                max_body_bytes: l.max_body_bytes,
            },
            header_read_timeout: Duration::from_millis(l.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(l.idle_timeout_ms.max(1)),
            max_connections: l.max_connections,
            body_buffer_bytes: l.body_buffer_bytes.max(4096),
            body_read_timeout: Duration::from_millis(l.body_read_timeout_ms.max(1)),
            max_event_bytes: l.max_event_bytes.max(1024),
            body_memory_bytes: l.body_memory_bytes,
            trusted_proxies,
        },
        services,
        apis,
        hosts,
        drain_timeout: Duration::from_millis(s.drain_timeout_ms),
        consumers,
        limits,
        tls,
    };
    Ok((snapshot, p))
}

/// A Model API's consumers and limits, which need the snapshot's consumers.
fn guard_api(
    at: &str,
    api: &mut ModelApi,
    consumers: &crate::auth::Consumers,
    table: &mut crate::limit::Table,
    p: &mut Problems,
) {
    let spec = &api.spec;
    api.auth = consumers.api_auth(&format!("{at}.auth"), &spec.auth, p);
    let admitted: Vec<Option<&str>> = consumers
        .list
        .iter()
        .enumerate()
        .map(|(i, c)| api.auth.admits(i).then_some(c.name.as_str()))
        .collect();
    api.limits = crate::limit::ApiLimits::compile(
        &format!("{at}.limits"),
        &spec.limits,
        &spec.name,
        spec.auth.enabled.then_some(&admitted[..]),
        table,
        p,
    );
}

fn placeholder_service(spec: &ServiceSpec) -> Service {
    Service {
        name: spec.name.clone(),
        provider: &provider::mock::PROVIDER,
        backend: Backend::Mock,
        keys: Vec::new(),
        headers: Vec::new(),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        api_version: None,
        resource_group: spec.resource_group.clone(),
        outlier: None,
        spec: spec.clone(),
    }
}

fn normalize_base(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.is_empty() {
        "/".into()
    } else {
        b.to_string()
    }
}

fn index_hosts(apis: &[ModelApi]) -> HostIndex {
    let mut idx = HostIndex::default();
    let mut suffixes: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, api) in apis.iter().enumerate() {
        for d in &api.spec.domains {
            let d = d.to_ascii_lowercase();
            if d == "*" {
                idx.any.push(i);
            } else if let Some(s) = d.strip_prefix('*') {
                suffixes.entry(s.to_string()).or_default().push(i);
            } else {
                idx.exact.entry(d).or_default().push(i);
            }
        }
    }
    let by_base_len = |v: &mut Vec<usize>| {
        v.sort_by_key(|&i| std::cmp::Reverse(normalize_base(&apis[i].base_path).len()));
        v.dedup();
    };
    idx.exact.values_mut().for_each(by_base_len);
    by_base_len(&mut idx.any);
    let mut suffixes: Vec<(String, Vec<usize>)> = suffixes.into_iter().collect();
    suffixes.iter_mut().for_each(|(_, v)| by_base_len(v));
    suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    idx.suffixes = suffixes;
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::under_base;

    fn parse(text: &str) -> RawConfig {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = r#"
        [[services]]
        name = "mock"
        provider = "mock"
        [[services]]
        name = "claude"
        provider = "anthropic"
        base_url = "http://127.0.0.1:9"
    "#;

    fn errors(text: &str) -> Vec<String> {
        match compile(&parse(text), 1, Mode::Check) {
            Ok(_) => Vec::new(),
            Err(p) => p.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn field_paths_name_each_error() {
        let text = format!(
            r#"{BASE}
            [[model_apis]]
            name = "a"
            scenario = "text"
            protocol = "openai"
            domains = ["*"]
            service = {{ mode = "single", target = {{ service = "mock" }} }}
            [[model_apis]]
            name = "b"
            scenario = "text"
            protocol = "openai"
            domains = ["x.example.com"]
            service = {{ mode = "by_model", rules = [{{ pattern = "gpt-*", service = "mock" }}, {{ pattern = "", service = "nope" }}] }}
            [[model_apis]]
            name = "c"
            scenario = "image"
            protocol = "anthropic"
            domains = ["*"]
            base_path = "/c"
            service = {{ mode = "single", target = {{ service = "mock" }} }}
            [[model_apis]]
            name = "d d"
            scenario = "text"
            protocol = "openai"
            domains = ["*"]
            service = {{ mode = "by_weight", targets = [{{ service = "mock", weight = 0 }}] }}
        "#
        );
        let errs = errors(&text);
        let want = [
            "model_apis[1].service.rules[1].pattern: must not be empty",
            "model_apis[1].service.rules[1].service: unknown service \"nope\"",
            "model_apis[2].protocol: ",
            "model_apis[3].domains[0]: domain \"*\" with base path \"/\" is already held by Model API \"a\"",
            "model_apis[3].name: ",
            "model_apis[3].service.targets[0].weight: must be a positive integer",
        ];
        for w in want {
            assert!(
                errs.iter().any(|e| e.starts_with(w)),
                "missing {w:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
    }

    #[test]
    fn translation_is_allowed_only_for_text() {
        let text = format!(
            r#"{BASE}
            [[model_apis]]
            name = "t"
            scenario = "text"
            protocol = "openai"
            domains = ["*"]
            service = {{ mode = "single", target = {{ service = "claude" }} }}
            [[model_apis]]
            name = "e"
            scenario = "embedding"
            protocol = "openai"
            domains = ["*"]
            base_path = "/e"
            service = {{ mode = "single", target = {{ service = "claude" }} }}
        "#
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("model_apis[1].service.target.service: service \"claude\" (provider anthropic) does not speak the openai protocol"));
    }

    #[test]
    fn hosts_pick_most_specific_then_longest_base_path() {
        let text = format!(
            r#"{BASE}
            [[model_apis]]
            name = "any"
            scenario = "text"
            protocol = "openai"
            domains = ["*"]
            service = {{ mode = "single", target = {{ service = "mock" }} }}
            [[model_apis]]
            name = "corp"
            scenario = "text"
            protocol = "openai"
            domains = ["*.corp.example.com"]
            service = {{ mode = "single", target = {{ service = "mock" }} }}
            [[model_apis]]
            name = "corp-deep"
            scenario = "text"
            protocol = "openai"
            domains = ["*.a.corp.example.com"]
            service = {{ mode = "single", target = {{ service = "mock" }} }}
            [[model_apis]]
            name = "exact"
            scenario = "text"
            protocol = "openai"
            domains = ["API.example.com"]
            service = {{ mode = "single", target = {{ service = "mock" }} }}
            [[model_apis]]
            name = "exact-api"
            scenario = "text"
            protocol = "openai"
            domains = ["api.example.com"]
            base_path = "/api"
            service = {{ mode = "single", target = {{ service = "mock" }} }}
        "#
        );
        let (snap, _) = compile(&parse(&text), 1, Mode::Check).unwrap();
        let names = |host: &str| -> Vec<&str> {
            snap.hosts
                .lookup(host)
                .iter()
                .map(|&i| snap.apis[i].name.as_str())
                .collect()
        };
        assert_eq!(names("api.example.com:8080"), ["exact-api", "exact"]);
        assert_eq!(names("Api.Example.COM"), ["exact-api", "exact"]);
        assert_eq!(names("x.corp.example.com"), ["corp"]);
        assert_eq!(names("x.a.corp.example.com"), ["corp-deep"]);
        assert_eq!(names("corp.example.com"), ["any"]);
        assert_eq!(names("other"), ["any"]);
        assert_eq!(under_base("/api", "/api/v1/x"), Some("/v1/x"));
        assert_eq!(under_base("/api/", "/api"), Some(""));
        assert_eq!(under_base("/api", "/apix"), None);
        assert_eq!(under_base("/", "/v1"), Some("/v1"));
    }

    #[test]
    fn base_urls() {
        let b = parse_base_url("https://api.openai.com").unwrap();
        assert!(b.tls && b.port == 443 && b.path.is_empty());
        let b = parse_base_url("http://[::1]:8000/v1/").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.path.as_str()),
            ("::1", 8000, "/v1")
        );
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://x:99999").is_err());
        assert!(parse_base_url("http:///v1").is_err());
    }

    fn endpoint_mut(s: &mut Service) -> &mut Endpoint {
        match &mut s.backend {
            Backend::Remote(e) => e,
            Backend::Mock => panic!("mock service"),
        }
    }

    #[test]
    fn dns_refresh_notices_changed_addresses() {
        let text = r#"
            [[services]]
            name = "named"
            provider = "openai_compatible"
            base_url = "http://localhost:9"
            [[services]]
            name = "literal"
            provider = "openai_compatible"
            base_url = "http://127.0.0.1:9"
        "#;
        let (mut snap, _) = compile(&parse(text), 1, Mode::Serve).unwrap();
        assert!(!snap.services[0].endpoint().unwrap().addrs.is_empty());
        assert!(!dns_changed(&snap));
        // As if the name had pointed elsewhere when the snapshot was made.
        endpoint_mut(&mut snap.services[0]).addrs = vec!["10.9.9.9:9".parse().unwrap()];
        assert!(dns_changed(&snap));
        // IP literals are never looked up.
        endpoint_mut(&mut snap.services[0]).addrs.clear();
        snap.services.remove(0);
        endpoint_mut(&mut snap.services[0]).addrs = vec!["10.9.9.9:9".parse().unwrap()];
        assert!(!dns_changed(&snap));
    }
}
