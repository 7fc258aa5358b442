//! Alibaba DashScope (Model Studio): native `/api/v1/...` services and
//! tasks, OpenAI under `/compatible-mode/v1`, Anthropic under `/apps/anthropic`.
use super::{Auth, Provider};
use crate::config::catalog::Protocol;

pub const PROVIDER: Provider = Provider {
    kind: "dashscope",
    default_base_url: Some("https://dashscope.aliyuncs.com"),
    auth: Auth::Bearer,
    openai_prefix: Some("/compatible-mode/v1"),
    anthropic_path: Some("/apps/anthropic/v1/messages"),
    native: &[Protocol::Dashscope],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};
