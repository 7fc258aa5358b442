//! The built-in `mock` provider: answers OpenAI chat/completions/embeddings
//! and Anthropic messages in-process, streamed or not, with usage — so the
//! shipped config works with no network and no keys.
//!
//! Shapes follow the providers where SDKs read them: embeddings are
//! [`EMBEDDING_DIMENSIONS`] deterministic non-zero floats per input (or
//! `dimensions`), as JSON floats or, for `encoding_format: "base64"` (the
//! OpenAI SDKs' default), base64 of the little-endian float32 array;
//! Anthropic streams carry usage in `message_start` and, with the input
//! and cache counts again, in `message_delta`.

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

/// Dimensions of a mock embedding unless the request asks for `dimensions`.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// The most `dimensions` a request may ask for.
const MAX_EMBEDDING_DIMENSIONS: u64 = 4096;

/// `dims` deterministic floats in [-1, 1], never 0, from `key` (FNV-1a,
/// then splitmix64), rounded to 4 decimals so they survive float32.
fn embedding_of(key: &str, dims: usize) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|_| {
            h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = h;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
            let v = ((unit * 2.0 - 1.0) * 10_000.0).round() / 10_000.0;
            if v == 0.0 {
                0.0001
            } else {
                v
            }
        })
        .collect()
}

/// Standard base64 (RFC 4648, padded).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// OpenAI's `encoding_format: "base64"`: the little-endian float32 array.
fn base64_f32(v: &[f64]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
    base64(&bytes)
}

fn embeddings(req: &Value, model: &str) -> MockAnswer {
    // A string, an array of strings / token arrays, or one token array.
    let input = req.get("input").cloned().unwrap_or(Value::Null);
    let inputs: Vec<Value> = match input {
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
            vec![Value::Array(a)]
        }
        Value::Array(a) if !a.is_empty() => a,
        Value::Array(_) | Value::Null => vec![Value::String(String::new())],
        other => vec![other],
    };
    let dims = match req.get("dimensions") {
        None | Some(Value::Null) => EMBEDDING_DIMENSIONS,
        Some(d) => match d.as_u64() {
            Some(n) if (1..=MAX_EMBEDDING_DIMENSIONS).contains(&n) => n as usize,
            _ => {
                return error(
                    400,
                    &format!(
                        "mock: 'dimensions' must be an integer in 1..={MAX_EMBEDDING_DIMENSIONS}"
                    ),
                )
            }
        },
    };
    let base64 = match req.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return error(
                400,
                "mock: 'encoding_format' must be \"float\" or \"base64\"",
            )
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let v = embedding_of(&key, dims);
            let embedding = if base64 {
                json!(base64_f32(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let p = input_tokens(req);
    json_answer(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": p, "total_tokens": p}}))
}

/// Anthropic's usage object. A stream carries it twice: in
/// `message_start.message.usage` (output so far: 1) and, cumulative, in
/// `message_delta.usage`, which current API versions also fill with the
/// input and cache counts (SDKs and langchain-anthropic read them there).
fn anthropic_usage(input: u64, output: usize) -> Value {
    json!({"input_tokens": input, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0, "output_tokens": output})
}

fn messages(req: &Value, model: &str, stream: bool) -> MockAnswer {
    let (p, c) = (input_tokens(req), output_tokens(req));
    if !stream {
        let text: String = (0..c).map(token).collect();
        return json_answer(json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": anthropic_usage(p, c),
        }));
    }
    let mut events = vec![
        named(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_mock",
            "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": anthropic_usage(p, 1)}}),
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
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": anthropic_usage(p, c)})));
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
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }

    #[test]
    fn embeddings_honour_encoding_format_and_dimensions() {
        let float = answer("/v1/embeddings", br#"{"model":"e","input":["a","b"]}"#);
        let v: Value = serde_json::from_slice(&float.body).unwrap();
        let a = v["data"][0]["embedding"].as_array().unwrap();
        assert_eq!(a.len(), EMBEDDING_DIMENSIONS);
        assert!(a.iter().all(|x| x.as_f64().unwrap() != 0.0), "{v}");
        assert_ne!(v["data"][0], v["data"][1]);
        let b64 = answer(
            "/v1/embeddings",
            br#"{"model":"e","input":"a","encoding_format":"base64","dimensions":3}"#,
        );
        let w: Value = serde_json::from_slice(&b64.body).unwrap();
        let e = embedding_of("a", 3);
        assert_eq!(w["data"][0]["embedding"], base64_f32(&e));
        assert_eq!(&e[..], &embedding_of("a", 8)[..3]);
        for bad in [
            r#"{"input":"a","encoding_format":"int8"}"#,
            r#"{"input":"a","dimensions":0}"#,
        ] {
            assert_eq!(
                answer("/v1/embeddings", bad.as_bytes()).status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn anthropic_stream_usage_in_start_and_delta() {
        let a = answer(
            "/v1/messages",
            br#"{"model":"c","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"one two three"}]}"#,
        );
        let data = |e: &[u8]| -> Value {
            let t = std::str::from_utf8(e).unwrap();
            serde_json::from_str(t.split("data: ").nth(1).unwrap().trim()).unwrap()
        };
        let start = data(&a.events[0]);
        assert_eq!(start["message"]["usage"]["input_tokens"], 3);
        assert_eq!(start["message"]["usage"]["output_tokens"], 1);
        let delta = data(&a.events[a.events.len() - 2]);
        assert_eq!(delta["type"], "message_delta");
        assert_eq!(delta["usage"]["input_tokens"], 3);
        assert_eq!(delta["usage"]["output_tokens"], 2);
        assert_eq!(delta["usage"]["cache_read_input_tokens"], 0);
    }

    #[test]
    fn bad_json_is_a_400() {
        assert_eq!(answer("/v1/chat/completions", b"nope").status, 400);
    }
}
