//! Request and token limits: exact across both workers, tokens from
//! streamed usage, 429 with retry-after in the protocol's shape, per
//! consumer across Model APIs, per Model API per consumer or whole, kept
//! across a SIGHUP reload.

mod common;
use common::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;

const KEY_A: &str = "mg-limits-a";
const KEY_B: &str = "mg-limits-b";

fn services(upstream: &str) -> String {
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
"#
    )
}

fn api(name: &str, protocol: &str, extra: &str) -> String {
    let service = if protocol == "anthropic" {
        "claude"
    } else {
        "up"
    };
    format!(
        r#"
[[model_apis]]
name = "{name}"
scenario = "text"
protocol = "{protocol}"
domains = ["{name}.example.com"]
service = {{ mode = "single", target = {{ service = "{service}" }} }}
{extra}
"#
    )
}

fn chat_body(stream: bool, max_tokens: u32) -> String {
    format!(
        r#"{{"model":"m","stream":{stream},"stream_options":{{"include_usage":true}},"max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

fn post(addr: std::net::SocketAddr, host: &str, key: Option<&str>, body: &str) -> Response {
    let path = if host.starts_with("msgs") {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    let mut headers = vec![("host", host)];
    if let Some(k) = key {
        headers.push(("x-api-key", k));
    }
    request(addr, "POST", path, &headers, body.as_bytes())
}

/// A keep-alive connection: a request's tokens are charged before the
/// next request on it is read, so sequences on it are deterministic.
struct KeepAlive {
    r: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(g: &Gateway) -> Self {
        KeepAlive {
            r: BufReader::new(connect(g.addr)),
        }
    }

    fn post(&mut self, host: &str, path: &str, body: &str) -> Response {
        let raw = raw_request(
            "POST",
            path,
            &[("host", host), ("content-type", "application/json")],
            body.as_bytes(),
        );
        self.r.get_mut().write_all(&raw).unwrap();
        read_response(&mut self.r, false).unwrap()
    }
}

fn retry_after(r: &Response) -> u64 {
    r.header("retry-after")
        .expect("429 without retry-after")
        .parse()
        .unwrap()
}

#[test]
fn requests_per_minute_is_exact_across_workers_under_concurrency() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        "{}{}",
        services(&up.url()),
        api("chat", "openai", "limits = { requests_per_minute = 25 }")
    ));
    // 8 clients, 12 requests each, each on a new connection so the
    // kernel spreads them over both workers' listeners.
    let statuses = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..12 {
                    let r = post(g.addr, "chat.example.com", None, &chat_body(false, 1));
                    statuses.lock().unwrap().push((r.status, r));
                }
            });
        }
    });
    let statuses = statuses.into_inner().unwrap();
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok + limited.len(), 96, "other statuses: {statuses:?}");
    assert!((24..=25).contains(&ok), "{ok} admitted with a limit of 25");
    assert_eq!(up.requests().len(), ok, "refused requests reached upstream");
    for (_, r) in limited {
        let v = r.json();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        let secs = retry_after(r);
        assert!((1..=61).contains(&secs), "retry-after {secs}");
    }
}

#[test]
fn consumer_limits_hold_across_model_apis_and_api_limits_per_consumer_or_whole() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        r#"{}
[[consumers]]
name = "team-a"
keys = ["{KEY_A}"]
limits = {{ requests_per_minute = 4 }}

[[consumers]]
name = "team-b"
keys = ["{KEY_B}"]
{}{}{}{}"#,
        services(&up.url()),
        api(
            "per",
            "openai",
            r#"auth = { enabled = true, consumers = ["team-a", "team-b"] }
limits = { requests_per_minute = 2 }"#
        ),
        api("whole", "openai", "limits = { requests_per_minute = 3 }"),
        api(
            "free",
            "openai",
            r#"auth = { enabled = true, consumers = ["team-a", "team-b"] }"#
        ),
        api(
            "msgs",
            "anthropic",
            r#"auth = { enabled = true, consumers = ["team-a"] }"#
        ),
    ));
    let body = chat_body(false, 1);
    let msg = r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;
    // Per consumer on "per": 2 each.
    for key in [KEY_A, KEY_B] {
        assert_eq!(
            post(g.addr, "per.example.com", Some(key), &body).status,
            200
        );
        assert_eq!(
            post(g.addr, "per.example.com", Some(key), &body).status,
            200
        );
        let r = post(g.addr, "per.example.com", Some(key), &body);
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Model API per"));
    }
    // team-a has used 2 of its own 4 (the refused one did not count);
    // 2 more anywhere, then 429 everywhere, in each protocol's shape.
    assert_eq!(
        post(g.addr, "free.example.com", Some(KEY_A), &body).status,
        200
    );
    assert_eq!(
        post(g.addr, "msgs.example.com", Some(KEY_A), msg).status,
        200
    );
    let r = post(g.addr, "free.example.com", Some(KEY_A), &body);
    assert_eq!(r.status, 429);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("consumer team-a"));
    let r = post(g.addr, "msgs.example.com", Some(KEY_A), msg);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(retry_after(&r) >= 1);
    // team-b has no consumer limit.
    for _ in 0..5 {
        assert_eq!(
            post(g.addr, "free.example.com", Some(KEY_B), &body).status,
            200
        );
    }
    // "whole" (no auth): one budget of 3 for everyone; a known key still
    // counts against its consumer too.
    assert_eq!(post(g.addr, "whole.example.com", None, &body).status, 200);
    assert_eq!(
        post(g.addr, "whole.example.com", Some(KEY_B), &body).status,
        200
    );
    assert_eq!(post(g.addr, "whole.example.com", None, &body).status, 200);
    assert_eq!(
        post(g.addr, "whole.example.com", Some(KEY_B), &body).status,
        429
    );
    assert_eq!(post(g.addr, "whole.example.com", None, &body).status, 429);
}

#[test]
fn tokens_per_minute_counts_streamed_and_plain_usage() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        "{}{}{}{}",
        services(&up.url()),
        api("chat", "openai", "limits = { tokens_per_minute = 30 }"),
        api("msgs", "anthropic", "limits = { tokens_per_minute = 25 }"),
        api("plain", "openai", "limits = { tokens_per_minute = 20 }"),
    ));
    // OpenAI stream: usage in the last chunk, 1 prompt + 10 output tokens.
    let mut c = KeepAlive::open(&g);
    for i in 0..3 {
        let r = c.post(
            "chat.example.com",
            "/v1/chat/completions",
            &chat_body(true, 10),
        );
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        let data = sse_data(&r.body);
        assert!(data.iter().any(|d| d.contains("\"completion_tokens\":10")));
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    }
    // 33 tokens used of 30: refused until the window frees.
    let r = c.post(
        "chat.example.com",
        "/v1/chat/completions",
        &chat_body(true, 10),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tokens"));
    let secs = retry_after(&r);
    assert!((55..=61).contains(&secs), "retry-after {secs}");

    // Anthropic stream: input in message_start, output in message_delta.
    let msg = r#"{"model":"m","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut c = KeepAlive::open(&g);
    for _ in 0..3 {
        assert_eq!(c.post("msgs.example.com", "/v1/messages", msg).status, 200);
    }
    let r = c.post("msgs.example.com", "/v1/messages", msg);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");

    // Not streamed: usage in the body.
    let mut c = KeepAlive::open(&g);
    assert_eq!(
        c.post(
            "plain.example.com",
            "/v1/chat/completions",
            &chat_body(false, 10)
        )
        .status,
        200
    );
    assert_eq!(
        c.post(
            "plain.example.com",
            "/v1/chat/completions",
            &chat_body(false, 10)
        )
        .status,
        200
    );
    assert_eq!(
        c.post(
            "plain.example.com",
            "/v1/chat/completions",
            &chat_body(false, 10)
        )
        .status,
        429
    );
    // 3 + 3 + 2 reached the upstream.
    assert_eq!(up.requests().len(), 8);
}

#[test]
fn limits_survive_a_reload_and_take_new_values() {
    let up = MockLlm::start("up");
    let config = |rpm: u32| {
        format!(
            "{}\n{}{}",
            server_section(2),
            services(&up.url()),
            api(
                "chat",
                "openai",
                &format!("limits = {{ requests_per_minute = {rpm} }}")
            )
        )
    };
    let g = Gateway::start_raw(&config(4));
    let body = chat_body(false, 1);
    for _ in 0..4 {
        assert_eq!(post(g.addr, "chat.example.com", None, &body).status, 200);
    }
    assert_eq!(post(g.addr, "chat.example.com", None, &body).status, 429);

    let generation = |g: &Gateway| {
        request(g.admin, "GET", "/readyz", &[], b"").json()["config_generation"]
            .as_u64()
            .unwrap()
    };
    let reload = |rpm: u32| {
        let before = generation(&g);
        std::fs::write(&g.config_path, config(rpm)).unwrap();
        g.signal("HUP");
        let deadline = std::time::Instant::now() + TIMEOUT;
        while generation(&g) == before {
            assert!(std::time::Instant::now() < deadline, "reload not applied");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // Same limit after a reload: the 4 admitted still count.
    reload(4);
    assert_eq!(post(g.addr, "chat.example.com", None, &body).status, 429);
    // A higher limit: only the difference is admitted.
    reload(6);
    assert_eq!(post(g.addr, "chat.example.com", None, &body).status, 200);
    assert_eq!(post(g.addr, "chat.example.com", None, &body).status, 200);
    assert_eq!(post(g.addr, "chat.example.com", None, &body).status, 429);
    assert_eq!(up.requests().len(), 6);
}

#[test]
fn zero_limits_are_config_errors() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[[consumers]]\nname = \"c\"\nlimits = {{ requests_per_minute = 0 }}\n{}",
            services("http://127.0.0.1:9"),
            api("chat", "openai", "limits = { tokens_per_minute = 0 }")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("consumers[0].limits.requests_per_minute: must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("model_apis[0].limits.tokens_per_minute: must be at least 1"),
        "{err}"
    );
}
