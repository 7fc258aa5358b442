//! ComfyUI: its own HTTP and WebSocket API, paths unchanged, no key.
use super::{Auth, Provider};
use crate::config::catalog::Protocol;

pub const PROVIDER: Provider = Provider {
    kind: "comfyui",
    default_base_url: Some("http://127.0.0.1:8188"),
    auth: Auth::Bearer,
    openai_prefix: None,
    anthropic_path: None,
    native: &[Protocol::Comfyui],
    stream_usage: false,
    fixed_headers: &[],
    openai_path: None,
};
