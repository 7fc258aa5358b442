//! Streaming in both directions: SSE relayed event by event as it arrives,
//! chunked request bodies, pipelining, pool reuse, and faults mid-stream.

mod common;
use common::*;
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

fn gateway(up: &MockLlm) -> Gateway {
    Gateway::start(&format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
timeout_ms = 1500

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}

[[model_apis]]
name = "msgs"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
base_path = "/anthropic"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "claude" }} }}

[[services]]
name = "claude"
provider = "anthropic"
base_url = "{url}"
timeout_ms = 1500
"#,
        url = up.url()
    ))
}

const STREAM: &str =
    r#"{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn sse_events_arrive_as_the_upstream_sends_them() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let mut s = connect(g.addr);
    let req = raw_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunk-delay-ms", "150")],
        STREAM.as_bytes(),
    );
    let start = Instant::now();
    s.write_all(&req).unwrap();
    let mut r = BufReader::new(s);
    let (resp, chunks) = read_chunks(&mut r).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&resp.body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let tokens: String = data
        .iter()
        .filter(|d| d.starts_with('{'))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(tokens, "Hello from mock-llm token token");
    // Relayed as they came: the first event well before the last.
    let first = chunks.first().unwrap().0.duration_since(start);
    let last = chunks.last().unwrap().0.duration_since(start);
    assert!(
        last - first >= Duration::from_millis(600),
        "buffered: first {first:?} last {last:?}"
    );
    // Every chunk holds whole events only.
    for (_, c) in &chunks {
        assert!(
            c.ends_with(b"\n\n"),
            "chunk cut mid-event: {:?}",
            String::from_utf8_lossy(c)
        );
    }
}

#[test]
fn reset_mid_stream_ends_with_one_error_event_in_protocol_shape() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    // OpenAI: data: {"error":...} then data: [DONE].
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-reset-after", "2")],
        STREAM.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(data.len(), 4, "{data:?}");
    let err: serde_json::Value = serde_json::from_str(&data[2]).unwrap();
    assert!(err["error"]["message"].is_string(), "{err}");
    assert_eq!(data[3], "[DONE]");

    // Anthropic: event: error.
    let msg =
        r#"{"model":"c","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = request(
        g.addr,
        "POST",
        "/anthropic/v1/messages",
        &[("x-mock-reset-after", "3")],
        msg.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("\n\n"), "{text}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "{text}");
    assert!(events[3].starts_with("event: error\ndata: "), "{text}");
    let data: serde_json::Value =
        serde_json::from_str(events[3].split("data: ").nth(1).unwrap()).unwrap();
    assert_eq!(data["type"], "error");
}

#[test]
fn stalled_stream_ends_with_an_error_after_the_service_timeout() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let start = Instant::now();
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-stall-after", "2")],
        STREAM.as_bytes(),
    );
    assert!(start.elapsed() >= Duration::from_millis(1400));
    let data = sse_data(&r.body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data[data.len() - 2].contains("\"error\""), "{data:?}");
}

#[test]
fn chunked_request_body_and_pipelined_requests_in_order() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let mut s = connect(g.addr);
    let body = br#"{"model":"chunky","messages":[{"role":"user","content":"one two three"}]}"#;
    let (a, b) = body.split_at(20);
    let mut req =
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
    req.extend_from_slice(a);
    req.extend_from_slice(format!("\r\n{:x};ext=1\r\n", b.len()).as_bytes());
    req.extend_from_slice(b);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    // Three requests in one write: chunked, then two with Content-Length.
    let mut all = req.clone();
    for m in ["second", "third"] {
        let body = format!(r#"{{"model":"{m}","messages":[]}}"#);
        all.extend_from_slice(&raw_request(
            "POST",
            "/v1/chat/completions",
            &[],
            body.as_bytes(),
        ));
    }
    s.write_all(&all).unwrap();
    let mut r = BufReader::new(s);
    for m in ["chunky", "second", "third"] {
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json()["model"], m);
    }
    let seen = up.requests();
    let first: serde_json::Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(first["messages"][0]["content"], "one two three");
    assert_eq!(first["model"], "chunky");
}

#[test]
fn upstream_connections_are_reused() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let mut s = connect(g.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..20 {
        s.write_all(&raw_request(
            "POST",
            "/v1/chat/completions",
            &[],
            br#"{"model":"m","messages":[]}"#,
        ))
        .unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
        s.write_all(&raw_request(
            "POST",
            "/v1/chat/completions",
            &[],
            STREAM.as_bytes(),
        ))
        .unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    }
    let total = up.stats()["connections_total"].as_u64().unwrap();
    assert!(
        total <= 2,
        "40 requests on one client connection opened {total} upstream connections"
    );
}

#[test]
fn large_bodies_stream_through_past_the_buffer() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&format!(
        r#"{}
[server.limits]
body_buffer_bytes = 4096
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
    let big = "word ".repeat(40_000);
    let body = format!(r#"{{"model":"big","messages":[{{"role":"user","content":"{big}"}}]}}"#);
    let r = g.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["prompt_tokens"], 40_000);
    let seen = up.requests();
    assert_eq!(seen[0]["body"].as_str().unwrap().len(), body.len());
    // Model after the buffer's worth: a JSON body is held whole (issue
    // 18: the answer must not depend on where the model is), so it is
    // routed by its model all the same.
    up.clear();
    let late = format!(r#"{{"messages":[{{"role":"user","content":"{big}"}}],"model":"late"}}"#);
    let r = g.post("/v1/chat/completions", &late);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0]["body"].as_str().unwrap().len(), late.len());
}
