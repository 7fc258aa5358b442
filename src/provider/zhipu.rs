//! Zhipu (BigModel): OpenAI at `/api/paas/v4`, Anthropic at `/api/anthropic`.
use super::{Auth, Provider};

pub const PROVIDER: Provider = Provider {
    kind: "zhipu",
    default_base_url: Some("https://open.bigmodel.cn"),
    auth: Auth::Bearer,
    openai_prefix: Some("/api/paas/v4"),
    anthropic_path: Some("/api/anthropic/v1/messages"),
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
