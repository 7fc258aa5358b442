//! Issue 17, data plane: no upstream can make the gateway hold unbounded
//! bytes, every over-limit body gets its own status, and forwarding headers
//! are the gateway's own. Real binary, real mock-llm, real sockets.

mod common;
use common::*;
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

fn gateway(up: &MockLlm, limits: &str, server: &str) -> Gateway {
    Gateway::start_raw(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]
workers = 1
{server}
[server.limits]
{limits}
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
timeout_ms = 5000
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        url = up.url()
    ))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The first upstream request's header `name`, if sent.
fn sent_header(up: &MockLlm, name: &str) -> Option<String> {
    let reqs = up.requests();
    let headers = reqs[0]["headers"].as_array().unwrap();
    headers
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_string())
}

const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn an_sse_event_that_never_ends_is_cut_at_max_event_bytes() {
    let up = MockLlm::start("up");
    let g = gateway(&up, "max_event_bytes = 1048576", "");
    let before = rss_kib(g.proc.child.id());
    let started = Instant::now();
    // 256 MiB of one event with no blank line.
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-endless-event", "268435456")],
        STREAM.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    let last_two: Vec<_> = data.iter().rev().take(2).rev().collect();
    assert_eq!(last_two.len(), 2, "{data:?}");
    assert_eq!(last_two[1], "[DONE]");
    let err: serde_json::Value = serde_json::from_str(last_two[0]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_event_bytes"),
        "{err}"
    );
    // The partial event itself never reached the client.
    assert!(r.body.len() < 64 * 1024, "{} bytes relayed", r.body.len());
    assert!(started.elapsed() < Duration::from_secs(5));
    let grown = rss_kib(g.proc.child.id()).saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn a_chunked_body_over_max_body_bytes_is_413_in_the_client_shape() {
    let up = MockLlm::start("up");
    let g = gateway(&up, "max_body_bytes = 100000\nbody_buffer_bytes = 4096", "");
    let mut s = connect(g.addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    let mut body = String::from(r#"{"model":"m","messages":[{"role":"user","content":""#);
    body.push_str(&"a".repeat(200_000));
    body.push_str(r#""}]}"#);
    for part in body.as_bytes().chunks(8192) {
        if s.write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .is_err()
            || s.write_all(part).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "body_too_large");
    assert!(!r.text().contains("TooLarge"), "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn a_request_transfer_coding_other_than_chunked_is_501() {
    let up = MockLlm::start("up");
    let g = gateway(&up, "", "");
    let mut s = connect(g.addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 501, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(up.requests().is_empty(), "forwarded: {:?}", up.requests());
}

#[test]
fn forwarding_headers_are_the_gateways_own_unless_the_peer_is_trusted() {
    let up = MockLlm::start("up");
    let spoofed = [
        ("forwarded", "for=6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("host", "chat.example.com:8080"),
    ];
    let body = r#"{"model":"m","messages":[]}"#;
    let g = gateway(&up, "", "");
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &spoofed,
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = |n| sent_header(&up, n);
    assert_eq!(seen("forwarded"), None);
    assert_eq!(seen("x-real-ip"), None);
    assert_eq!(seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen("x-forwarded-host").as_deref(),
        Some("chat.example.com:8080")
    );
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("http"));
    drop(g);

    // A trusted proxy in front: its forwarding headers are kept, and the
    // peer is appended to its X-Forwarded-For.
    up.clear();
    let g = gateway(&up, "", r#"trusted_proxies = ["127.0.0.0/8"]"#);
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &spoofed,
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = |n| sent_header(&up, n);
    assert_eq!(seen("forwarded").as_deref(), Some("for=6.6.6.6"));
    assert_eq!(seen("x-real-ip").as_deref(), Some("6.6.6.6"));
    assert_eq!(
        seen("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 127.0.0.1")
    );
    assert_eq!(seen("x-forwarded-host").as_deref(), Some("evil.example"));
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("gopher"));
}

#[test]
fn a_low_open_file_limit_caps_connections_instead_of_failing_requests() {
    let up = MockLlm::start("up");
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
workers = 1
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
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
        url = up.url()
    );
    // 200 descriptors: (200 - 64) / 2 = 68 client connections fit.
    let g = Gateway::start_wrapped(&config, &["prlimit", "--nofile=200:200", "--"]);
    let warned = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        g.proc.stderr_text().contains("lowered to 68")
    });
    assert!(warned, "no warning: {}", g.proc.stderr_text());
    // Far more clients than fit: the ones over the cap are closed at once
    // (not left unanswered in the backlog), and the others are served,
    // upstream connections included.
    let mut clients: Vec<_> = (0..150).map(|_| connect(g.addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut closed = 0;
    for s in &mut clients {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        if let Ok(0) = std::io::Read::read(s, &mut b) {
            closed += 1;
        }
        s.set_nonblocking(false).unwrap();
    }
    assert!(closed >= 150 - 68, "only {closed} of 150 closed");
    let started = Instant::now();
    let mut served = 0;
    for s in clients.iter_mut().take(150) {
        let req = raw_request(
            "POST",
            "/v1/chat/completions",
            &[("host", "x"), ("content-type", "application/json")],
            br#"{"model":"m","messages":[]}"#,
        );
        if s.write_all(&req).is_err() {
            continue;
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if let Ok(r) = read_response(&mut BufReader::new(&mut *s), false) {
            assert_eq!(r.status, 200, "{}", r.text());
            served += 1;
        }
    }
    assert!(served >= 60, "only {served} served");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The log says so once a second at most, not every 10 ms.
    let accept_lines = g.proc.stderr_text().matches("accept:").count();
    assert!(accept_lines <= 5, "{accept_lines} accept warnings");
}

#[test]
fn an_upstream_transfer_coding_stays_on_the_relayed_body() {
    use std::io::Read;
    let up = MockLlm::start("up");
    let g = gateway(&up, "", "");
    let mut s = connect(g.addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = raw_request(
        "POST",
        "/v1/chat/completions",
        &[
            ("host", "x"),
            ("content-type", "application/json"),
            ("connection", "close"),
            ("x-mock-transfer-coding", "gzip"),
        ],
        STREAM.as_bytes(),
    );
    s.write_all(&req).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("\r\ntransfer-encoding: gzip, chunked"),
        "the coding was dropped: {head}"
    );
    // Relayed as opaque bytes, re-chunked: the payload is what the
    // upstream sent, the usage chunk included.
    assert!(body.contains("data: [done]"), "{body}");
    assert!(body.ends_with("0\r\n\r\n"), "{body}");
}
