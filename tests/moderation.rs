//! Moderation: blocked prompts never forwarded (both protocols, phrases and
//! regexes, an external moderation service), blocked answers replaced or
//! ended with one whole error event, a phrase split across stream events.

mod common;
use common::*;

fn config(upstream: &str, guard: &str) -> String {
    format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{upstream}"

[[services]]
name = "claude"
provider = "anthropic"
base_url = "{upstream}"

[[services]]
name = "guard"
provider = "openai_compatible"
base_url = "{guard}"
api_keys = ["sk-guard"]

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["chat.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
moderation = {{ enabled = true, deny = ["Forbidden Phrase", "re:secret-[0-9]+"] }}

[[model_apis]]
name = "msgs"
scenario = "text"
protocol = "anthropic"
domains = ["msgs.example.com"]
service = {{ mode = "single", target = {{ service = "claude" }} }}
moderation = {{ enabled = true, deny = ["forbidden phrase"] }}

[[model_apis]]
name = "answers"
scenario = "text"
protocol = "openai"
domains = ["answers.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
moderation = {{ enabled = true, deny = ["FROM MOCK"], check_response = true }}

[[model_apis]]
name = "msg-answers"
scenario = "text"
protocol = "anthropic"
domains = ["msg-answers.example.com"]
service = {{ mode = "single", target = {{ service = "claude" }} }}
moderation = {{ enabled = true, deny = ["re:mock-[a-z]+"], check_response = true }}

[[model_apis]]
name = "guarded"
scenario = "text"
protocol = "openai"
domains = ["guarded.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
moderation = {{ enabled = true, service = "guard" }}

[[model_apis]]
name = "off"
scenario = "text"
protocol = "openai"
domains = ["off.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
moderation = {{ enabled = false, deny = ["forbidden phrase"] }}

[[model_apis]]
name = "msg-translated"
scenario = "text"
protocol = "anthropic"
domains = ["msg-translated.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
moderation = {{ enabled = true, deny = ["re:mock-[a-z]+"], check_response = true }}
"#
    )
}

fn post(g: &Gateway, host: &str, body: &serde_json::Value) -> Response {
    let path = if host.starts_with("msg") {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    request(
        g.addr,
        "POST",
        path,
        &[("host", host), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn chat(content: serde_json::Value, stream: bool) -> serde_json::Value {
    serde_json::json!({"model": "m", "stream": stream, "max_tokens": 3,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
}

#[test]
fn blocked_prompts_are_400_in_protocol_shape_and_never_forwarded() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), "http://127.0.0.1:9"));
    let blocked = [
        chat("say the FORBIDDEN phrase now".into(), false),
        chat(
            serde_json::json!([{"type": "text", "text": "fine"}, {"type": "text", "text": "my secret-1234"}]),
            true,
        ),
    ];
    for body in &blocked {
        let r = post(&g, "chat.example.com", body);
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "content_filter");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // Anthropic: the phrase in the system prompt, or in a tool result.
    let msgs = [
        serde_json::json!({"model": "m", "max_tokens": 3, "system": "Forbidden   phrase? no: forbidden phrase",
            "messages": [{"role": "user", "content": "hi"}]}),
        serde_json::json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a forbidden phrase"}]}]}]}),
    ];
    for body in &msgs {
        let r = post(&g, "msgs.example.com", body);
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert!(up.requests().is_empty(), "a blocked prompt was forwarded");

    // What the rules do not match goes through; so does anything on a
    // Model API with moderation off.
    let r = post(
        &g,
        "chat.example.com",
        &chat("secret-abc, forbidden-phrase".into(), false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        &g,
        "off.example.com",
        &chat("the forbidden phrase".into(), false),
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn a_blocked_plain_answer_is_replaced_by_the_error() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), "http://127.0.0.1:9"));
    // mock-llm answers "Hello from mock-llm".
    let r = post(&g, "answers.example.com", &chat("hi".into(), false));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "content_filter");
    assert!(!r.text().contains("mock-llm"));
    // Two tokens ("Hello from") do not match: the answer is relayed whole.
    let body = serde_json::json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&g, "answers.example.com", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from");
    // Anthropic, regex rule.
    let body = serde_json::json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&g, "msg-answers.example.com", &body);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // The prompt itself was fine: both were forwarded.
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn a_blocked_stream_ends_with_one_whole_error_event() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), "http://127.0.0.1:9"));
    // Events: "Hello", " from", " mock-llm": "from mock" spans two events.
    let r = post(&g, "answers.example.com", &chat("hi".into(), true));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert!(text.ends_with("\n\n"), "cut mid-event: {text:?}");
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let events: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect();
    let error = events.last().unwrap();
    assert_eq!(error["error"]["code"], "content_filter", "{text}");
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello from");
    assert!(!text.contains("mock-llm"));
    assert_eq!(
        events.iter().filter(|e| e.get("error").is_some()).count(),
        1
    );

    // Anthropic: `event: error` after whole events.
    let body = serde_json::json!({"model": "m", "stream": true, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&g, "msg-answers.example.com", &body);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("\n\n"), "{text:?}");
    let blocks: Vec<&str> = text.trim_end().split("\n\n").collect();
    let last = blocks.last().unwrap();
    assert!(last.starts_with("event: error\ndata: "), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(last.trim_start_matches("event: error\ndata: ")).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(!text.contains("mock-llm"));
    assert!(text.contains("\"text\":\" from\""), "{text}");
    for b in &blocks {
        let data = b.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str::<serde_json::Value>(data).unwrap();
    }
}

#[test]
fn a_moderation_service_is_asked_before_forwarding() {
    let up = MockLlm::start("up");
    let guard = MockLlm::start("guard");
    let g = Gateway::start(&config(&up.url(), &guard.url()));
    // mock-llm's /v1/moderations flags "violent".
    let r = post(
        &g,
        "guarded.example.com",
        &chat("a violent plan".into(), false),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "content_filter");
    assert!(up.requests().is_empty());
    let asked = guard.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["path"], "/v1/moderations");
    let input: serde_json::Value =
        serde_json::from_str(asked[0]["body"].as_str().unwrap()).unwrap();
    assert!(input["input"].as_str().unwrap().contains("a violent plan"));
    assert!(asked[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "authorization" && h[1] == "Bearer sk-guard"));

    let r = post(
        &g,
        "guarded.example.com",
        &chat("a calm plan".into(), false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests().len(), 1);
    assert_eq!(guard.requests().len(), 2);
}

#[test]
fn an_unreachable_moderation_service_fails_closed() {
    let up = MockLlm::start("up");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = Gateway::start(&config(&up.url(), &format!("http://127.0.0.1:{port}")));
    let r = post(&g, "guarded.example.com", &chat("hello".into(), false));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("moderation service guard"));
    assert!(up.requests().is_empty());
}

#[test]
fn bad_moderation_rules_are_config_errors() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    let text = config("http://127.0.0.1:9", "http://127.0.0.1:9")
        .replace("re:secret-[0-9]+", "re:secret-[0-9")
        .replace("service = \"guard\"", "service = \"nope\"");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model_apis[0].moderation.deny[1]: invalid regex"),
        "{err}"
    );
    assert!(
        err.contains("model_apis[4].moderation.service: unknown service \"nope\""),
        "{err}"
    );
}

#[test]
fn translated_answers_are_moderated_as_the_client_gets_them() {
    // An Anthropic client in front of an OpenAI service: the answer is
    // checked after translation, in the client's protocol.
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), "http://127.0.0.1:9"));
    let body = serde_json::json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&g, "msg-translated.example.com", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(!r.text().contains("mock-llm"));
    // Two tokens pass, translated.
    let body = serde_json::json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&g, "msg-translated.example.com", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"], "Hello from");

    let body = serde_json::json!({"model": "m", "stream": true, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&g, "msg-translated.example.com", &body);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("\n\n"), "{text:?}");
    assert!(text.starts_with("event: message_start"), "{text}");
    let blocks: Vec<&str> = text.trim_end().split("\n\n").collect();
    assert!(
        blocks.last().unwrap().starts_with("event: error\ndata: "),
        "{text}"
    );
    assert_eq!(
        blocks
            .iter()
            .filter(|b| b.starts_with("event: error"))
            .count(),
        1
    );
    assert!(!text.contains("mock-llm"));
    assert!(text.contains("\"text\":\" from\""), "{text}");
    // The upstream was asked in its own protocol.
    let seen = up.requests();
    assert!(
        seen.iter().all(|r| r["path"] == "/v1/chat/completions"),
        "{seen:?}"
    );
}
