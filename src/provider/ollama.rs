//! Ollama's OpenAI-compatible endpoint; it rejects `stream_options`, so no
//! usage is asked for in streams.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "ollama",
    default_base_url: Some("http://127.0.0.1:11434"),
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: None,
    native: &[],
    stream_usage: false,
    fixed_headers: &[],
    openai_path: None,
};
