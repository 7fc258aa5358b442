//! Fallback: the attempt order, what triggers the next attempt, the
//! `x-modelgate-fallback` count, first packet timeout, outlier ejection.

mod common;
use common::*;
use std::time::{Duration, Instant};

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

fn services(ups: &[&MockLlm]) -> String {
    ups.iter()
        .map(|u| {
            format!(
                "[[services]]\nname = \"{}\"\nprovider = \"openai_compatible\"\nbase_url = \"{}\"\nconnect_timeout_ms = 500\ntimeout_ms = 3000\noutlier_detection = {{ consecutive_failures = 0 }}\n",
                u.name,
                u.url()
            )
        })
        .collect()
}

fn api(primary: &str, fallbacks: &[&str], first_packet_ms: u64) -> String {
    let targets: Vec<String> = fallbacks
        .iter()
        .map(|f| format!("{{ service = \"{f}\" }}"))
        .collect();
    format!(
        r#"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
first_packet_timeout_ms = {first_packet_ms}
service = {{ mode = "single", target = {{ service = "{primary}" }} }}
fallback = {{ enabled = true, targets = [{}] }}
"#,
        targets.join(", ")
    )
}

fn fail_on(target: &str, header: (&'static str, &'static str)) -> Vec<(&'static str, String)> {
    vec![
        (header.0, header.1.to_string()),
        ("x-mock-fault-target", target.to_string()),
    ]
}

fn post_with(g: &Gateway, body: &str, headers: &[(&str, String)]) -> Response {
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    request(g.addr, "POST", "/v1/chat/completions", &h, body.as_bytes())
}

#[test]
fn each_retryable_status_falls_back_and_is_counted() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let g = Gateway::start(&format!("{}{}", services(&[&a, &b]), api("a", &["b"], 0)));
    for status in ["429", "500", "502", "503"] {
        let r = post_with(&g, CHAT, &fail_on("a", ("x-mock-status", status)));
        assert_eq!(r.status, 200, "{status}: {}", r.text());
        assert_eq!(r.header("x-mock-name"), Some("b"), "{status}");
        assert_eq!(r.header("x-modelgate-fallback"), Some("1"), "{status}");
    }
    // A 4xx other than 429 is the client's problem: no fallback.
    let r = post_with(&g, CHAT, &fail_on("a", ("x-mock-status", "400")));
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-mock-name"), Some("a"));
    assert_eq!(r.header("x-modelgate-fallback"), Some("0"));
    // No failure: the primary answers, header says 0.
    let r = post_with(&g, CHAT, &[]);
    assert_eq!(
        (r.header("x-mock-name"), r.header("x-modelgate-fallback")),
        (Some("a"), Some("0"))
    );
    // The body each attempt got is the client's, whole.
    let seen = b.requests();
    assert_eq!(seen.len(), 4);
    let sent: serde_json::Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["messages"][0]["content"], "hi");
}

#[test]
fn chain_of_three_and_the_last_error_when_all_fail() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let c = MockLlm::start("c");
    let g = Gateway::start(&format!(
        "{}{}",
        services(&[&a, &b, &c]),
        api("a", &["b", "c"], 0)
    ));
    let r = post_with(
        &g,
        CHAT,
        &[
            ("x-mock-status", "503".into()),
            ("x-mock-fault-target", "a,b".into()),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-name"), Some("c"));
    assert_eq!(r.header("x-modelgate-fallback"), Some("2"));
    // All fail: the last upstream's own error reaches the client.
    let r = post_with(&g, CHAT, &[("x-mock-status", "502".into())]);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-mock-name"), Some("c"));
    assert_eq!(r.header("x-modelgate-fallback"), Some("2"));
    assert!(r.json()["error"]["message"].is_string());
}

#[test]
fn connect_refused_falls_back_and_all_refused_is_a_gateway_502() {
    let b = MockLlm::start("b");
    let (_held, dead) = refusing_addr();
    let dead_service = format!(
        "[[services]]\nname = \"dead\"\nprovider = \"openai_compatible\"\nbase_url = \"http://{dead}\"\noutlier_detection = {{ consecutive_failures = 0 }}\n"
    );
    let g = Gateway::start(&format!(
        "{dead_service}{}{}",
        services(&[&b]),
        api("dead", &["b"], 0)
    ));
    let r = post_with(&g, CHAT, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-modelgate-fallback"), Some("1"));
    let g = Gateway::start(&format!("{dead_service}{}", api("dead", &["dead"], 0)));
    let r = post_with(&g, CHAT, &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_connect_failed");
    assert_eq!(r.header("x-modelgate-fallback"), Some("1"));
}

#[test]
fn first_packet_timeout_falls_back_then_504() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let g = Gateway::start(&format!("{}{}", services(&[&a, &b]), api("a", &["b"], 300)));
    // Head sent at once, first body byte late: held back, then abandoned.
    let start = Instant::now();
    let r = post_with(&g, STREAM, &fail_on("a", ("x-mock-first-byte-ms", "2000")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-name"), Some("b"));
    assert_eq!(r.header("x-modelgate-fallback"), Some("1"));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(sse_data(&r.body).last().unwrap(), "[DONE]");
    // The abandoned upstream connection was closed, not pooled.
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.stats()["connections_open"].as_u64() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "abandoned connection still open: {}",
            a.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Head itself late: same.
    let r = post_with(&g, STREAM, &fail_on("a", ("x-mock-delay-ms", "2000")));
    assert_eq!(r.header("x-mock-name"), Some("b"));
    // Every target too slow: 504 in the protocol's shape.
    let r = post_with(&g, STREAM, &[("x-mock-first-byte-ms", "2000".into())]);
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["code"], "first_packet_timeout");
    // Non-streaming requests are not subject to it.
    let r = post_with(&g, CHAT, &fail_on("a", ("x-mock-delay-ms", "600")));
    assert_eq!(r.header("x-mock-name"), Some("a"));
}

#[test]
fn client_hang_up_mid_stream_closes_the_upstream_connection() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!("{}{}", services(&[&up]), api("up", &[], 0)));
    let mut s = connect(g.addr);
    use std::io::{BufRead, Write};
    let req = raw_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunk-delay-ms", "3000"), ("x-mock-chunks", "5")],
        STREAM.as_bytes(),
    );
    s.write_all(&req).unwrap();
    let mut r = std::io::BufReader::new(s);
    let head = read_head_only(&mut r).unwrap();
    assert_eq!(head.status, 200);
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // first chunk size: the stream is live
    assert_eq!(up.stats()["connections_open"], 1);
    drop(r);
    let hung_up = Instant::now();
    while up.stats()["connections_open"].as_u64() != Some(0) {
        assert!(
            hung_up.elapsed() < Duration::from_secs(1),
            "upstream still open after 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The gateway keeps serving on that worker.
    assert_eq!(post_with(&g, CHAT, &[]).status, 200);
}

#[test]
fn a_failing_service_is_ejected_while_the_fallback_serves() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let config = format!(
        "{}\n[[services]]\nname = \"a\"\nprovider = \"openai_compatible\"\nbase_url = \"{}\"\noutlier_detection = {{ consecutive_failures = 3, ejection_ms = 60000 }}\n{}{}",
        server_section(1),
        a.url(),
        services(&[&b]),
        api("a", &["b"], 0)
    );
    let g = Gateway::start_raw(&config);
    let mut s = connect(g.addr);
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    use std::io::Write;
    for i in 0..10 {
        let req = raw_request(
            "POST",
            "/v1/chat/completions",
            &[("x-mock-status", "503"), ("x-mock-fault-target", "a")],
            CHAT.as_bytes(),
        );
        s.write_all(&req).unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.header("x-mock-name"), Some("b"));
    }
    // Three failures, then a is skipped for the ejection period.
    assert_eq!(a.requests().len(), 3);
    assert_eq!(b.requests().len(), 10);
}
