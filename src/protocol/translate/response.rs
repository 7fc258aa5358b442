//! Whole answers and upstream errors, into the client's protocol.

use super::{borrow, finish_reason, stop_reason, unix_now, Direction};
use crate::error::{Error, Kind};
use crate::protocol::anthropic as a;
use crate::protocol::json::TextOrList;
use crate::protocol::openai as o;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A successful upstream body → the client's answer.
pub fn translate(direction: Direction, body: &[u8]) -> Result<Vec<u8>, Error> {
    match direction {
        Direction::AnthropicToOpenai => completion_to_message(body),
        Direction::OpenaiToAnthropic => message_to_completion(body),
    }
}

fn unreadable(e: serde_json::Error) -> Error {
    Error::new(
        Kind::UpstreamProtocol,
        format!("the service's answer could not be translated: {e}"),
    )
}

/// OpenAI `chat.completion` → Anthropic `message`.
fn completion_to_message(body: &[u8]) -> Result<Vec<u8>, Error> {
    let c: o::ChatCompletion = serde_json::from_slice(body).map_err(unreadable)?;
    let choice = c.choices.first();
    let mut content = Vec::new();
    if let Some(m) = choice.map(|c| &c.message) {
        match &m.content {
            Some(TextOrList::Text(t)) if !t.is_empty() => content.push(a::Block::text(borrow(t))),
            Some(TextOrList::List(parts)) => content.extend(
                parts
                    .iter()
                    .filter_map(|p| p.text.as_ref())
                    .map(|t| a::Block::text(borrow(t))),
            ),
            _ => {}
        }
        for (k, call) in m.tool_calls.iter().flatten().enumerate() {
            content.push(a::Block {
                kind: "tool_use".into(),
                id: Some(tool_call_id(call.id.as_ref(), k)),
                name: Some(call.function.name.as_ref().map(borrow).unwrap_or_default()),
                input: Some(tool_input(call.function.arguments.as_deref())),
                ..Default::default()
            });
        }
    }
    let (stop, sequence) = match choice {
        Some(ch) => {
            let seq = stop_string(ch.stop_reason);
            (
                ch.finish_reason
                    .as_deref()
                    .map(|f| stop_reason(f, seq.is_some())),
                seq,
            )
        }
        None => (None, None),
    };
    let m = a::Message {
        id: borrow(&c.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: borrow(&c.model),
        content,
        stop_reason: stop.map(Cow::Borrowed),
        stop_sequence: sequence,
        usage: c.usage.map(anthropic_usage).unwrap_or(a::Usage {
            input_tokens: Some(0),
            output_tokens: Some(0),
            ..Default::default()
        }),
    };
    Ok(serde_json::to_vec(&m).unwrap_or_default())
}

/// A tool call's id, or a made-up one when the server sent none.
pub(super) fn tool_call_id<'b>(id: Option<&'b Cow<'_, str>>, k: usize) -> Cow<'b, str> {
    match id {
        Some(id) if !id.is_empty() => borrow(id),
        _ => Cow::Owned(format!("call_{k}")),
    }
}

/// Tool call arguments (JSON text in a string) as Anthropic's `input`
/// object; `{}` when the model produced something else (it cannot be
/// refused here, and the client still sees the call).
fn tool_input(args: Option<&str>) -> &RawValue {
    let parsed = args
        .map(str::trim)
        .filter(|a| a.starts_with('{'))
        .and_then(|a| serde_json::from_str::<&RawValue>(a).ok());
    match parsed {
        Some(raw) => raw,
        None => {
            if args.is_some_and(|a| !a.trim().is_empty()) {
                tracing::debug!("tool call arguments are not a JSON object; sent as {{}}");
            }
            serde_json::from_str("{}").expect("valid JSON")
        }
    }
}

/// vLLM's `stop_reason`: the stop string that ended the answer.
pub(super) fn stop_string<'b>(raw: Option<&'b RawValue>) -> Option<Cow<'b, str>> {
    raw.and_then(|r| serde_json::from_str::<Cow<'b, str>>(r.get()).ok())
}

/// OpenAI usage → Anthropic usage (cached prompt tokens counted apart, as
/// Anthropic does).
pub(super) fn anthropic_usage(u: o::Usage) -> a::Usage {
    let cached = u.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
    a::Usage {
        input_tokens: Some(u.prompt_tokens.saturating_sub(cached)),
        cache_creation_input_tokens: None,
        cache_read_input_tokens: (cached > 0).then_some(cached),
        output_tokens: Some(u.completion_tokens),
    }
}

/// Anthropic usage → OpenAI usage.
pub(super) fn openai_usage(u: &a::Usage) -> o::Usage {
    let prompt = u.prompt_tokens();
    let completion = u.output_tokens.unwrap_or(0);
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    o::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: (cached > 0).then_some(o::PromptTokensDetails {
            cached_tokens: cached,
        }),
    }
}

/// Anthropic `message` → OpenAI `chat.completion`.
fn message_to_completion(body: &[u8]) -> Result<Vec<u8>, Error> {
    let m: a::Message = serde_json::from_slice(body).map_err(unreadable)?;
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for b in &m.content {
        match (b.kind.as_ref(), &b.text) {
            ("text", Some(t)) => texts.push(t.as_ref()),
            ("tool_use", _) => calls.push(o::ToolCall {
                index: None,
                id: b.id.as_ref().map(borrow),
                kind: Some("function".into()),
                function: o::FunctionCall {
                    name: b.name.as_ref().map(borrow),
                    arguments: Some(Cow::Borrowed(b.input.map_or("{}", RawValue::get))),
                },
            }),
            // thinking and server tool blocks have no OpenAI answer field.
            _ => {}
        }
    }
    // A tool-call-only answer has no content (null), as OpenAI sends it.
    let content = (!texts.is_empty() || calls.is_empty()).then(|| {
        TextOrList::Text(match texts.as_slice() {
            [one] => Cow::Borrowed(*one),
            many => Cow::Owned(many.concat()),
        })
    });
    let c = o::ChatCompletion {
        id: borrow(&m.id),
        object: "chat.completion".into(),
        created: unix_now(),
        model: borrow(&m.model),
        choices: vec![o::Choice {
            index: 0,
            message: o::ChatMessage {
                role: "assistant".into(),
                content,
                tool_calls: (!calls.is_empty()).then_some(calls),
                tool_call_id: None,
            },
            finish_reason: m
                .stop_reason
                .as_deref()
                .map(|s| Cow::Borrowed(finish_reason(s))),
            stop_reason: None,
        }],
        usage: Some(openai_usage(&m.usage)),
    };
    Ok(serde_json::to_vec(&c).unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Errors

/// An upstream error answer (`status` ≥ 400) → the status and body the
/// client sees, in its protocol's shape. The upstream's message is kept;
/// a body that is not the upstream protocol's error shape becomes the
/// message itself (shortened).
pub fn error(direction: Direction, status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    match direction {
        Direction::AnthropicToOpenai => {
            let parsed = serde_json::from_slice::<o::ErrorBody>(body).ok();
            let message = match &parsed {
                Some(e) => borrow(&e.error.message),
                None => fallback_message(status, body),
            };
            let out = a::ErrorBody {
                kind: "error".into(),
                error: a::ErrorDetail {
                    kind: anthropic_error_type(status).into(),
                    message,
                },
            };
            (status, serde_json::to_vec(&out).unwrap_or_default())
        }
        Direction::OpenaiToAnthropic => {
            let parsed = serde_json::from_slice::<a::ErrorBody>(body).ok();
            let (message, code) = match &parsed {
                Some(e) => (borrow(&e.error.message), Some(e.error.kind.as_ref())),
                None => (fallback_message(status, body), None),
            };
            // 529 (overloaded) is Anthropic's own; OpenAI clients know 503.
            let status = if status == 529 { 503 } else { status };
            let out = o::ErrorBodyOut {
                error: o::ErrorOut {
                    message: &message,
                    kind: openai_error_type(status),
                    param: Some(None),
                    code: code.filter(|c| !c.is_empty()),
                },
            };
            (status, serde_json::to_vec(&out).unwrap_or_default())
        }
    }
}

/// The message of an error body that is not in the expected shape.
fn fallback_message(status: u16, body: &[u8]) -> Cow<'static, str> {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if text.is_empty() {
        Cow::Owned(format!("the service answered with status {status}"))
    } else {
        Cow::Owned(format!("the service answered with status {status}: {text}"))
    }
}

/// Anthropic's `error.type` for an upstream status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// OpenAI's `error.type` for an upstream status (as the gateway's own
/// errors use them).
pub fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(d: Direction, body: &str) -> String {
        String::from_utf8(translate(d, body.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn completion_to_anthropic_message() {
        assert_eq!(
            t(
                Direction::AnthropicToOpenai,
                r#"{"id":"chatcmpl-1","object":"chat.completion","created":5,"model":"gpt-x",
                "choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#
            ),
            r#"{"id":"chatcmpl-1","type":"message","role":"assistant","model":"gpt-x","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":2}}"#
        );
    }

    #[test]
    fn completion_with_tool_calls_length_and_cache() {
        assert_eq!(
            t(
                Direction::AnthropicToOpenai,
                r#"{"id":"c2","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,
                "tool_calls":[{"id":"call_9","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                              {"type":"function","function":{"name":"broken","arguments":"{oops"}}]},
                "finish_reason":"tool_calls"}],
                "usage":{"prompt_tokens":100,"completion_tokens":7,"total_tokens":107,"prompt_tokens_details":{"cached_tokens":64}}}"#
            ),
            r#"{"id":"c2","type":"message","role":"assistant","model":"m","content":[{"type":"tool_use","id":"call_9","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"call_1","name":"broken","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":36,"cache_read_input_tokens":64,"output_tokens":7}}"#
        );
        let out = t(
            Direction::AnthropicToOpenai,
            r#"{"id":"c3","model":"m","choices":[{"message":{"role":"assistant","content":"cut"},"finish_reason":"length"}]}"#,
        );
        assert!(out.contains(r#""stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}"#), "{out}");
        // vLLM names the stop string that matched.
        let out = t(
            Direction::AnthropicToOpenai,
            r#"{"id":"c4","model":"m","choices":[{"message":{"role":"assistant","content":"a"},"finish_reason":"stop","stop_reason":"END"}]}"#,
        );
        assert!(
            out.contains(r#""stop_reason":"stop_sequence","stop_sequence":"END""#),
            "{out}"
        );
    }

    #[test]
    fn message_to_openai_completion() {
        let out = t(
            Direction::OpenaiToAnthropic,
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"thinking","thinking":"hm","signature":"x"},{"type":"text","text":"Hi "},{"type":"text","text":"there"}],
            "stop_reason":"max_tokens","stop_sequence":null,
            "usage":{"input_tokens":5,"cache_read_input_tokens":10,"cache_creation_input_tokens":2,"output_tokens":3}}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let created = v["created"].as_u64().unwrap();
        assert!(created > 1_700_000_000);
        assert_eq!(
            out,
            format!(
                r#"{{"id":"msg_1","object":"chat.completion","created":{created},"model":"claude-x","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi there"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":17,"completion_tokens":3,"total_tokens":20,"prompt_tokens_details":{{"cached_tokens":10}}}}}}"#
            )
        );
    }

    #[test]
    fn message_with_tool_use_to_tool_calls() {
        let out = t(
            Direction::OpenaiToAnthropic,
            r#"{"id":"msg_2","model":"c","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city": "Paris"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["choices"],
            serde_json::json!([{"index":0,"message":{"role":"assistant","tool_calls":[
                {"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
                "finish_reason":"tool_calls"}])
        );
        assert_eq!(
            v["usage"],
            serde_json::json!({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3})
        );
    }

    #[test]
    fn unreadable_answers_are_upstream_errors() {
        let e = translate(Direction::OpenaiToAnthropic, b"<html>").unwrap_err();
        assert_eq!(e.status(), 502);
        assert!(e.message.contains("could not be translated"));
    }

    #[test]
    fn errors_take_the_clients_shape() {
        let (s, b) = error(
            Direction::AnthropicToOpenai,
            429,
            br#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(s, 429);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
        );
        let (s, b) = error(Direction::AnthropicToOpenai, 500, b"upstream exploded");
        assert_eq!(s, 500);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"type":"error","error":{"type":"api_error","message":"the service answered with status 500: upstream exploded"}}"#
        );
        let (s, b) = error(
            Direction::OpenaiToAnthropic,
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(s, 503);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"error":{"message":"Overloaded","type":"api_error","param":null,"code":"overloaded_error"}}"#
        );
        let (s, b) = error(Direction::OpenaiToAnthropic, 401, b"");
        assert_eq!(s, 401);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"error":{"message":"the service answered with status 401","type":"authentication_error","param":null,"code":null}}"#
        );
    }
}
