//! Upstream connections: https with a CA file, a stale pooled connection
//! retried once on a fresh one, and the epoll driver.

mod common;
use common::tls::tls_front;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn https_upstream_with_a_ca_file() {
    let up = MockLlm::start("tls-up");
    let dir = TempDir::new();
    let (front, ca) = tls_front(up.addr, &dir);
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "secure"
provider = "openai_compatible"
base_url = "https://localhost:{port}/v1"
ca_file = "{ca}"

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "secure" }} }}
"#,
        port = front.port(),
        ca = ca.display()
    ));
    for _ in 0..3 {
        let r = g.post("/v1/chat/completions", CHAT);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-mock-name"), Some("tls-up"));
    }
    // base_url path /v1 + client path /v1/...: not doubled.
    assert_eq!(up.requests()[0]["path"], "/v1/chat/completions");
    let stream = r#"{"model":"m","stream":true,"messages":[]}"#;
    let r = g.post("/v1/chat/completions", stream);
    assert_eq!(sse_data(&r.body).last().unwrap(), "[DONE]");
}

#[test]
fn https_upstream_with_an_untrusted_certificate_fails_cleanly() {
    let up = MockLlm::start("tls-up");
    let dir = TempDir::new();
    let (front, _ca) = tls_front(up.addr, &dir);
    // No ca_file: webpki roots do not know this CA.
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "secure"
provider = "openai_compatible"
base_url = "https://localhost:{port}"

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "secure" }} }}
"#,
        port = front.port()
    ));
    let r = g.post("/v1/chat/completions", CHAT);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_connect_failed");
    assert!(up.requests().is_empty());
}

/// An upstream that answers one request per connection with keep-alive
/// framing, then silently closes the connection once idle.
fn closing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = BufReader::new(tcp.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let answer = r#"{"id":"x","object":"chat.completion","choices":[]}"#;
                let mut tcp = tcp;
                write!(tcp, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                // Closed while the gateway keeps it pooled.
            });
        }
    });
    (addr, conns)
}

#[test]
fn stale_pooled_connection_is_retried_once_on_a_fresh_one() {
    let (addr, conns) = closing_upstream();
    let g = Gateway::start_raw(&format!(
        r#"{}
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "http://{addr}"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        server_section(1)
    ));
    for i in 1..=3 {
        let r = g.post("/v1/chat/completions", CHAT);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[test]
fn epoll_driver_serves_the_same() {
    let up = MockLlm::start("up");
    let config = format!(
        r#"{}
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
        server_section(2)
            .replace("workers = 2", "workers = 2\nio = \"epoll\"")
            .replace("level = \"warn\"", "level = \"info\""),
        url = up.url()
    );
    let g = Gateway::start_raw(&config);
    assert!(
        g.proc.stderr_text().contains("io: epoll (configured)"),
        "{}",
        g.proc.stderr_text()
    );
    let r = g.post("/v1/chat/completions", CHAT);
    assert_eq!(r.status, 200);
    let r = g.post(
        "/v1/chat/completions",
        r#"{"model":"m","stream":true,"messages":[]}"#,
    );
    assert_eq!(sse_data(&r.body).last().unwrap(), "[DONE]");
    // Idle keep-alive connections and a bad request work the same way.
    let r = request(g.addr, "POST", "/v1/chat/completions", &[], b"not json");
    assert_eq!(r.status, 400);
}
