//! Anthropic ⇄ OpenAI translation through the real binary and a real
//! mock-llm: an `anthropic` Model API in front of an `openai_compatible`
//! service, an `openai` Model API in front of an `anthropic` service, and
//! OpenAI pass-through streams asked for usage behind the client's back.

mod common;
use common::*;
use serde_json::{json, Value};

fn gateway(up: &MockLlm) -> Gateway {
    Gateway::start(&format!(
        r#"
[[services]]
name = "oa"
provider = "openai_compatible"
base_url = "{url}"
api_keys = ["sk-oa"]
timeout_ms = 3000

[[services]]
name = "claude"
provider = "anthropic"
base_url = "{url}"
api_keys = ["sk-ant"]
timeout_ms = 3000

[[model_apis]]
name = "messages"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
base_path = "/a"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "oa", model = "gpt-4o-mini" }} }}

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
base_path = "/o"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "claude" }} }}

[[services]]
name = "builtin"
provider = "mock"

[[model_apis]]
name = "builtin"
scenario = "text"
protocol = "openai"
domains = ["*"]
base_path = "/m"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "builtin" }} }}

[[model_apis]]
name = "plain"
scenario = "text"
protocol = "openai"
domains = ["*"]
base_path = "/p"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "oa" }} }}
"#,
        url = up.url()
    ))
}

fn post(g: &Gateway, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request(g.addr, "POST", path, &h, body.to_string().as_bytes())
}

/// `(event name, data)` of each Anthropic event in an SSE body.
fn anthropic_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(body);
    assert!(
        text.ends_with("\n\n"),
        "stream not ended by a whole event: {text:?}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = None;
            for l in e.lines() {
                if let Some(n) = l.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = l.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(d).unwrap());
                }
            }
            let data = data.unwrap_or_else(|| panic!("event without data: {e:?}"));
            let name = name.unwrap_or_else(|| panic!("event without name: {e:?}"));
            assert_eq!(data["type"], name.as_str(), "{e}");
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The `data:` payloads of an OpenAI SSE body (`[DONE]` as a string).
fn openai_chunks(body: &[u8]) -> Vec<Value> {
    sse_data(body)
        .into_iter()
        .map(|d| {
            if d == "[DONE]" {
                Value::String(d)
            } else {
                serde_json::from_str(&d).unwrap()
            }
        })
        .collect()
}

/// The one request the mock received: path, header lookup, JSON body.
fn upstream_request(up: &MockLlm) -> (String, Vec<(String, String)>, Value) {
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    let headers = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let body = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    (r["path"].as_str().unwrap().to_string(), headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

const WEATHER_TOOL_A: &str = r#"{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}"#;
const WEATHER_TOOL_O: &str = r#"{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}"#;
const ARGS: &str = r#"{"city":"Paris","days":3}"#;

// ---------------------------------------------------------------------------
// Anthropic client → OpenAI service

#[test]
fn anthropic_message_through_an_openai_service() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let r = post(
        &g,
        "/a/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &json!({"model": "claude-sonnet", "max_tokens": 3, "system": "be brief",
                "messages": [{"role": "user", "content": "hello there"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert!(r.header("x-request-id").is_some());
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("chatcmpl-mock-"), "{id}");
    assert_eq!(
        v,
        json!({"id": id, "type": "message", "role": "assistant", "model": "gpt-4o-mini",
               "content": [{"type": "text", "text": "Hello from mock-llm"}],
               "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 4, "output_tokens": 3}})
    );
    let (path, headers, body) = upstream_request(&up);
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(header(&headers, "authorization"), Some("Bearer sk-oa"));
    assert_eq!(
        body,
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"}], "max_tokens": 3})
    );
}

#[test]
fn anthropic_stream_through_an_openai_service() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let r = post(
        &g,
        "/a/v1/messages",
        &[],
        &json!({"model": "c", "max_tokens": 3, "stream": true,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "one two"}]}]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let evs = anthropic_events(&r.body);
    assert_eq!(
        names(&evs),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[0].1["message"]["model"], "gpt-4o-mini");
    assert_eq!(
        evs[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let text: String = evs[2..5]
        .iter()
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from mock-llm");
    // Usage came from the chunk the gateway asked the upstream for.
    assert_eq!(
        evs[6].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"input_tokens": 2, "output_tokens": 3}})
    );
    let (_, _, body) = upstream_request(&up);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "one two"}])
    );
}

#[test]
fn anthropic_tool_use_round_trip_through_an_openai_service() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL_A}]")).unwrap();
    let r = post(
        &g,
        "/a/v1/messages",
        &[],
        &json!({"model": "c", "max_tokens": 50, "tools": tools,
                "tool_choice": {"type": "tool", "name": "get_weather"},
                "messages": [{"role": "user", "content": "weather in Paris?"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let call = &v["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"city": "Paris", "days": 3}));
    let id = call["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("call_chatcmpl-mock-"), "{id}");
    let (_, _, sent) = upstream_request(&up);
    assert_eq!(
        sent["tools"],
        serde_json::from_str::<Value>(&format!("[{WEATHER_TOOL_O}]")).unwrap()
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );

    // The client answers the call; the id travels back unchanged.
    up.clear();
    let r = post(
        &g,
        "/a/v1/messages",
        &[],
        &json!({"model": "c", "max_tokens": 3, "tools": tools,
                "messages": [
                    {"role": "user", "content": "weather in Paris?"},
                    {"role": "assistant", "content": [call]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": id, "content": "sunny 18C"}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["content"][0]["text"], "Hello from mock-llm");
    // "weather in Paris?" + "sunny 18C": 5 words.
    assert_eq!(v["usage"]["input_tokens"], 5);
    let (_, _, sent) = upstream_request(&up);
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "get_weather", "arguments": ARGS}}]},
            {"role": "tool", "content": "sunny 18C", "tool_call_id": id}])
    );
}

#[test]
fn anthropic_tool_use_streamed_as_input_json_deltas() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL_A}]")).unwrap();
    let r = post(
        &g,
        "/a/v1/messages",
        &[("x-mock-tool-call", "get_weather")],
        &json!({"model": "c", "max_tokens": 50, "stream": true, "tools": tools,
                "messages": [{"role": "user", "content": "weather?"}]}),
    );
    assert_eq!(r.status, 200);
    let evs = anthropic_events(&r.body);
    assert_eq!(
        names(&evs),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let block = &evs[1].1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({}));
    let args: String = evs[2..5]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(args, ARGS);
    assert_eq!(evs[6].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs[6].1["usage"]["output_tokens"], 3);
}

#[test]
fn openai_errors_reach_anthropic_clients_in_their_shape() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    for (status, kind, stream) in [
        ("429", "rate_limit_error", false),
        ("500", "api_error", false),
        ("429", "rate_limit_error", true),
    ] {
        let r = post(
            &g,
            "/a/v1/messages",
            &[("x-mock-status", status)],
            &json!({"model": "c", "max_tokens": 3, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(r.status.to_string(), status);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            json!({"type": "error", "error": {"type": kind,
                   "message": format!("mock-llm up: injected status {status}")}})
        );
    }
}

#[test]
fn openai_stream_reset_ends_the_anthropic_stream_with_an_error_event() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let r = post(
        &g,
        "/a/v1/messages",
        &[("x-mock-reset-after", "2")],
        &json!({"model": "c", "max_tokens": 5, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200);
    let evs = anthropic_events(&r.body);
    let n = names(&evs);
    assert_eq!(n[0], "message_start");
    assert!(n.contains(&"content_block_delta"), "{n:?}");
    assert!(!n.contains(&"message_stop"), "{n:?}");
    assert_eq!(*n.last().unwrap(), "error");
    assert_eq!(evs.last().unwrap().1["error"]["type"], "api_error");
}

#[test]
fn bad_anthropic_bodies_are_refused_in_anthropic_shape() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    for (body, says) in [
        (
            json!({"model": "c", "max_tokens": 3, "messages": "hi"}),
            "invalid Messages request",
        ),
        (
            json!({"model": "c", "max_tokens": 3, "messages": [
                {"role": "user", "content": [{"type": "hologram", "data": "x"}]}]}),
            "content block type \"hologram\"",
        ),
    ] {
        let r = post(&g, "/a/v1/messages", &[], &body);
        assert_eq!(r.status, 400);
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(says), "{m}");
    }
    assert!(up.requests().is_empty(), "nothing is forwarded");
}

// ---------------------------------------------------------------------------
// OpenAI client → Anthropic service

#[test]
fn openai_chat_through_an_anthropic_service() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let r = post(
        &g,
        "/o/v1/chat/completions",
        &[],
        &json!({"model": "claude-x", "max_tokens": 3, "temperature": 0.2, "stop": ["END"],
                "messages": [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": "hello there"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "claude-x");
    assert_eq!(
        v["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "Hello from mock-llm"},
                "finish_reason": "stop"}])
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );
    let (path, headers, body) = upstream_request(&up);
    assert_eq!(path, "/v1/messages");
    assert_eq!(header(&headers, "x-api-key"), Some("sk-ant"));
    assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(header(&headers, "authorization"), None);
    assert_eq!(
        body,
        json!({"model": "claude-x", "max_tokens": 3, "system": "be brief",
               "messages": [{"role": "user", "content": "hello there"}],
               "stop_sequences": ["END"], "temperature": 0.2})
    );
}

#[test]
fn openai_stream_through_an_anthropic_service() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    for asked in [false, true] {
        let mut body = json!({"model": "claude-x", "max_tokens": 3, "stream": true,
            "messages": [{"role": "user", "content": "one two"}]});
        if asked {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = post(&g, "/o/v1/chat/completions", &[], &body);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let chunks = openai_chunks(&r.body);
        assert_eq!(chunks.last().unwrap(), "[DONE]");
        let objects = &chunks[..chunks.len() - 1];
        for c in objects {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert!(c["id"].as_str().unwrap().starts_with("msg_mock_"));
        }
        assert_eq!(
            objects[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let text: String = objects
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from mock-llm");
        let finish: Vec<&Value> = objects
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")]);
        let usage: Vec<&Value> = objects
            .iter()
            .filter(|c| c.get("usage").is_some())
            .collect();
        if asked {
            assert_eq!(usage.len(), 1);
            assert_eq!(usage[0]["choices"], json!([]));
            assert_eq!(
                usage[0]["usage"],
                json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
            );
        } else {
            assert!(usage.is_empty(), "{objects:?}");
        }
        // Anthropic's `ping` reaches the client as an SSE comment.
        assert!(r.text().contains("\n\n: ping\n\n"), "{}", r.text());
    }
}

#[test]
fn openai_tool_calls_through_an_anthropic_service() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL_O}]")).unwrap();
    let r = post(
        &g,
        "/o/v1/chat/completions",
        &[],
        &json!({"model": "claude-x", "tools": tools, "tool_choice": "required",
                "messages": [{"role": "user", "content": "weather?"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    let id = call["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("toolu_msg_mock_"), "{id}");
    assert_eq!(
        call,
        &json!({"id": id, "type": "function", "function": {"name": "get_weather", "arguments": ARGS}})
    );
    let (_, _, sent) = upstream_request(&up);
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(
        sent["tools"],
        serde_json::from_str::<Value>(&format!("[{WEATHER_TOOL_A}]")).unwrap()
    );

    // Streamed: the arguments arrive in fragments of one tool call.
    let r = post(
        &g,
        "/o/v1/chat/completions",
        &[("x-mock-tool-call", "get_weather")],
        &json!({"model": "claude-x", "tools": tools, "stream": true,
                "messages": [{"role": "user", "content": "weather?"},
                             {"role": "assistant", "content": null, "tool_calls": [call]},
                             {"role": "tool", "tool_call_id": id, "content": "18C"}]}),
    );
    assert_eq!(r.status, 200);
    let chunks = openai_chunks(&r.body);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c[0]["index"] == 0));
    let args: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, ARGS);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    // The history went up as Anthropic blocks with the ids kept.
    let reqs = up.requests();
    let sent: Value = serde_json::from_str(reqs[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather",
                                               "input": {"city": "Paris", "days": 3}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "18C"}]}])
    );
}

#[test]
fn anthropic_errors_reach_openai_clients_in_their_shape() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    for (status, kind) in [
        ("429", "rate_limit_error"),
        ("500", "api_error"),
        ("400", "invalid_request_error"),
    ] {
        let r = post(
            &g,
            "/o/v1/chat/completions",
            &[("x-mock-status", status)],
            &json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(r.status.to_string(), status);
        let upstream_type = match status {
            "429" => "rate_limit_error",
            "500" => "api_error",
            _ => "invalid_request_error",
        };
        assert_eq!(
            r.json(),
            json!({"error": {"message": format!("mock-llm up: injected status {status}"),
                             "type": kind, "param": null, "code": upstream_type}})
        );
    }
    // A reset mid-stream ends the OpenAI stream with an error chunk.
    let r = post(
        &g,
        "/o/v1/chat/completions",
        &[("x-mock-reset-after", "3")],
        &json!({"model": "claude-x", "stream": true, "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200);
    let chunks = openai_chunks(&r.body);
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    assert!(
        chunks[chunks.len() - 2]["error"]["message"].is_string(),
        "{chunks:?}"
    );
    // A body the translation cannot carry: 400 in OpenAI's shape.
    up.clear();
    let r = post(
        &g,
        "/o/v1/chat/completions",
        &[],
        &json!({"model": "claude-x", "n": 2, "messages": []}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(up.requests().is_empty());
}

// ---------------------------------------------------------------------------
// OpenAI pass-through: usage asked for, the extra chunk hidden

#[test]
fn openai_streams_ask_for_usage_and_hide_it_unless_asked() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    for asked in [false, true] {
        up.clear();
        let mut body = json!({"model": "m", "max_tokens": 2, "stream": true,
            "messages": [{"role": "user", "content": "a b c"}]});
        if asked {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = post(&g, "/p/v1/chat/completions", &[], &body);
        assert_eq!(r.status, 200);
        let (_, _, sent) = upstream_request(&up);
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        let chunks = openai_chunks(&r.body);
        assert_eq!(chunks.last().unwrap(), "[DONE]");
        let usage: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
        if asked {
            assert_eq!(usage.len(), 1);
            assert_eq!(usage[0]["usage"]["total_tokens"], 5);
        } else {
            assert!(usage.is_empty(), "{chunks:?}");
            // Every content chunk still arrives.
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(text, "Hello from");
        }
        // The in-process mock provider is asked and filtered the same way.
        let r = post(&g, "/m/v1/chat/completions", &[], &body);
        let chunks = openai_chunks(&r.body);
        let usage = chunks.iter().filter(|c| c.get("usage").is_some()).count();
        assert_eq!(usage, asked as usize, "{chunks:?}");
        assert_eq!(chunks.last().unwrap(), "[DONE]");
    }
}
