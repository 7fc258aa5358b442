//! DeepSeek: OpenAI-compatible at `/v1`.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "deepseek",
    default_base_url: Some("https://api.deepseek.com"),
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: None,
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
