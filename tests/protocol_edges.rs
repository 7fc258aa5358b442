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
