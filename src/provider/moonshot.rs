//! Moonshot (Kimi): OpenAI at `/v1`, Anthropic at `/anthropic/v1/messages`.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "moonshot",
    default_base_url: Some("https://api.moonshot.cn"),
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: Some("/anthropic/v1/messages"),
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
