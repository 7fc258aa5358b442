//! Any OpenAI-compatible server at its `base_url`.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "openai_compatible",
    default_base_url: None,
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: None,
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
