//! The request core's safety rules (PRODUCT.md §16): a request is sent
//! again only when none of it can have reached the upstream; interim (1xx)
//! responses; a client that leaves before the head cancels the upstream
//! request; the body deadline; auth before the body.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// One worker (so a request finds the previous one's pooled connection),
/// service `up` with `timeout_ms`, a Model API on every domain.
fn gateway(up: &MockLlm, timeout_ms: u64, limits: &str) -> Gateway {
    Gateway::start_raw(&format!(
        r#"{}
[server.limits]
{limits}
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
timeout_ms = {timeout_ms}
outlier_detection = {{ consecutive_failures = 0 }}
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        server_section(1),
        url = up.url()
    ))
}

/// Reads the final response, skipping interim (1xx) heads.
fn read_final<R: BufRead>(r: &mut R) -> std::io::Result<Response> {
    while r.fill_buf()?.starts_with(b"HTTP/1.1 1") {
        read_head_only(r)?;
    }
    read_response(r, false)
}

/// POSTs `body` on a fresh connection and waits `wait` at most for the
/// final answer; returns it with the time it took.
fn send(g: &Gateway, headers: &[(&str, &str)], body: &str, wait: Duration) -> (Response, Duration) {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let mut s = connect(g.addr);
    s.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    s.write_all(&raw_request(
        "POST",
        "/v1/chat/completions",
        &h,
        body.as_bytes(),
    ))
    .unwrap();
    match read_final(&mut BufReader::new(s)) {
        Ok(r) => (r, started.elapsed()),
        Err(e) => panic!("no answer within {wait:?}: {e}"),
    }
}

/// Polls `cond` every 10 ms until it holds or `within` has passed.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The connection the mock read request `rid`'s first head on.
fn conn_of(up: &MockLlm, rid: &str) -> u64 {
    up.events_of("head", rid)[0]["conn"].as_u64().unwrap()
}

/// A 502 in OpenAI's error shape.
fn assert_openai_502(r: &Response) {
    assert_eq!(r.status, 502, "{}", r.text());
    let e = &r.json()["error"];
    assert!(e["message"].is_string() && e["code"].is_string(), "{e}");
}

#[test]
fn pooled_connection_closed_after_request_is_not_replayed() {
    let up = MockLlm::start("up");
    let g = gateway(&up, 3000, "");
    let wait = Duration::from_secs(5);
    let (r, _) = send(&g, &[("x-request-id", "warm")], CHAT, wait);
    assert_eq!(r.status, 200, "{}", r.text());
    let hang_up = [("x-request-id", "a1"), ("x-mock-hang-up", "1")];
    let (r, took) = send(&g, &hang_up, CHAT, wait);
    assert_eq!(
        conn_of(&up, "a1"),
        conn_of(&up, "warm"),
        "not the pooled connection"
    );
    let heads = up.events_of("head", "a1").len();
    assert!(
        heads == 1 && r.status == 502 && took < Duration::from_secs(1),
        "the mock got the request {heads} times; the client got {} after {took:?}",
        r.status
    );
    assert_openai_502(&r);
}

#[test]
fn large_body_on_a_pooled_connection_closed_after_request_is_never_sent_twice() {
    let up = MockLlm::start("up");
    let g = gateway(&up, 3000, "body_buffer_bytes = 4096");
    let wait = Duration::from_secs(8);
    let (r, _) = send(&g, &[("x-request-id", "warm")], CHAT, wait);
    assert_eq!(r.status, 200, "{}", r.text());
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(64 * 1024)
    );
    let hang_up = [("x-request-id", "a2"), ("x-mock-hang-up", "1")];
    let (r, took) = send(&g, &hang_up, &big, wait);
    assert_eq!(
        conn_of(&up, "a2"),
        conn_of(&up, "warm"),
        "not the pooled connection"
    );
    let (heads, cut) = (up.events_of("head", "a2"), up.events_of("cut", "a2"));
    assert!(
        heads.len() == 1 && r.status == 502 && took < Duration::from_millis(1500),
        "the client got {} after {took:?} (timeout_ms 3000); the mock got the head {} times, \
         cut short {}: {}",
        r.status,
        heads.len(),
        serde_json::Value::Array(cut),
        r.text()
    );
    assert_openai_502(&r);
}

#[test]
fn pooled_connection_closed_while_idle_is_retried_on_a_fresh_one() {
    let up = MockLlm::start("up");
    let g = gateway(&up, 3000, "");
    let wait = Duration::from_secs(5);
    // Keep-alive framing, then the mock closes the connection once idle.
    let idle_close = [("x-request-id", "warm"), ("x-mock-idle-close-ms", "100")];
    let (r, _) = send(&g, &idle_close, CHAT, wait);
    assert_eq!(r.status, 200, "{}", r.text());
    let idle_closed = eventually(Duration::from_secs(2), || {
        up.stats()["connections_open"] == 0
    });
    assert!(idle_closed, "the mock did not close the idle connection");
    let (r, took) = send(&g, &[("x-request-id", "a3")], CHAT, wait);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(up.events_of("head", "a3").len(), 1);
    assert_ne!(conn_of(&up, "a3"), conn_of(&up, "warm"));
}

#[test]
fn interim_response_in_the_same_read_as_the_final_head_is_skipped() {
    let up = MockLlm::start("up");
    let g = gateway(&up, 2000, "");
    let mut failed = Vec::new();
    for interim in ["100", "103", "100,103"] {
        let (r, took) = send(
            &g,
            &[("x-mock-interim", interim)],
            CHAT,
            Duration::from_secs(5),
        );
        if r.status != 200 || took > Duration::from_secs(1) {
            failed.push(format!("{interim}: {} after {took:?}", r.status));
        } else {
            assert_eq!(r.json()["object"], "chat.completion", "{}", r.text());
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn endless_interim_responses_are_bounded_by_the_service_timeout() {
    let up = MockLlm::start("up");
    let g = gateway(&up, 1500, "");
    let every_100ms = [("x-mock-continue-every-ms", "100")];
    let (r, took) = send(&g, &every_100ms, CHAT, Duration::from_secs(8));
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
    assert!(
        took < Duration::from_secs(3),
        "504 after {took:?} (timeout_ms 1500)"
    );
}

#[test]
fn client_close_before_the_response_head_cancels_the_upstream_request() {
    let up = MockLlm::start("up");
    let g = gateway(&up, 3000, "");
    let mut failed = Vec::new();
    for (rid, body) in [("plain", CHAT), ("stream", STREAM)] {
        let mut s = connect(g.addr);
        let h = [("x-request-id", rid), ("x-mock-delay-ms", "5000")];
        s.write_all(&raw_request(
            "POST",
            "/v1/chat/completions",
            &h,
            body.as_bytes(),
        ))
        .unwrap();
        let arrived = eventually(Duration::from_secs(2), || {
            !up.events_of("head", rid).is_empty()
        });
        assert!(arrived, "{rid}: the request never reached the mock");
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
        let closed = Instant::now();
        let cancelled = || !up.events_of("peer_closed", rid).is_empty();
        if !eventually(Duration::from_secs(1), cancelled) {
            // How late it came, for the failure message.
            let late = eventually(Duration::from_secs(5), cancelled);
            let when = if late { "only" } else { "not even" };
            failed.push(format!(
                "{rid}: upstream closed {when} {:?} after the client",
                closed.elapsed()
            ));
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn slow_body_is_cut_at_the_body_read_timeout() {
    let up = MockLlm::start("up");
    let g = gateway(
        &up,
        3000,
        "body_read_timeout_ms = 1000\nidle_timeout_ms = 30000",
    );
    let mut s = connect(g.addr);
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    // One body byte every 100 ms: each read is quick, the whole is not.
    let stop = Arc::new(AtomicBool::new(false));
    let (mut w, halt) = (s.try_clone().unwrap(), stop.clone());
    let trickle = std::thread::spawn(move || {
        for sent in 0..2000 {
            if halt.load(Ordering::SeqCst) || w.write_all(b" ").is_err() {
                return sent;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        2000
    });
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false);
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let sent = trickle.join().unwrap();
    let resp = resp.unwrap_or_else(|e| panic!("no answer after {took:?}, {sent} bytes sent: {e}"));
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "request_timeout");
    assert!(
        took > Duration::from_millis(900) && took < Duration::from_millis(2500),
        "408 after {took:?}"
    );
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "not closed: {e}"
        ),
    }
    assert!(up.requests().is_empty());
}

#[test]
fn auth_is_checked_before_the_body_is_read() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&format!(
        r#"{}
[server.limits]
body_read_timeout_ms = 30000
idle_timeout_ms = 30000
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[consumers]]
name = "team-a"
keys = ["mg-core-team-a"]
[[consumers]]
name = "team-b"
keys = ["mg-core-team-b"]
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["chat.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
auth = {{ enabled = true, consumers = ["team-a"] }}
"#,
        server_section(1),
        url = up.url()
    ));
    let mut failed = Vec::new();
    let cases = [
        ("", 401, "authentication_error"),
        (
            "authorization: Bearer mg-nobody\r\n",
            401,
            "authentication_error",
        ),
        // A known consumer the Model API does not list.
        (
            "authorization: Bearer mg-core-team-b\r\n",
            403,
            "permission_error",
        ),
    ];
    for (key, status, kind) in cases {
        let mut s = connect(g.addr);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: chat.example.com\r\n\
             content-type: application/json\r\n{key}content-length: 1048576\r\n\r\n"
        );
        let started = Instant::now();
        s.write_all(head.as_bytes()).unwrap();
        // No body byte is ever sent.
        let r = read_response(&mut BufReader::new(s), false);
        let took = started.elapsed();
        match r {
            Ok(r) if r.status == status && took < Duration::from_secs(1) => {
                assert_eq!(r.json()["error"]["type"], kind, "{}", r.text());
            }
            Ok(r) => failed.push(format!("{key:?}: {} after {took:?}", r.status)),
            Err(e) => failed.push(format!("{key:?}: no answer after {took:?} ({e})")),
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
    assert!(up.requests().is_empty());
}
