//! Routing: host → Model API → base path → route; service modes; model
//! rewrite; provider layout and auth; what is and is not forwarded.

mod common;
use common::*;
use serde_json::Value;

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi there"}}]}}"#)
}

#[test]
fn shipped_default_config_answers_chat_and_streams() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/modelgate.toml"
    ))
    .unwrap();
    // Same config, but on port 0 so tests never collide.
    let text = text
        .replace("listen = [\"0.0.0.0:8080\"]", "listen = [\"127.0.0.1:0\"]")
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"");
    let g = Gateway::start_raw(&text);
    let r = g.post("/v1/chat/completions", r#"{"model":"x","messages":[]}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "x");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(r.header("x-request-id").is_some());

    let r = g.post(
        "/v1/chat/completions",
        r#"{"model":"x","stream":true,"messages":[]}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(data.len() >= 4, "{data:?}");

    let r = g.post(
        "/anthropic/v1/messages",
        r#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["type"], "message");
    let r = g.post(
        "/embeddings/v1/embeddings",
        r#"{"model":"e","input":["a","b"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
}

#[test]
fn hosts_base_paths_and_routes() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"

[[model_apis]]
name = "any"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up", model = "from-any" }} }}

[[model_apis]]
name = "exact"
scenario = "text"
protocol = "openai"
domains = ["api.example.com"]
service = {{ mode = "single", target = {{ service = "up", model = "from-exact" }} }}

[[model_apis]]
name = "exact-team"
scenario = "text"
protocol = "openai"
domains = ["api.example.com"]
base_path = "/team"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "up", model = "from-team" }} }}

[[model_apis]]
name = "suffix"
scenario = "text"
protocol = "openai"
domains = ["*.corp.example.com"]
service = {{ mode = "single", target = {{ service = "up", model = "from-suffix" }} }}

[[model_apis]]
name = "keep-base"
scenario = "text"
protocol = "openai"
domains = ["keep.example.com"]
base_path = "/keep"
service = {{ mode = "single", target = {{ service = "up", model = "from-keep" }} }}
"#,
        url = up.url()
    ));
    let body = chat("client-model");
    let call = |host: &str, path: &str| {
        request(
            g.addr,
            "POST",
            path,
            &[("host", host), ("content-type", "application/json")],
            body.as_bytes(),
        )
    };
    let cases = [
        (
            "api.example.com",
            "/v1/chat/completions",
            "from-exact",
            "/v1/chat/completions",
        ),
        (
            "API.Example.com:8443",
            "/v1/chat/completions",
            "from-exact",
            "/v1/chat/completions",
        ),
        (
            "api.example.com",
            "/team/v1/chat/completions",
            "from-team",
            "/v1/chat/completions",
        ),
        (
            "x.corp.example.com",
            "/v1/completions",
            "from-suffix",
            "/v1/completions",
        ),
        (
            "other.org",
            "/v1/chat/completions",
            "from-any",
            "/v1/chat/completions",
        ),
        (
            "keep.example.com",
            "/keep/v1/chat/completions",
            "from-keep",
            "/keep/v1/chat/completions",
        ),
    ];
    for (host, path, model, upstream_path) in cases {
        up.clear();
        let r = call(host, path);
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        assert_eq!(r.json()["model"], model, "{host}{path}");
        let seen = up.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["path"], upstream_path, "{host}{path}");
        let sent: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(sent["model"], model);
        assert_eq!(sent["messages"][0]["content"], "hi there");
    }
    // Unknown route on a known API: 404 in OpenAI's shape, nothing forwarded.
    up.clear();
    let r = call("api.example.com", "/v1/nope");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"].is_string());
    // A host no Model API serves (no `*` for keep.example.com paths outside /keep).
    let r = call("keep.example.com", "/v1/chat/completions");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "route_not_found");
    // Method not allowed.
    let r = request(g.addr, "GET", "/v1/chat/completions", &[], b"");
    assert_eq!(r.status, 405);
    assert!(up.requests().is_empty());
}

#[test]
fn by_model_glob_and_by_weight_split() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "a"
provider = "vllm"
base_url = "{a}"
[[services]]
name = "b"
provider = "vllm"
base_url = "{b}"

[[model_apis]]
name = "by-model"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "by_model", rules = [
  {{ pattern = "gpt-4?-*", service = "a" }},
  {{ pattern = "qwen*", service = "b", model = "qwen-max" }},
] }}

[[model_apis]]
name = "weighted"
scenario = "text"
protocol = "openai"
domains = ["w.example.com"]
service = {{ mode = "by_weight", targets = [
  {{ service = "a", weight = 1 }},
  {{ service = "b", weight = 3 }},
] }}
"#,
        a = a.url(),
        b = b.url()
    ));
    let r = g.post("/v1/chat/completions", &chat("gpt-4o-mini"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-name"), Some("a"));
    let r = g.post("/v1/chat/completions", &chat("qwen-turbo"));
    assert_eq!(r.header("x-mock-name"), Some("b"));
    assert_eq!(r.json()["model"], "qwen-max");
    // No rule matches: 404 model_not_found, in OpenAI's shape.
    let r = g.post("/v1/chat/completions", &chat("gpt-4"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");

    // by_weight over one keep-alive connection per worker: 1:3.
    let mut counts = [0usize; 2];
    let mut s = connect(g.addr);
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    let body = chat("m");
    for _ in 0..400 {
        use std::io::Write;
        s.write_all(&raw_request(
            "POST",
            "/v1/chat/completions",
            &[("host", "w.example.com")],
            body.as_bytes(),
        ))
        .unwrap();
        let r = read_response(&mut reader, false).unwrap();
        assert_eq!(r.status, 200);
        counts[(r.header("x-mock-name") == Some("b")) as usize] += 1;
    }
    assert_eq!(
        counts,
        [100, 300],
        "one connection stays on one worker, whose SWRR is exact"
    );
}

#[test]
fn provider_auth_replaces_client_credentials() {
    let up = MockLlm::start("up");
    std::env::set_var("MG_TEST_KEY_A", "sk-aaa");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "claude"
provider = "anthropic"
base_url = "{url}"
api_keys = ["sk-ant-1", "sk-ant-2"]
headers = {{ x-team = "blue" }}

[[services]]
name = "ds"
provider = "dashscope"
base_url = "{url}"
api_keys = ["sk-ds"]

[[model_apis]]
name = "messages"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "claude" }} }}

[[model_apis]]
name = "ds-chat"
scenario = "text"
protocol = "openai"
domains = ["ds.example.com"]
service = {{ mode = "single", target = {{ service = "ds" }} }}
"#,
        url = up.url()
    ));
    let msg = r#"{"model":"claude-x","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}"#;
    // Two requests on one keep-alive connection (one worker): keys rotate.
    let mut s = connect(g.addr);
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        use std::io::Write;
        let headers = [
            ("x-api-key", "client-secret"),
            ("authorization", "Bearer client-secret"),
            ("x-request-id", "rid-123"),
            ("anthropic-version", "2023-01-01"),
        ];
        s.write_all(&raw_request(
            "POST",
            "/v1/messages",
            &headers,
            msg.as_bytes(),
        ))
        .unwrap();
        let r = read_response(&mut reader, false).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-request-id"), Some("rid-123"));
    }
    let seen = up.requests();
    let mut keys: Vec<String> = seen
        .iter()
        .map(|r| {
            assert_eq!(r["path"], "/v1/messages");
            let h = r["headers"].as_array().unwrap();
            let get = |n: &str| {
                h.iter()
                    .find(|p| p[0] == n)
                    .map(|p| p[1].as_str().unwrap().to_string())
            };
            assert_eq!(get("anthropic-version").as_deref(), Some("2023-06-01"));
            assert_eq!(h.iter().filter(|p| p[0] == "anthropic-version").count(), 1);
            assert_eq!(get("x-team").as_deref(), Some("blue"));
            assert_eq!(get("x-request-id").as_deref(), Some("rid-123"));
            assert_eq!(get("authorization"), None, "client credential forwarded");
            get("x-api-key").unwrap()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["sk-ant-1", "sk-ant-2"]);
    up.clear();
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("host", "ds.example.com"), ("api-key", "client")],
        chat("qwen").as_bytes(),
    );
    assert_eq!(r.status, 200);
    let seen = up.requests();
    assert_eq!(seen[0]["path"], "/compatible-mode/v1/chat/completions");
    let h = seen[0]["headers"].as_array().unwrap();
    assert!(h
        .iter()
        .any(|p| p[0] == "authorization" && p[1] == "Bearer sk-ds"));
    assert!(!h.iter().any(|p| p[0] == "api-key"));
}
