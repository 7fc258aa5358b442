//! Azure OpenAI: one deployment per model under the resource's base URL,
//! `api-key` header, `api-version` query parameter.
use super::{Auth, Provider};

fn deployment_path(path: &str, model: &str, api_version: Option<&str>) -> String {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let version = api_version.unwrap_or("2024-10-21");
    format!("/openai/deployments/{model}{rest}?api-version={version}")
}

pub const PROVIDER: Provider = Provider {
    kind: "azure_openai",
    default_base_url: None,
    auth: Auth::ApiKey,
    openai_prefix: Some("/openai"),
    anthropic_path: None,
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: Some(deployment_path),
};
