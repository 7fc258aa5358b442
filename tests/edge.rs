//! Bad input gets a clear error in the protocol's shape, nothing is
//! forwarded, and the gateway keeps serving.

mod common;
use common::*;
use std::io::{BufReader, Read, Write};

fn gateway(upstream: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{upstream}"
connect_timeout_ms = 500

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["chat.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}

[[model_apis]]
name = "msgs"
scenario = "text"
protocol = "anthropic"
domains = ["msgs.example.com"]
service = {{ mode = "single", target = {{ service = "claude" }} }}

[[services]]
name = "claude"
provider = "anthropic"
base_url = "{upstream}"
connect_timeout_ms = 500

[[model_apis]]
name = "ds"
scenario = "image"
protocol = "dashscope"
domains = ["ds.example.com"]
service = {{ mode = "single", target = {{ service = "dsup" }} }}

[[services]]
name = "dsup"
provider = "dashscope"
base_url = "{upstream}"
"#
    ))
}

fn post(g: &Gateway, host: &str, path: &str, body: &[u8]) -> Response {
    request(g.addr, "POST", path, &[("host", host)], body)
}

#[test]
fn bad_bodies_unknown_hosts_and_routes_in_protocol_shapes() {
    let up = MockLlm::start("up");
    let g = gateway(&up.url());
    // No model: OpenAI shape.
    let r = post(
        &g,
        "chat.example.com",
        "/v1/chat/completions",
        br#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("model"));
    // Not JSON: Anthropic shape.
    let r = post(&g, "msgs.example.com", "/v1/messages", b"model=x");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // Model not a string.
    let r = post(
        &g,
        "chat.example.com",
        "/v1/chat/completions",
        br#"{"model":42}"#,
    );
    assert_eq!(r.status, 400);
    // Unknown route on a DashScope API: DashScope shape with request id.
    let r = post(&g, "ds.example.com", "/api/v1/services/nope", b"{}");
    assert_eq!(r.status, 404);
    let v = r.json();
    assert_eq!(v["code"], "NotFound");
    assert_eq!(v["request_id"], r.header("x-request-id").unwrap());
    // Unknown host.
    let r = post(
        &g,
        "nobody.example.com",
        "/v1/chat/completions",
        br#"{"model":"m"}"#,
    );
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no Model API"));
    assert!(up.requests().is_empty(), "bad input was forwarded");
    // Still serving.
    let r = post(
        &g,
        "chat.example.com",
        "/v1/chat/completions",
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn upstream_refused_is_a_502_in_protocol_shape() {
    // A port nobody listens on.
    let (_held, refused) = refusing_addr();
    let port = refused.port();
    let g = gateway(&format!("http://127.0.0.1:{port}"));
    let r = post(
        &g,
        "chat.example.com",
        "/v1/chat/completions",
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_connect_failed");
    let r = post(
        &g,
        "msgs.example.com",
        "/v1/messages",
        br#"{"model":"m","messages":[],"max_tokens":1}"#,
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "api_error");
}

#[test]
fn malformed_framing_is_refused_and_closed() {
    let up = MockLlm::start("up");
    let g = gateway(&up.url());
    let cases: [&[u8]; 4] = [
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: chat.example.com\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: chat.example.com\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: chat.example.com\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nhost: chat.example.com\r\nx: a\r\n folded\r\n\r\n",
    ];
    for raw in cases {
        let mut s = connect(g.addr);
        s.write_all(raw).unwrap();
        let mut r = BufReader::new(s);
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(resp.header("connection"), Some("close"));
        let mut rest = Vec::new();
        assert_eq!(
            r.read_to_end(&mut rest).unwrap_or(0),
            0,
            "connection not closed"
        );
    }
    assert!(up.requests().is_empty());
}

#[test]
fn limits_431_413_and_408() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&format!(
        r#"{}
[server.limits]
max_header_bytes = 2048
max_body_bytes = 1000
header_read_timeout_ms = 300
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        server_section(1),
        url = up.url()
    ));
    let big = "a".repeat(4000);
    let r = request(g.addr, "GET", "/v1/models", &[("x-big", &big)], b"");
    assert_eq!(r.status, 431);
    let r = g.post(
        "/v1/chat/completions",
        &format!(r#"{{"model":"m","pad":"{}"}}"#, "x".repeat(2000)),
    );
    assert_eq!(r.status, 413);
    // Slow head: half a request line, then nothing.
    let mut s = connect(g.addr);
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 408);
    assert!(up.requests().is_empty());
}
