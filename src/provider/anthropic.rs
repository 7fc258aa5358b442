//! Anthropic: Messages API only, `x-api-key` plus `anthropic-version`.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "anthropic",
    default_base_url: Some("https://api.anthropic.com"),
    auth: Auth::XApiKey,
    openai_prefix: None,
    anthropic_path: Some("/v1/messages"),
    native: &[],
    stream_usage: false,
    fixed_headers: &[("anthropic-version", "2023-06-01")],
    openai_path: None,
};
