//! What each endpoint answers: deterministic OpenAI, Anthropic, DashScope
//! and vLLM-shaped bodies, and protocol-shaped errors. Chat and Messages
//! requests that declare tools answer with a tool call when
//! `x-mock-tool-call: NAME` or their `tool_choice` forces one
//! ([`forced_tool`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::http::Request;
use super::State;

/// A response body: whole (Content-Length) or a list of chunks, each
/// written and flushed as its own chunk of a chunked body.
#[derive(Debug, Clone)]
pub enum Body {
    Full(Vec<u8>),
    Stream(Vec<Vec<u8>>),
}

/// A response before faults and timing are applied.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Set on generations: where the output tokens are, for token pacing.
    pub tokens: Option<Tokens>,
}

/// The output tokens of a generation: `count` tokens, one per stream event
/// from event `first_event` on (events before it are preamble such as
/// Anthropic's `message_start`; events after them are the finish, usage
/// and end events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub count: u64,
    pub first_event: usize,
}

pub const JSON: &str = "application/json";
pub const SSE: &str = "text/event-stream";

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: Body::Full(serde_json::to_vec(v).unwrap_or_default()),
            tokens: None,
        }
    }

    pub fn sse(events: Vec<String>) -> Reply {
        Reply {
            status: 200,
            content_type: SSE,
            headers: vec![("cache-control".to_string(), "no-cache".to_string())],
            body: Body::Stream(events.into_iter().map(String::into_bytes).collect()),
            tokens: None,
        }
    }

    /// Marks this reply as a generation of `count` tokens starting at
    /// stream event `first_event`.
    fn generated(mut self, count: u64, first_event: usize) -> Reply {
        self.tokens = Some(Tokens { count, first_event });
        self
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.body, Body::Stream(_))
    }
}

/// The error shape a path's protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    OpenAi,
    Anthropic,
    DashScope,
}

/// The protocol a request path belongs to (for error shapes).
pub fn proto_of(path: &str) -> Proto {
    if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") {
        Proto::Anthropic
    } else if path.contains("/api/v1/services/") || path.contains("/api/v1/tasks") {
        Proto::DashScope
    } else {
        Proto::OpenAi
    }
}

fn openai_error_type(status: u16) -> (&'static str, String) {
    match status {
        401 => ("authentication_error", "invalid_api_key".into()),
        403 => ("permission_error", "permission_denied".into()),
        404 => ("invalid_request_error", "not_found".into()),
        429 => ("rate_limit_error", "rate_limit_exceeded".into()),
        400..=499 => ("invalid_request_error", format!("mock_status_{status}")),
        _ => ("server_error", format!("mock_status_{status}")),
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn dashscope_code(status: u16) -> &'static str {
    match status {
        401 => "InvalidApiKey",
        403 => "AccessDenied",
        404 => "NotFound",
        429 => "Throttling",
        400..=499 => "InvalidParameter",
        _ => "InternalError",
    }
}

/// An error body in `proto`'s shape.
pub fn error_reply(state: &State, proto: Proto, status: u16, message: &str) -> Reply {
    let v = match proto {
        Proto::OpenAi => {
            let (ty, code) = openai_error_type(status);
            json!({"error": {"message": message, "type": ty, "param": null, "code": code}})
        }
        Proto::Anthropic => {
            json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}})
        }
        Proto::DashScope => json!({
            "code": dashscope_code(status),
            "message": message,
            "request_id": request_id(state),
        }),
    };
    Reply::json(status, &v)
}

fn request_id(state: &State) -> String {
    format!("{}-req-{}", state.cfg.name, state.next_id())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The i-th output token.
pub fn token(i: u64) -> &'static str {
    match i {
        0 => "Hello",
        1 => " from",
        2 => " mock-llm",
        _ => " token",
    }
}

/// The text of `c` output tokens.
pub fn text_of(c: u64) -> String {
    (0..c).map(token).collect()
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words in a message `content`: a string, or text parts (also inside
/// Anthropic `tool_result` blocks).
fn content_words(v: &Value) -> u64 {
    match v {
        Value::String(s) => words(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => words(s),
                Value::Object(o) => {
                    if let Some(Value::String(t)) = o.get("text") {
                        words(t)
                    } else if o.get("type").and_then(Value::as_str) == Some("tool_result") {
                        o.get("content").map(content_words).unwrap_or(0)
                    } else {
                        0
                    }
                }
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of a chat / messages body: words across every message's
/// content and an Anthropic top-level `system`, at least 1.
pub fn chat_prompt_tokens(body: &Value) -> u64 {
    let msgs: u64 = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| m.get("content").map(content_words).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let system = body.get("system").map(content_words).unwrap_or(0);
    (msgs + system).max(1)
}

/// Words in a `prompt` / `input` that is a string, token array or list.
fn input_words(v: &Value) -> u64 {
    match v {
        Value::String(s) => words(s),
        Value::Number(_) => 1,
        Value::Array(a) => a.iter().map(input_words).sum(),
        _ => 0,
    }
}

const MAX_OUTPUT_TOKENS: u64 = 100_000;

/// Output tokens: `x-mock-chunks`, else `max_tokens` /
/// `max_completion_tokens` (top level or DashScope `parameters`), else 3.
pub fn output_tokens(req: &Request, body: &Value) -> u64 {
    let from_body = |b: &Value| {
        b.get("max_tokens")
            .and_then(Value::as_u64)
            .or_else(|| b.get("max_completion_tokens").and_then(Value::as_u64))
    };
    req.header_u64("x-mock-chunks")
        .or_else(|| from_body(body))
        .or_else(|| body.get("parameters").and_then(from_body))
        .unwrap_or(3)
        .min(MAX_OUTPUT_TOKENS)
}

fn model_of(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string()
}

fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

fn data_event(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn named_event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

const DONE: &str = "data: [DONE]\n\n";

/// The arguments of every mock tool call, streamed as these fragments.
pub const TOOL_ARGS: [&str; 3] = ["{\"city\":", "\"Paris\",", "\"days\":3}"];

/// The tool a request makes the mock call, if it declares tools: the one
/// named by `x-mock-tool-call`, or forced by `tool_choice` (OpenAI
/// `{"type":"function","function":{"name"}}` / `"required"`, Anthropic
/// `{"type":"tool","name"}` / `{"type":"any"}`: the first tool).
pub fn forced_tool(req: &Request, body: &Value) -> Option<String> {
    let tools = body.get("tools")?.as_array().filter(|t| !t.is_empty())?;
    if let Some(name) = req.header("x-mock-tool-call") {
        return Some(name.trim().to_string());
    }
    let choice = body.get("tool_choice")?;
    let named = choice
        .pointer("/function/name")
        .or_else(|| choice.get("name"))
        .and_then(Value::as_str);
    if let Some(n) = named {
        return Some(n.to_string());
    }
    let any = choice.as_str() == Some("required")
        || choice.get("type").and_then(Value::as_str) == Some("any");
    if !any {
        return None;
    }
    let first = &tools[0];
    first
        .pointer("/function/name")
        .or_else(|| first.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Answers a (non-`/_mock`) request with faults not yet applied.
pub fn handle(state: &State, req: &Request) -> Reply {
    if let Some(r) = super::scenarios::handle(state, req) {
        return r;
    }
    let p = req.path.as_str();
    let post = req.method == "POST";
    let get = req.method == "GET";
    if post && p.ends_with("/chat/completions") {
        with_json(state, req, chat_completion)
    } else if post && p.ends_with("/completions") {
        with_json(state, req, text_completion)
    } else if post && p.ends_with("/embeddings") {
        with_json(state, req, embeddings)
    } else if post && p.ends_with("/messages") {
        with_json(state, req, anthropic_messages)
    } else if post && p.ends_with("/services/rerank/text-rerank/text-rerank") {
        with_json(state, req, dashscope_rerank)
    } else if post && p.ends_with("/rerank") {
        with_json(state, req, vllm_rerank)
    } else if post && p.contains("/api/v1/services/aigc/") {
        with_json(state, req, dashscope_aigc)
    } else if p.contains("/api/v1/tasks/") && (get || post) {
        dashscope_task(state, req)
    } else if post && p.ends_with("/moderations") {
        with_json(state, req, moderations)
    } else if post && p.ends_with("/audio/speech") {
        audio_speech()
    } else if post && p.ends_with("/images/generations") {
        Reply::json(
            200,
            &json!({"created": now(), "data": [{"url": "http://mock/x.png"}]}),
        )
    } else if get && p.ends_with("/models") {
        models(state)
    } else if get && p.contains("/models/") {
        let id = p.rsplit('/').next().unwrap_or("");
        Reply::json(
            200,
            &json!({"id": id, "object": "model", "created": 0, "owned_by": state.cfg.name}),
        )
    } else {
        error_reply(
            state,
            proto_of(p),
            404,
            &format!("mock-llm: no route for {} {}", req.method, req.path),
        )
    }
}

fn with_json(state: &State, req: &Request, f: fn(&State, &Request, &Value) -> Reply) -> Reply {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) if v.is_object() => f(state, req, &v),
        _ => error_reply(
            state,
            proto_of(&req.path),
            400,
            "mock-llm: request body is not a JSON object",
        ),
    }
}

fn chat_completion(state: &State, req: &Request, body: &Value) -> Reply {
    let p = chat_prompt_tokens(body);
    let c = output_tokens(req, body);
    let model = model_of(body);
    let id = format!("chatcmpl-mock-{}", state.next_id());
    let created = now();
    if let Some(tool) = forced_tool(req, body) {
        return chat_tool_call(body, p, &id, created, &model, &tool);
    }
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    if !wants_stream(body) {
        return Reply::json(
            200,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text_of(c)},
                             "finish_reason": "stop"}],
                "usage": usage,
            }),
        )
        .generated(c, 0);
    }
    let chunk = |choices: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created,
               "model": model, "choices": choices})
    };
    let mut events = Vec::with_capacity(c as usize + 4);
    for i in 0..c.max(1) {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": if c == 0 { "" } else { token(0) }})
        } else {
            json!({"content": token(i)})
        };
        events.push(data_event(&chunk(
            json!([{"index": 0, "delta": delta, "finish_reason": null}]),
        )));
    }
    events.push(data_event(&chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    )));
    if include_usage(body) {
        let mut u = chunk(json!([]));
        u["usage"] = usage;
        events.push(data_event(&u));
    }
    events.push(DONE.to_string());
    Reply::sse(events).generated(c, 0)
}

/// A chat answer that calls `tool` with [`TOOL_ARGS`], streamed one
/// argument fragment per chunk.
fn chat_tool_call(body: &Value, p: u64, id: &str, created: u64, model: &str, tool: &str) -> Reply {
    let c = TOOL_ARGS.len() as u64;
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    let call_id = format!("call_{id}");
    if !wants_stream(body) {
        return Reply::json(
            200,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": call_id, "type": "function",
                                    "function": {"name": tool, "arguments": TOOL_ARGS.concat()}}]},
                    "finish_reason": "tool_calls"}],
                "usage": usage,
            }),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        data_event(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id,
            "type": "function", "function": {"name": tool, "arguments": ""}}]}),
        Value::Null,
    )];
    for frag in TOOL_ARGS {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}),
            Value::Null,
        ));
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    if include_usage(body) {
        events.push(data_event(
            &json!({"id": id, "object": "chat.completion.chunk",
            "created": created, "model": model, "choices": [], "usage": usage}),
        ));
    }
    events.push(DONE.to_string());
    Reply::sse(events)
}

fn text_completion(state: &State, req: &Request, body: &Value) -> Reply {
    let p = body.get("prompt").map(input_words).unwrap_or(0).max(1);
    let c = output_tokens(req, body);
    let model = model_of(body);
    let id = format!("cmpl-mock-{}", state.next_id());
    let created = now();
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    if !wants_stream(body) {
        return Reply::json(
            200,
            &json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text_of(c), "logprobs": null,
                             "finish_reason": "stop"}],
                "usage": usage,
            }),
        )
        .generated(c, 0);
    }
    let chunk = |text: &str, finish: Value| {
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
               "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]})
    };
    let mut events: Vec<String> = (0..c)
        .map(|i| data_event(&chunk(token(i), Value::Null)))
        .collect();
    events.push(data_event(&chunk("", json!("stop"))));
    if include_usage(body) {
        let mut u = chunk("", Value::Null);
        u["choices"] = json!([]);
        u["usage"] = usage;
        events.push(data_event(&u));
    }
    events.push(DONE.to_string());
    Reply::sse(events).generated(c, 0)
}

/// Dimensions of an embedding unless the request asks for `dimensions`.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// The most `dimensions` a request may ask for.
pub const MAX_EMBEDDING_DIMENSIONS: u64 = 4096;

/// FNV-1a then splitmix64: `dims` deterministic floats in [-1, 1], never
/// 0, per input, rounded to 4 decimals (a prefix of any wider vector).
pub fn embedding_of(input: &str, dims: usize) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= b as u64;
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
pub fn base64(bytes: &[u8]) -> String {
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
pub fn base64_f32(v: &[f64]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
    base64(&bytes)
}

fn embeddings(state: &State, _req: &Request, body: &Value) -> Reply {
    let input = body.get("input").cloned().unwrap_or(Value::Null);
    // A string, an array of strings / token arrays, or one token array.
    let inputs: Vec<Value> = match &input {
        Value::Array(a) if a.iter().all(Value::is_number) && !a.is_empty() => vec![input.clone()],
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    if inputs.is_empty() {
        return error_reply(state, Proto::OpenAi, 400, "mock-llm: 'input' is required");
    }
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => EMBEDDING_DIMENSIONS,
        Some(d) => match d.as_u64() {
            Some(n) if (1..=MAX_EMBEDDING_DIMENSIONS).contains(&n) => n as usize,
            _ => {
                let m = format!(
                    "mock-llm: 'dimensions' must be an integer in 1..={MAX_EMBEDDING_DIMENSIONS}"
                );
                return error_reply(state, Proto::OpenAi, 400, &m);
            }
        },
    };
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return error_reply(
                state,
                Proto::OpenAi,
                400,
                "mock-llm: 'encoding_format' must be \"float\" or \"base64\"",
            )
        }
    };
    let p = inputs.iter().map(input_words).sum::<u64>().max(1);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let e = embedding_of(&key, dims);
            let embedding = if base64 {
                json!(base64_f32(&e))
            } else {
                json!(e)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Reply::json(
        200,
        &json!({"object": "list", "data": data, "model": model_of(body),
                "usage": {"prompt_tokens": p, "total_tokens": p}}),
    )
}

/// Anthropic's usage object. A stream carries it twice: in
/// `message_start.message.usage` (output so far: 1) and, cumulative, in
/// `message_delta.usage`, which current API versions also fill with the
/// input and cache counts (SDKs and langchain-anthropic read them there).
pub fn anthropic_usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "cache_creation_input_tokens": 0,
           "cache_read_input_tokens": 0, "output_tokens": output})
}

fn anthropic_messages(state: &State, req: &Request, body: &Value) -> Reply {
    let p = chat_prompt_tokens(body);
    let c = output_tokens(req, body);
    let model = model_of(body);
    let id = format!("msg_mock_{}", state.next_id());
    if let Some(tool) = forced_tool(req, body) {
        return anthropic_tool_use(body, p, &id, &model, &tool);
    }
    if !wants_stream(body) {
        return Reply::json(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text_of(c)}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": anthropic_usage(p, c),
            }),
        )
        .generated(c, 0);
    }
    let mut events = Vec::with_capacity(c as usize + 6);
    events.push(named_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": anthropic_usage(p, 1)}}),
    ));
    events.push(named_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(named_event("ping", &json!({"type": "ping"})));
    for i in 0..c {
        events.push(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": token(i)}}),
        ));
    }
    events.push(named_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(named_event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": anthropic_usage(p, c)}),
    ));
    events.push(named_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    Reply::sse(events).generated(c, 3)
}

/// A Messages answer that calls `tool` with [`TOOL_ARGS`], streamed as
/// one `input_json_delta` per fragment.
fn anthropic_tool_use(body: &Value, p: u64, id: &str, model: &str, tool: &str) -> Reply {
    let c = TOOL_ARGS.len() as u64;
    let tool_id = format!("toolu_{id}");
    if !wants_stream(body) {
        let input: Value = serde_json::from_str(&TOOL_ARGS.concat()).unwrap_or_default();
        return Reply::json(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": tool_id, "name": tool, "input": input}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": anthropic_usage(p, c),
            }),
        );
    }
    let mut events = vec![
        named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": anthropic_usage(p, 1)}}),
        ),
        named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "tool_use", "id": tool_id, "name": tool, "input": {}}}),
        ),
    ];
    for frag in TOOL_ARGS {
        events.push(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": frag}}),
        ));
    }
    events.push(named_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(named_event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": anthropic_usage(p, c)}),
    ));
    events.push(named_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    Reply::sse(events)
}

/// Words that make `/v1/moderations` flag an input (case-insensitive).
pub const FLAGGED_WORDS: [&str; 2] = ["violent", "unsafe"];

/// OpenAI's moderation shape: one result per input; flagged (category
/// `violence`) when the text holds one of [`FLAGGED_WORDS`].
fn moderations(state: &State, _req: &Request, body: &Value) -> Reply {
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                v => v
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
            .collect(),
        _ => vec![String::new()],
    };
    let results: Vec<Value> = texts
        .iter()
        .map(|t| {
            let lower = t.to_lowercase();
            let flagged = FLAGGED_WORDS.iter().any(|w| lower.contains(w));
            json!({"flagged": flagged, "categories": {"violence": flagged},
                   "category_scores": {"violence": if flagged { 0.99 } else { 0.01 }}})
        })
        .collect();
    Reply::json(
        200,
        &json!({"id": format!("modr-mock-{}", state.next_id()),
                "model": "omni-moderation-latest", "results": results}),
    )
}

fn doc_text(d: &Value) -> String {
    match d {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        other => other.to_string(),
    }
}

/// Deterministic rerank: documents sharing more words with the query rank
/// higher; ties keep input order. Returns `(index, score, text)`.
fn rerank(query: &str, docs: &[Value], top_n: Option<u64>) -> Vec<(usize, f64, String)> {
    let q: Vec<String> = query.split_whitespace().map(|w| w.to_lowercase()).collect();
    let mut scored: Vec<(usize, f64, String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let t = doc_text(d);
            let overlap = t
                .split_whitespace()
                .filter(|w| q.contains(&w.to_lowercase()))
                .count() as f64;
            let score = overlap / (overlap + 1.0) * 0.9 + 0.1 / (i as f64 + 2.0);
            ((i), (score * 10_000.0).round() / 10_000.0, t)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = top_n {
        scored.truncate(n as usize);
    }
    scored
}

fn rerank_tokens(query: &str, docs: &[Value]) -> u64 {
    (words(query) + docs.iter().map(|d| words(&doc_text(d))).sum::<u64>()).max(1)
}

fn dashscope_rerank(state: &State, _req: &Request, body: &Value) -> Reply {
    let query = body
        .pointer("/input/query")
        .map(doc_text)
        .unwrap_or_default();
    let docs = body
        .pointer("/input/documents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let top_n = body.pointer("/parameters/top_n").and_then(Value::as_u64);
    let return_docs = body
        .pointer("/parameters/return_documents")
        .and_then(Value::as_bool)
        == Some(true);
    let results: Vec<Value> = rerank(&query, &docs, top_n)
        .into_iter()
        .map(|(i, s, t)| {
            let mut r = json!({"index": i, "relevance_score": s});
            if return_docs {
                r["document"] = json!({"text": t});
            }
            r
        })
        .collect();
    Reply::json(
        200,
        &json!({"output": {"results": results},
                "usage": {"total_tokens": rerank_tokens(&query, &docs)},
                "request_id": request_id(state)}),
    )
}

fn vllm_rerank(state: &State, _req: &Request, body: &Value) -> Reply {
    let query = body.get("query").map(doc_text).unwrap_or_default();
    let docs = body
        .get("documents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let top_n = body.get("top_n").and_then(Value::as_u64);
    let results: Vec<Value> = rerank(&query, &docs, top_n)
        .into_iter()
        .map(|(i, s, t)| json!({"index": i, "relevance_score": s, "document": {"text": t}}))
        .collect();
    Reply::json(
        200,
        &json!({"id": format!("rerank-mock-{}", state.next_id()), "model": model_of(body),
                "results": results,
                "usage": {"total_tokens": rerank_tokens(&query, &docs)}}),
    )
}

fn dashscope_aigc(state: &State, req: &Request, body: &Value) -> Reply {
    let is_async = req
        .header("x-dashscope-async")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("enable"));
    let text_gen =
        req.path.contains("/text-generation/") || req.path.contains("/multimodal-generation/");
    if text_gen && !is_async {
        // Native DashScope text generation, answered synchronously.
        let p = body
            .get("input")
            .map(chat_prompt_tokens)
            .unwrap_or(1)
            .max(body.pointer("/input/prompt").map(input_words).unwrap_or(0));
        let c = output_tokens(req, body);
        let usage = json!({"input_tokens": p, "output_tokens": c, "total_tokens": p + c});
        let output = if body
            .pointer("/parameters/result_format")
            .and_then(Value::as_str)
            == Some("message")
        {
            json!({"choices": [{"finish_reason": "stop",
                                "message": {"role": "assistant", "content": text_of(c)}}]})
        } else {
            json!({"text": text_of(c), "finish_reason": "stop"})
        };
        return Reply::json(
            200,
            &json!({"output": output, "usage": usage, "request_id": request_id(state)}),
        )
        .generated(c, 0);
    }
    let task_id = format!("{}-task-{}", state.cfg.name, state.next_id());
    state.add_task(task_id.clone());
    if is_async {
        Reply::json(
            200,
            &json!({"output": {"task_id": task_id, "task_status": "PENDING"},
                    "request_id": request_id(state)}),
        )
    } else {
        Reply::json(
            200,
            &json!({"output": {"task_id": task_id, "task_status": "SUCCEEDED",
                               "results": [{"url": "http://mock/x.png"}]},
                    "usage": {"image_count": 1},
                    "request_id": request_id(state), "served_by": state.cfg.name}),
        )
    }
}

fn dashscope_task(state: &State, req: &Request) -> Reply {
    let rest = req
        .path
        .split("/api/v1/tasks/")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches('/');
    let (id, cancel) = match rest.strip_suffix("/cancel") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    if id.is_empty() || id.contains('/') || (req.method == "POST") != cancel {
        return error_reply(
            state,
            Proto::DashScope,
            404,
            &format!("mock-llm: no route for {} {}", req.method, req.path),
        );
    }
    if !state.has_task(id) {
        return error_reply(
            state,
            Proto::DashScope,
            404,
            &format!("task {id} was not issued by {}", state.cfg.name),
        );
    }
    if cancel {
        return Reply::json(200, &json!({"request_id": request_id(state)}));
    }
    Reply::json(
        200,
        &json!({"output": {"task_id": id, "task_status": "SUCCEEDED",
                           "results": [{"url": "http://mock/x.png"}]},
                "usage": {"image_count": 1},
                "request_id": request_id(state), "served_by": state.cfg.name}),
    )
}

/// Size of the `/audio/speech` body and of each of its chunks.
pub const SPEECH_BYTES: usize = 4096;
pub const SPEECH_CHUNK: usize = 1024;

/// The deterministic `/audio/speech` bytes (an ID3-tagged "mp3").
pub fn speech_bytes() -> Vec<u8> {
    let mut v = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    let mut x: u32 = 0x1234_5678;
    while v.len() < SPEECH_BYTES {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x & 0xff) as u8);
    }
    v
}

fn audio_speech() -> Reply {
    Reply {
        status: 200,
        content_type: "audio/mpeg",
        headers: Vec::new(),
        body: Body::Stream(
            speech_bytes()
                .chunks(SPEECH_CHUNK)
                .map(<[u8]>::to_vec)
                .collect(),
        ),
        tokens: None,
    }
}

fn models(state: &State) -> Reply {
    let data: Vec<Value> = ["mock-model", "gpt-4o-mini", "qwen-max", "claude-3-5-sonnet"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": state.cfg.name}))
        .collect();
    Reply::json(200, &json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_text() {
        assert_eq!(text_of(0), "");
        assert_eq!(text_of(3), "Hello from mock-llm");
        assert_eq!(text_of(5), "Hello from mock-llm token token");
    }

    #[test]
    fn prompt_word_counts() {
        let b = json!({"system": "be brief", "messages": [
            {"role": "user", "content": "one two  three"},
            {"role": "user", "content": [{"type": "text", "text": "four five"},
                                         {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                          "content": [{"type": "text", "text": "six"}]}]}
        ]});
        assert_eq!(chat_prompt_tokens(&b), 8);
        assert_eq!(chat_prompt_tokens(&json!({"messages": []})), 1);
    }

    #[test]
    fn embeddings_are_deterministic() {
        let a = embedding_of("hello", 8);
        assert_eq!(a.len(), 8);
        assert_eq!(a, embedding_of("hello", 8));
        assert_ne!(a, embedding_of("world", 8));
        assert_eq!(&embedding_of("hello", 64)[..8], &a[..]);
        assert!(embedding_of("hello", 64).iter().all(|x| *x != 0.0));
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
    }

    #[test]
    fn proto_by_path() {
        assert_eq!(proto_of("/anthropic/v1/messages"), Proto::Anthropic);
        assert_eq!(proto_of("/api/v1/tasks/x"), Proto::DashScope);
        assert_eq!(
            proto_of("/api/v1/services/aigc/text2image/image-synthesis"),
            Proto::DashScope
        );
        assert_eq!(
            proto_of("/compatible-mode/v1/chat/completions"),
            Proto::OpenAi
        );
    }

    #[test]
    fn moderations_flag_listed_words() {
        let state = State::new(super::super::Config::default());
        let req = Request {
            method: "POST".into(),
            target: "/v1/moderations".into(),
            path: "/v1/moderations".into(),
            headers: Vec::new(),
            body: Vec::new(),
            minor_version: 1,
            conn: 1,
        };
        let flags = |input: Value| match moderations(&state, &req, &json!({ "input": input })).body
        {
            Body::Full(b) => serde_json::from_slice::<Value>(&b).unwrap()["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["flagged"].as_bool().unwrap())
                .collect::<Vec<_>>(),
            Body::Stream(_) => panic!("streamed"),
        };
        assert_eq!(flags(json!("a VIOLENT plan")), [true]);
        assert_eq!(flags(json!(["hello", "unsafe"])), [false, true]);
    }
}
