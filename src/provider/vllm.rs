//! vLLM's OpenAI-compatible server, plus its `/v1/rerank`.
use super::{Auth, Provider};
use crate::config::catalog::Protocol;

pub const PROVIDER: Provider = Provider {
    kind: "vllm",
    default_base_url: Some("http://127.0.0.1:8000"),
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: None,
    native: &[Protocol::Vllm],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
