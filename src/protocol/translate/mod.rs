//! Anthropic Messages ⇄ OpenAI chat completions (PRODUCT.md §6).
//!
//! Used only when an attempt's service does not speak the Model API's
//! protocol; the pass-through path never parses a body. Each direction is
//! named by the client's protocol → the upstream's:
//!
//! - [`request`]: the client's body → the upstream's body (typed, borrowed).
//! - [`response`]: a whole upstream answer or error → the client's shape.
//! - [`stream`]: upstream SSE events → client SSE events, one whole event
//!   in, whole events out, as state machines.

pub mod request;
pub mod response;
pub mod stream;

use crate::config::catalog::{Protocol, RouteDef};
use crate::error::{Error, Kind};
use crate::provider::Provider;
use std::borrow::Cow;

/// Which way an attempt translates: client protocol → upstream protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// An Anthropic client in front of an OpenAI-speaking service.
    AnthropicToOpenai,
    /// An OpenAI client in front of an Anthropic-only service.
    OpenaiToAnthropic,
}

const MESSAGES: &str = "/v1/messages";
const CHAT: &str = "/v1/chat/completions";

impl Direction {
    /// The translation an attempt at `provider` needs for a request of the
    /// Model API's `protocol` on `route`: `None` when the provider speaks
    /// it natively; an error when it can be neither spoken nor translated.
    pub fn for_attempt(
        protocol: Protocol,
        route: &RouteDef,
        provider: &Provider,
        service: &str,
    ) -> Result<Option<Direction>, Error> {
        if provider.speaks(protocol) {
            return Ok(None);
        }
        match (protocol, route.name) {
            (Protocol::Anthropic, "create-message") if provider.speaks(Protocol::Openai) => {
                Ok(Some(Direction::AnthropicToOpenai))
            }
            (Protocol::Openai, "create-chat-completion") if provider.speaks(Protocol::Anthropic) => {
                Ok(Some(Direction::OpenaiToAnthropic))
            }
            _ => Err(Error::new(
                Kind::BadRequest,
                format!(
                    "service {service} does not speak the {} protocol, and route {} cannot be translated",
                    protocol.as_str(),
                    route.name
                ),
            )),
        }
    }

    pub fn client(self) -> Protocol {
        match self {
            Direction::AnthropicToOpenai => Protocol::Anthropic,
            Direction::OpenaiToAnthropic => Protocol::Openai,
        }
    }

    pub fn upstream(self) -> Protocol {
        match self {
            Direction::AnthropicToOpenai => Protocol::Openai,
            Direction::OpenaiToAnthropic => Protocol::Anthropic,
        }
    }

    /// The client path with its API swapped for the upstream's
    /// (`/x/v1/messages` → `/x/v1/chat/completions`), before the provider's
    /// own layout applies.
    pub fn upstream_path(self, client_path: &str) -> String {
        let (from, to) = match self {
            Direction::AnthropicToOpenai => (MESSAGES, CHAT),
            Direction::OpenaiToAnthropic => (CHAT, MESSAGES),
        };
        match client_path.strip_suffix(from) {
            Some(prefix) => format!("{prefix}{to}"),
            None => to.to_string(),
        }
    }
}

/// A 400 for a client body that cannot be read or translated.
fn bad_request(what: impl std::fmt::Display) -> Error {
    Error::new(Kind::BadRequest, what.to_string())
}

/// A string borrowed from a parsed body, whether the parse borrowed it
/// (no escapes) or owns it. Takes `&Cow` so it maps over `Option<&Cow>`.
#[allow(clippy::ptr_arg)]
fn borrow<'b>(s: &'b Cow<'_, str>) -> Cow<'b, str> {
    Cow::Borrowed(s.as_ref())
}

/// The current time in Unix seconds (OpenAI's `created`).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`. `stop_string` is the
/// matched stop sequence where the server tells it (vLLM's `stop_reason`).
pub fn stop_reason(finish_reason: &str, stop_string: bool) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ if stop_string => "stop_sequence",
        _ => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::catalog;
    use crate::provider::by_kind;

    fn route(scenario: &str, protocol: Protocol, name: &str) -> &'static RouteDef {
        let s = catalog::Scenario::ALL
            .into_iter()
            .find(|s| s.as_str() == scenario)
            .unwrap();
        catalog::routes(s, protocol)
            .iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    #[test]
    fn translation_only_where_the_service_lacks_the_protocol() {
        let msg = route("text", Protocol::Anthropic, "create-message");
        let chat = route("text", Protocol::Openai, "create-chat-completion");
        let compl = route("text", Protocol::Openai, "create-completion");
        let p = |k| by_kind(k).unwrap();
        let d = |proto, r, k| Direction::for_attempt(proto, r, p(k), "svc");
        assert_eq!(d(Protocol::Anthropic, msg, "anthropic").unwrap(), None);
        assert_eq!(d(Protocol::Anthropic, msg, "dashscope").unwrap(), None);
        assert_eq!(d(Protocol::Anthropic, msg, "mock").unwrap(), None);
        assert_eq!(
            d(Protocol::Anthropic, msg, "vllm").unwrap(),
            Some(Direction::AnthropicToOpenai)
        );
        assert_eq!(d(Protocol::Openai, chat, "openai").unwrap(), None);
        assert_eq!(
            d(Protocol::Openai, chat, "anthropic").unwrap(),
            Some(Direction::OpenaiToAnthropic)
        );
        let e = d(Protocol::Openai, compl, "anthropic").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message.contains("create-completion"), "{}", e.message);
        assert!(d(Protocol::Anthropic, msg, "comfyui").is_err());
    }

    #[test]
    fn paths_swap_the_api_and_keep_any_prefix() {
        let a = Direction::AnthropicToOpenai;
        assert_eq!(a.upstream_path("/v1/messages"), "/v1/chat/completions");
        assert_eq!(
            a.upstream_path("/team/v1/messages"),
            "/team/v1/chat/completions"
        );
        let o = Direction::OpenaiToAnthropic;
        assert_eq!(o.upstream_path("/v1/chat/completions"), "/v1/messages");
        assert_eq!(a.client(), Protocol::Anthropic);
        assert_eq!(o.upstream(), Protocol::Anthropic);
    }

    #[test]
    fn stop_reasons_map_both_ways() {
        for (anthropic, openai) in [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(anthropic), openai);
            assert_eq!(stop_reason(openai, false), anthropic);
        }
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(stop_reason("stop", true), "stop_sequence");
    }
}
