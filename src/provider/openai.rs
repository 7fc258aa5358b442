//! OpenAI: `https://api.openai.com/v1/...`, bearer key.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "openai",
    default_base_url: Some("https://api.openai.com"),
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: None,
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
