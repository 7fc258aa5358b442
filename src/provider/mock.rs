//! The built-in `mock` provider: answers OpenAI chat/completions/embeddings
//! and Anthropic messages in-process, streamed or not, with usage — so the
//! shipped config works with no network and no keys.

use super::{Auth, Provider};
use serde_json::{json, Value};

pub const PROVIDER: Provider = Provider {
    kind: "mock",
    default_base_url: None,
    auth: Auth::Bearer,
    openai_prefix: Some("/v1"),
    anthropic_path: Some("/v1/messages"),
    native: &[],
    stream_usage: true,
    fixed_headers: &[],
    openai_path: None,
};

/// A whole answer: a body, or stream events to write one by one.
pub struct MockAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub events: Vec<Vec<u8>>,
}

const WORDS: [&str; 3] = ["Hello", " from", " modelgate"];

fn output_tokens(req: &Value) -> usize {
    let n = req
        .get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(WORDS.len() as u64);
    n.clamp(1, 4096) as usize
}

fn token(i: usize) -> &'static str {
    WORDS.get(i).copied().unwrap_or(" token")
}

/// Words of every text content in the request, counted as input tokens.
fn input_tokens(req: &Value) -> u64 {
    fn words(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(a) => a.iter().map(words).sum(),
            Value::Object(o) => o
                .get("text")
                .or_else(|| o.get("content"))
                .map(words)
                .unwrap_or(0),
            _ => 0,
        }
    }
    let mut n = req.get("messages").map(words).unwrap_or(0);
    n += req.get("system").map(words).unwrap_or(0);
    n += req.get("prompt").map(words).unwrap_or(0);
    n += req.get("input").map(words).unwrap_or(0);
    n.max(1)
}

fn sse(data: &Value) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

fn named(event: &str, data: &Value) -> Vec<u8> {
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}

fn error(status: u16, message: &str) -> MockAnswer {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "mock_error"}});
    MockAnswer {
        status,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        events: Vec::new(),
    }
}

fn json_answer(v: Value) -> MockAnswer {
    MockAnswer {
        status: 200,
        content_type: "application/json",
        body: v.to_string().into_bytes(),
        events: Vec::new(),
    }
}

fn stream_answer(events: Vec<Vec<u8>>) -> MockAnswer {
    MockAnswer {
        status: 200,
        content_type: "text/event-stream",
        body: Vec::new(),
        events,
    }
}

/// Answers a request for `path` (upstream path, OpenAI or Anthropic layout).
pub fn answer(path: &str, body: &[u8]) -> MockAnswer {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("mock: body is not JSON: {e}")),
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let path = path.split('?').next().unwrap_or(path);
    if path.ends_with("/chat/completions") {
        chat(&req, &model, stream)
    } else if path.ends_with("/completions") {
        completion(&req, &model, stream)
    } else if path.ends_with("/embeddings") {
        embeddings(&req, &model)
    } else if path.ends_with("/messages") {
        messages(&req, &model, stream)
    } else {
        error(404, &format!("mock: no such API {path}"))
    }
}

fn chat(req: &Value, model: &str, stream: bool) -> MockAnswer {
    let (p, c) = (input_tokens(req), output_tokens(req));
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64});
    if !stream {
        let text: String = (0..c).map(token).collect();
        return json_answer(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }));
    }
    let chunk = |delta: Value, finish: Value| {
        sse(
            &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend((0..c).map(|i| chunk(json!({"content": token(i)}), Value::Null)));
    events.push(chunk(json!({}), json!("stop")));
    if req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
    {
        events.push(sse(
            &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [], "usage": usage}),
        ));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    stream_answer(events)
}

fn completion(req: &Value, model: &str, stream: bool) -> MockAnswer {
    let (p, c) = (input_tokens(req), output_tokens(req));
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64});
    if !stream {
        let text: String = (0..c).map(token).collect();
        return json_answer(json!({
            "id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
            "usage": usage,
        }));
    }
    let mut events: Vec<Vec<u8>> = (0..c)
        .map(|i| {
            sse(&json!({"id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
                "choices": [{"index": 0, "text": token(i), "finish_reason": null, "logprobs": null}]}))
        })
        .collect();
    if req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
    {
        events.push(sse(
            &json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
            "model": model, "choices": [], "usage": usage}),
        ));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    stream_answer(events)
}

fn embeddings(req: &Value, model: &str) -> MockAnswer {
    let inputs = match req.get("input") {
        Some(Value::Array(a)) => a.len().max(1),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let v: Vec<f64> = (0..8).map(|d| ((i * 8 + d) as f64 * 0.125).sin()).collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let p = input_tokens(req);
    json_answer(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": p, "total_tokens": p}}))
}

fn messages(req: &Value, model: &str, stream: bool) -> MockAnswer {
    let (p, c) = (input_tokens(req), output_tokens(req));
    if !stream {
        let text: String = (0..c).map(token).collect();
        return json_answer(json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": p, "output_tokens": c},
        }));
    }
    let mut events = vec![
        named(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_mock",
            "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": p, "output_tokens": 1}}}),
        ),
        named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        named("ping", &json!({"type": "ping"})),
    ];
    events.extend((0..c).map(|i| {
        named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": token(i)}}),
        )
    }));
    events.push(named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(named("message_delta", &json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": c}})));
    events.push(named("message_stop", &json!({"type": "message_stop"})));
    stream_answer(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_stream_ends_with_done_and_usage_when_asked() {
        let a = answer(
            "/v1/chat/completions",
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":4,"messages":[{"role":"user","content":"a b c"}]}"#,
        );
        assert_eq!(a.content_type, "text/event-stream");
        // role chunk + 4 tokens + finish + usage + DONE
        assert_eq!(a.events.len(), 8);
        assert_eq!(a.events.last().unwrap(), b"data: [DONE]\n\n");
        let usage = String::from_utf8(a.events[6].clone()).unwrap();
        assert!(usage.contains(r#""prompt_tokens":3"#), "{usage}");
        assert!(usage.contains(r#""total_tokens":7"#), "{usage}");
    }

    #[test]
    fn anthropic_message_counts_tokens() {
        let a = answer(
            "/v1/messages",
            br#"{"model":"claude","max_tokens":2,"messages":[{"role":"user","content":[{"type":"text","text":"one two"}]}]}"#,
        );
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["content"][0]["text"], "Hello from");
        assert_eq!(v["usage"]["input_tokens"], 2);
        assert_eq!(v["usage"]["output_tokens"], 2);
    }

    #[test]
    fn bad_json_is_a_400() {
        assert_eq!(answer("/v1/chat/completions", b"nope").status, 400);
    }
}
