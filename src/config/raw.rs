//! The config file as written: serde types with defaults. The same service,
//! Model API and consumer shapes are the admin API's JSON bodies.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: ServerRaw,
    #[serde(default)]
    pub admin: AdminRaw,
    #[serde(default)]
    pub store: StoreRaw,
    #[serde(default)]
    pub cluster: ClusterRaw,
    #[serde(default)]
    pub log: LogRaw,
    #[serde(default)]
    pub trace: TraceRaw,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub model_apis: Vec<ModelApiSpec>,
    #[serde(default)]
    pub consumers: Vec<ConsumerSpec>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    #[default]
    Auto,
    IoUring,
    Epoll,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerRaw {
    pub listen: Vec<String>,
    pub workers: usize,
    pub io: IoMode,
    pub drain_timeout_ms: u64,
    pub limits: LimitsRaw,
    pub tls: TlsRaw,
    /// Peers (CIDR blocks) whose `Forwarded`, `X-Real-IP` and
    /// `X-Forwarded-*` headers are passed on; others' are dropped.
    pub trusted_proxies: Vec<String>,
}

/// Listeners that speak TLS, and the certificate for each domain (SNI).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsRaw {
    pub listen: Vec<String>,
    pub certs: Vec<CertRaw>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertRaw {
    pub domains: Vec<String>,
    /// PEM certificate chain file.
    pub cert: String,
    /// PEM private key file.
    pub key: String,
}

impl Default for ServerRaw {
    fn default() -> Self {
        ServerRaw {
            listen: vec!["0.0.0.0:8080".into()],
            workers: 0,
            io: IoMode::Auto,
            drain_timeout_ms: 30_000,
            limits: LimitsRaw::default(),
            tls: TlsRaw::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsRaw {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    /// Request bodies up to this size are held whole so `model` can be read
    /// anywhere in them and a fallback attempt can replay them; larger bodies
    /// stream through after this prefix.
    pub body_buffer_bytes: usize,
    /// A request body must arrive within this, in total (not per read).
    pub body_read_timeout_ms: u64,
    /// Largest SSE event from an upstream: past it the stream ends with an
    /// error event (no event is buffered beyond it).
    pub max_event_bytes: usize,
    /// Memory for JSON bodies held whole past `body_buffer_bytes` (so the
    /// model is read anywhere in them), for the whole process: past it,
    /// 503 with `retry-after`.
    pub body_memory_bytes: usize,
}

impl Default for LimitsRaw {
    fn default() -> Self {
        LimitsRaw {
            max_header_bytes: 65_536,
            max_headers: 100,
            max_body_bytes: 32 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 65_536,
            body_buffer_bytes: 1024 * 1024,
            body_read_timeout_ms: 60_000,
            max_event_bytes: 8 * 1024 * 1024,
            body_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminRaw {
    pub listen: String,
    pub token: Option<String>,
    pub tokens: Vec<AdminTokenRaw>,
}

impl Default for AdminRaw {
    fn default() -> Self {
        AdminRaw {
            listen: "127.0.0.1:9090".into(),
            token: None,
            tokens: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenRaw {
    pub token: String,
    pub resource_groups: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreRaw {
    pub path: String,
}

impl Default for StoreRaw {
    fn default() -> Self {
        StoreRaw {
            path: "data/state.json".into(),
        }
    }
}

/// `[cluster]`: a Redis URL (or `env:NAME`) turns cluster mode on.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterRaw {
    pub redis_url: Option<String>,
    pub key_prefix: String,
}

impl Default for ClusterRaw {
    fn default() -> Self {
        ClusterRaw {
            redis_url: None,
            key_prefix: "modelgate:".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogRaw {
    pub access: String,
    pub level: String,
    /// Cap on `request_body` / `response_body` in access log lines.
    pub body_max_bytes: usize,
}

impl Default for LogRaw {
    fn default() -> Self {
        LogRaw {
            access: "stdout".into(),
            level: "info".into(),
            body_max_bytes: 8192,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceRaw {
    /// OTLP/HTTP endpoint spans are exported to; unset: no export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TraceRaw {
    fn default() -> Self {
        TraceRaw {
            otlp_endpoint: None,
            service_name: "modelgate".into(),
        }
    }
}

fn default_group() -> String {
    "default".into()
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    600_000
}
fn default_base_path() -> String {
    "/".into()
}
fn yes() -> bool {
    true
}

/// An AI service: one upstream provider endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_connect_timeout")]
    #[schema(maximum = 604_800_000)]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout")]
    #[schema(maximum = 604_800_000)]
    pub timeout_ms: u64,
    #[serde(default = "default_group")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub resource_group: String,
    /// PEM file of CA certificates to trust instead of the webpki roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// `api-version` query parameter (Azure OpenAI).
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub outlier_detection: OutlierSpec,
}

/// Outlier ejection: after `consecutive_failures` connect failures or 5xx
/// in a row (per worker), the service is skipped for `ejection_ms` (growing
/// with repeated ejections) while other targets can serve. 0 turns it off.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSpec {
    pub consecutive_failures: u32,
    pub ejection_ms: u64,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            consecutive_failures: 5,
            ejection_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub service: String,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub pattern: String,
    pub service: String,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedTargetSpec {
    pub service: String,
    pub weight: i64,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SelectionSpec {
    Single { target: TargetSpec },
    ByModel { rules: Vec<RuleSpec> },
    ByWeight { targets: Vec<WeightedTargetSpec> },
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackSpec {
    pub enabled: bool,
    pub targets: Vec<TargetSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringSpec {
    pub enabled: bool,
    pub log_request_body: bool,
    pub log_response_body: bool,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        MonitoringSpec {
            enabled: true,
            log_request_body: false,
            log_response_body: false,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSpec {
    pub enabled: bool,
    pub consumers: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModerationSpec {
    pub enabled: bool,
    pub deny: Vec<String>,
    pub check_response: bool,
    pub service: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsSpec {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// A Model API: what clients call.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelApiSpec {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    pub scenario: String,
    pub protocol: String,
    pub domains: Vec<String>,
    #[serde(default = "default_base_path")]
    pub base_path: String,
    #[serde(default)]
    pub strip_base_path: bool,
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    pub service: SelectionSpec,
    #[serde(default)]
    pub fallback: FallbackSpec,
    #[serde(default)]
    #[schema(maximum = 604_800_000)]
    pub first_packet_timeout_ms: u64,
    #[serde(default = "default_group")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub resource_group: String,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub moderation: ModerationSpec,
    #[serde(default)]
    pub limits: RateLimitsSpec,
    /// Browser apps on other origins may call it (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
}

/// CORS of a Model API: preflights are answered by the gateway.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// `https://app.example.com`, or `*` for any origin.
    pub origins: Vec<String>,
    /// Request headers a page may send (`authorization`, `content-type`…).
    #[serde(default)]
    pub headers: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    #[serde(default = "default_cors_max_age")]
    #[schema(maximum = 86400)]
    pub max_age_s: u64,
}

fn default_cors_max_age() -> u64 {
    600
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    pub name: String,
    #[serde(default = "default_group")]
    pub resource_group: String,
    #[serde(default)]
    pub limits: RateLimitsSpec,
    /// Keys as secrets (`env:NAME`, `file:PATH`); hashed when compiled.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Keys made through the admin API: only their hashes are kept.
    #[serde(default)]
    pub key_hashes: Vec<KeyHash>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A consumer key as stored: its id and the hex SHA-256 of the key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHash {
    pub id: String,
    pub sha256: String,
}
