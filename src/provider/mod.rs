//! Provider kinds: where each one keeps its APIs under its base URL, how it
//! authenticates, and which protocols it speaks natively. One file per kind.

mod anthropic;
mod azure_openai;
mod comfyui;
mod dashscope;
mod deepseek;
pub mod mock;
mod moonshot;
mod ollama;
mod openai;
mod openai_compatible;
mod vllm;
mod zhipu;

use crate::config::catalog::Protocol;
use std::borrow::Cow;

/// How a provider wants its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// `api-key: KEY` (Azure OpenAI)
    ApiKey,
    /// `x-api-key: KEY` plus `anthropic-version` (Anthropic)
    XApiKey,
}

/// Maps (path, model, api_version) to a provider-specific path.
pub type PathFn = fn(&str, &str, Option<&str>) -> String;

/// What one provider kind is. All data, so the table reads at a glance.
#[derive(Debug)]
pub struct Provider {
    pub kind: &'static str,
    /// Used when a service names no `base_url`.
    pub default_base_url: Option<&'static str>,
    pub auth: Auth,
    /// Where OpenAI-protocol paths live: replaces the leading `/v1` of a
    /// client path (`/compatible-mode/v1`, `/api/paas/v4`). `None`: the
    /// provider does not speak OpenAI's protocol.
    pub openai_prefix: Option<&'static str>,
    /// Where its native Anthropic Messages API lives, if it has one.
    pub anthropic_path: Option<&'static str>,
    /// Native protocols other than openai/anthropic (dashscope, comfyui, vllm).
    pub native: &'static [Protocol],
    /// Whether OpenAI streams may be asked for `stream_options.include_usage`.
    pub stream_usage: bool,
    /// Extra headers every upstream request carries.
    pub fixed_headers: &'static [(&'static str, &'static str)],
    /// Rewrites an OpenAI-protocol path whose layout is not a plain prefix
    /// swap (Azure's deployments). Gets (path, model, api_version).
    pub openai_path: Option<PathFn>,
}

pub const KINDS: &[&Provider] = &[
    &openai::PROVIDER,
    &azure_openai::PROVIDER,
    &anthropic::PROVIDER,
    &dashscope::PROVIDER,
    &vllm::PROVIDER,
    &moonshot::PROVIDER,
    &zhipu::PROVIDER,
    &deepseek::PROVIDER,
    &ollama::PROVIDER,
    &openai_compatible::PROVIDER,
    &comfyui::PROVIDER,
    &mock::PROVIDER,
];

pub fn by_kind(kind: &str) -> Option<&'static Provider> {
    KINDS.iter().copied().find(|p| p.kind == kind)
}

impl Provider {
    pub fn is_mock(&self) -> bool {
        self.kind == "mock"
    }

    pub fn speaks(&self, p: Protocol) -> bool {
        match p {
            Protocol::Openai => self.openai_prefix.is_some(),
            Protocol::Anthropic => self.anthropic_path.is_some(),
            other => self.native.contains(&other),
        }
    }

    /// Whether a Model API of `protocol` can use this provider, natively or
    /// through Anthropic ⇄ OpenAI translation.
    pub fn serves(&self, protocol: Protocol) -> bool {
        self.speaks(protocol)
            || (protocol == Protocol::Anthropic && self.speaks(Protocol::Openai))
            || (protocol == Protocol::Openai && self.speaks(Protocol::Anthropic))
    }

    /// The upstream path (below the base URL's own path) for a client path
    /// (already stripped of the Model API's base path) spoken in `protocol`.
    pub fn upstream_path<'a>(
        &self,
        protocol: Protocol,
        client_path: &'a str,
        model: &str,
        api_version: Option<&str>,
    ) -> Cow<'a, str> {
        match protocol {
            Protocol::Anthropic => match self.anthropic_path {
                Some(p) if client_path.ends_with("/v1/messages") => Cow::Borrowed(p),
                _ => Cow::Borrowed(client_path),
            },
            Protocol::Openai => {
                // The catalog puts image and audio routes under `/api/v1`.
                let path = client_path
                    .strip_prefix("/api")
                    .filter(|p| p.starts_with("/v1/"));
                let path = path.unwrap_or(client_path);
                if let Some(f) = self.openai_path {
                    return Cow::Owned(f(path, model, api_version));
                }
                match (self.openai_prefix, path.strip_prefix("/v1")) {
                    (Some("/v1"), _) => Cow::Borrowed(path),
                    (Some(prefix), Some(rest)) if rest.is_empty() || rest.starts_with('/') => {
                        Cow::Owned([prefix, rest].concat())
                    }
                    _ => Cow::Borrowed(path),
                }
            }
            _ => Cow::Borrowed(client_path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        let kinds = [
            "openai",
            "azure_openai",
            "anthropic",
            "dashscope",
            "vllm",
            "moonshot",
            "zhipu",
            "deepseek",
            "ollama",
            "openai_compatible",
            "comfyui",
            "mock",
        ];
        for k in kinds {
            assert_eq!(by_kind(k).map(|p| p.kind), Some(k));
        }
        assert_eq!(KINDS.len(), kinds.len());
        assert!(by_kind("nope").is_none());
    }

    #[test]
    fn paths_follow_each_layout() {
        let p = |k: &str, proto, path: &str| {
            by_kind(k)
                .unwrap()
                .upstream_path(proto, path, "gpt-4o", Some("2024-06-01"))
                .into_owned()
        };
        use Protocol::*;
        assert_eq!(
            p("openai", Openai, "/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(
            p("openai", Openai, "/api/v1/images/generations"),
            "/v1/images/generations"
        );
        assert_eq!(
            p("dashscope", Openai, "/v1/chat/completions"),
            "/compatible-mode/v1/chat/completions"
        );
        assert_eq!(
            p("dashscope", Anthropic, "/v1/messages"),
            "/apps/anthropic/v1/messages"
        );
        assert_eq!(
            p(
                "dashscope",
                Dashscope,
                "/api/v1/services/aigc/text2image/image-synthesis"
            ),
            "/api/v1/services/aigc/text2image/image-synthesis"
        );
        assert_eq!(
            p("zhipu", Openai, "/v1/chat/completions"),
            "/api/paas/v4/chat/completions"
        );
        assert_eq!(
            p("zhipu", Anthropic, "/v1/messages"),
            "/api/anthropic/v1/messages"
        );
        assert_eq!(
            p("moonshot", Anthropic, "/v1/messages"),
            "/anthropic/v1/messages"
        );
        assert_eq!(p("anthropic", Anthropic, "/v1/messages"), "/v1/messages");
        assert_eq!(
            p("azure_openai", Openai, "/v1/chat/completions"),
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"
        );
        assert_eq!(p("comfyui", Comfyui, "/prompt"), "/prompt");
    }

    #[test]
    fn protocols_spoken_and_served() {
        let anthropic = by_kind("anthropic").unwrap();
        assert!(anthropic.speaks(Protocol::Anthropic));
        assert!(!anthropic.speaks(Protocol::Openai));
        assert!(anthropic.serves(Protocol::Openai));
        let vllm = by_kind("vllm").unwrap();
        assert!(vllm.serves(Protocol::Anthropic));
        assert!(vllm.speaks(Protocol::Vllm));
        assert!(!by_kind("comfyui").unwrap().serves(Protocol::Openai));
        assert!(!by_kind("ollama").unwrap().stream_usage);
    }
}
