//! Issue 18 (part): the protocol edges real clients hit — `Allow` on 405,
//! an HTTP/2 preface answered in HTTP/2, JSON errors that say where the
//! body broke, coded bodies refused, connect errors that name the port.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn gateway(up_url: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{up_url}"
connect_timeout_ms = 500
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#
    ))
}

#[test]
fn a_405_says_which_methods_the_path_takes() {
    let up = MockLlm::start("up");
    let g = gateway(&up.url());
    let r = request(g.addr, "GET", "/v1/chat/completions", &[], b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("POST"), "{:?}", r.headers);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
}

#[test]
fn an_http2_preface_is_answered_with_goaway_http_1_1_required() {
    let up = MockLlm::start("up");
    let g = gateway(&up.url());
    let mut s = connect(g.addr);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    // SETTINGS (type 4) on stream 0, then GOAWAY (type 7) with error 0xd.
    assert!(got.len() >= 26, "{got:?}");
    assert_eq!(got[3], 4, "first frame is not SETTINGS: {got:?}");
    let goaway = &got[9..26];
    assert_eq!(goaway[3], 7, "second frame is not GOAWAY: {got:?}");
    assert_eq!(&goaway[13..17], &[0, 0, 0, 0x0d], "{got:?}");
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1"));
}

#[test]
fn a_truncated_body_is_told_where_it_broke() {
    let up = MockLlm::start("up");
    let g = gateway(&up.url());
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        br#"{"model":"x","#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("at byte 12"), "{message}"); // the last byte read
    assert!(message.contains("EOF"), "{message}");
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        b"[1, 2]",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("it is an array"), "{}", r.text());
}

#[test]
fn a_content_encoded_json_body_is_415_not_a_parse_error() {
    let up = MockLlm::start("up");
    let g = gateway(&up.url());
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0],
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("gzip"), "{}", r.text());
    assert!(up.requests().is_empty());
}

#[test]
fn a_connect_error_names_host_and_port() {
    let (_held, addr) = refusing_addr();
    let g = gateway(&format!("http://{addr}"));
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 502, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!("{}:{}", addr.ip(), addr.port())),
        "{message}"
    );
}

/// Refusals the gateway makes itself come in the Model API's protocol,
/// head-level ones (413 declared, 431) included; OpenAI's with no Model API.
#[test]
fn refusals_take_the_model_apis_protocol_shape() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&format!(
        r#"{}
[server.limits]
max_body_bytes = 100000
max_headers = 20
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[services]]
name = "claude"
provider = "anthropic"
base_url = "{url}"
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
"#,
        server_section(1),
        url = up.url()
    ));
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "msgs.example.com",
            "POST",
            "/v1/messages",
            vec![("content-length", "200000")],
            vec![],
            413,
        ),
        (
            "msgs.example.com",
            "POST",
            "/v1/messages",
            many.clone(),
            b"{}".to_vec(),
            431,
        ),
        (
            "msgs.example.com",
            "GET",
            "/v1/messages",
            vec![],
            vec![],
            405,
        ),
        (
            "msgs.example.com",
            "POST",
            "/v1/nowhere",
            vec![],
            b"{}".to_vec(),
            404,
        ),
        (
            "chat.example.com",
            "POST",
            "/v1/chat/completions",
            vec![("content-length", "200000")],
            vec![],
            413,
        ),
        (
            "chat.example.com",
            "POST",
            "/v1/chat/completions",
            many.clone(),
            b"{}".to_vec(),
            431,
        ),
        (
            "nobody.example.com",
            "POST",
            "/v1/chat/completions",
            vec![],
            b"{}".to_vec(),
            404,
        ),
    ];
    for (host, method, path, headers, body, status) in cases {
        let mut hs = vec![("host", host)];
        hs.extend(headers.iter().copied());
        let raw = if headers.iter().any(|(n, _)| *n == "content-length") {
            let mut r = format!("{method} {path} HTTP/1.1\r\n");
            for (n, v) in &hs {
                r.push_str(&format!("{n}: {v}\r\n"));
            }
            r.push_str("\r\n");
            r.into_bytes()
        } else {
            raw_request(method, path, &hs, &body)
        };
        let mut s = connect(g.addr);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&raw).unwrap();
        let r = read_response(&mut std::io::BufReader::new(s), false).unwrap();
        assert_eq!(r.status, status, "{host} {method} {path}: {}", r.text());
        let v = r.json();
        if host.starts_with("msgs") {
            assert_eq!(v["type"], "error", "{host} {path} {status}: {v}");
            assert!(v["error"]["type"].is_string(), "{v}");
        } else {
            assert!(
                v["error"]["message"].is_string(),
                "{host} {path} {status}: {v}"
            );
            assert!(v.get("type").is_none(), "{v}");
        }
    }
}

/// `GET /v1/models` on a text Model API lists the models its routing
/// names, in the Model API's protocol; nothing is forwarded.
#[test]
fn a_text_model_api_lists_the_models_it_routes() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[services]]
name = "claude"
provider = "anthropic"
base_url = "{url}"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["chat.example.com"]
service = {{ mode = "by_model", rules = [
  {{ pattern = "gpt-4o", service = "up" }},
  {{ pattern = "qwen*", service = "up", model = "qwen-max" }},
] }}
fallback = {{ enabled = true, targets = [{{ service = "up", model = "backup-1" }}] }}
[[model_apis]]
name = "msgs"
scenario = "text"
protocol = "anthropic"
domains = ["msgs.example.com"]
service = {{ mode = "single", target = {{ service = "claude", model = "claude-x" }} }}
"#,
        url = up.url()
    ));
    let r = request(
        g.addr,
        "GET",
        "/v1/models",
        &[("host", "chat.example.com")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["backup-1", "gpt-4o", "qwen-max"], "{v}");
    assert_eq!(v["data"][0]["object"], "model");

    let r = request(
        g.addr,
        "GET",
        "/v1/models",
        &[("host", "msgs.example.com")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["id"], "claude-x");
    assert!(up.requests().is_empty(), "forwarded: {:?}", up.requests());
}

/// A large JSON body gets the same answer however TCP splits it: it is held
/// whole (model after the messages, translation too), within a process
/// budget that refuses with 503 + retry-after rather than grow.
#[test]
fn large_json_bodies_are_routed_the_same_however_they_arrive() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&format!(
        r#"{}
[server.limits]
body_memory_bytes = 3145728
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[model_apis]]
name = "msgs"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        server_section(1),
        url = up.url()
    ));
    let prompt = "word ".repeat(400_000); // 2 MB
    let body = format!(
        r#"{{"max_tokens":8,"messages":[{{"role":"user","content":"{prompt}"}}],"model":"late-model"}}"#
    );
    let raw = raw_request(
        "POST",
        "/v1/messages",
        &[("host", "x"), ("content-type", "application/json")],
        body.as_bytes(),
    );
    for piece in [1460usize, 65536, 4099, 1 << 20] {
        let mut s = connect(g.addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for part in raw.chunks(piece) {
            s.write_all(part).unwrap();
        }
        let r = read_response(&mut std::io::BufReader::new(s), false).unwrap();
        assert_eq!(r.status, 200, "pieces of {piece}: {}", r.text());
        assert_eq!(r.json()["type"], "message", "{}", r.text());
    }
    // Translated for the OpenAI upstream, with the model it named.
    let sent: serde_json::Value =
        serde_json::from_str(up.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "late-model");

    // Budget: one client holds 2 MB of the 3 MB while it sends slowly; a
    // second 2 MB body is refused at once, and admitted once the first is done.
    let mut slow = connect(g.addr);
    slow.write_all(&raw[..raw.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut s = connect(g.addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&raw);
    let r = read_response(&mut std::io::BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["type"], "error", "{}", r.text());
    slow.write_all(&raw[raw.len() / 2..]).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_response(&mut std::io::BufReader::new(slow), false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        g.addr,
        "POST",
        "/v1/messages",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// CORS per Model API: the gateway answers preflights (nothing forwarded),
/// marks answers to admitted origins, refuses others; off by default.
#[test]
fn cors_preflights_are_answered_by_the_gateway() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[model_apis]]
name = "web"
scenario = "text"
protocol = "openai"
domains = ["web.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
cors = {{ origins = ["https://app.example.com"], headers = ["authorization", "content-type"], max_age_s = 600 }}
[[model_apis]]
name = "plain"
scenario = "text"
protocol = "openai"
domains = ["plain.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        url = up.url()
    ));
    let preflight = |host: &str, origin: &str| {
        request(
            g.addr,
            "OPTIONS",
            "/v1/chat/completions",
            &[
                ("host", host),
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
    };
    let r = preflight("web.example.com", "https://app.example.com");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.body.is_empty());

    let r = preflight("web.example.com", "https://evil.example.com");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.header("access-control-allow-origin").is_none());

    // Off by default: a preflight is just a method the route does not take.
    let r = preflight("plain.example.com", "https://app.example.com");
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(up.requests().is_empty(), "forwarded: {:?}", up.requests());

    // The call itself: its answer names the admitted origin.
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("host", "web.example.com"),
            ("origin", "https://app.example.com"),
            ("content-type", "application/json"),
        ],
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("vary"), Some("origin"));
}
