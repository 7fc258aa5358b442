//! Issue 18 #5: the built-in `mock` provider and `mock-llm` answer the way
//! the SDKs expect — embeddings in the asked `encoding_format`, whole
//! chunked bodies past the gateway's buffer, Anthropic stream usage where
//! Anthropic puts it. Real binary, real mock-llm, real sockets.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufReader, Write};

/// The gateway with the in-process mock and a mock-llm upstream side by
/// side: `/mock/…` (OpenAI), `/mock-anthropic/…`, `/up/…` (OpenAI via
/// openai_compatible), `/up-anthropic/…`; `/v1/chat/completions` to the
/// upstream with default limits.
fn gateway(up: &MockLlm) -> Gateway {
    let api = |name: &str, scenario: &str, protocol: &str, base: &str, service: &str| {
        format!(
            r#"
[[model_apis]]
name = "{name}"
scenario = "{scenario}"
protocol = "{protocol}"
domains = ["*"]
base_path = "{base}"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "{service}" }} }}
"#
        )
    };
    let mut cfg = format!(
        r#"
[[services]]
name = "mock"
provider = "mock"

[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
timeout_ms = 10000

[[services]]
name = "claude"
provider = "anthropic"
base_url = "{url}"
timeout_ms = 10000
"#,
        url = up.url()
    );
    cfg += &api("mock-embed", "embedding", "openai", "/mock", "mock");
    cfg += &api("mock-msgs", "text", "anthropic", "/mock-anthropic", "mock");
    cfg += &api("up-embed", "embedding", "openai", "/up", "up");
    cfg += &api("up-msgs", "text", "anthropic", "/up-anthropic", "claude");
    cfg += r#"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "up" } }
"#;
    Gateway::start(&cfg)
}

/// Standard padded base64 → bytes.
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?} in {s}"),
        }
    };
    assert_eq!(s.len() % 4, 0, "unpadded base64: {s}");
    let mut out = Vec::new();
    for q in s.as_bytes().chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q
            .iter()
            .map(|&c| if c == b'=' { 0 } else { val(c) })
            .fold(0u32, |n, v| (n << 6) | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

fn floats_of_base64(s: &str) -> Vec<f32> {
    let bytes = unbase64(s);
    assert_eq!(bytes.len() % 4, 0, "{} bytes is not float32s", bytes.len());
    bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn float_array(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a float array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn embed(g: &Gateway, base: &str, body: Value) -> Value {
    let r = g.post(&format!("{base}/v1/embeddings"), &body.to_string());
    assert_eq!(r.status, 200, "{base}: {}", r.text());
    r.json()
}

/// Float and base64 answers agree, have the advertised dimension (8, or
/// `dimensions`), are non-zero and depend only on the input.
fn check_embeddings(g: &Gateway, base: &str) {
    let input = json!(["alpha", "beta"]);
    let float = embed(
        g,
        base,
        json!({"model": "e", "input": input, "encoding_format": "float"}),
    );
    let default = embed(g, base, json!({"model": "e", "input": input}));
    let b64 = embed(
        g,
        base,
        json!({"model": "e", "input": input, "encoding_format": "base64"}),
    );
    assert_eq!(
        float["data"], default["data"],
        "{base}: float is the default"
    );
    for i in 0..2 {
        let f = float_array(&float["data"][i]["embedding"]);
        let s = b64["data"][i]["embedding"]
            .as_str()
            .unwrap_or_else(|| panic!("{base}: base64 embedding is not a string: {b64}"));
        let b = floats_of_base64(s);
        assert_eq!(f.len(), 8, "{base}: {f:?}");
        assert_eq!(b, f, "{base}: base64 decodes to the float answer");
        assert!(
            f.iter().all(|x| *x != 0.0 && x.abs() <= 1.0),
            "{base}: {f:?}"
        );
        assert_eq!(b64["data"][i]["index"], i);
    }
    assert_ne!(float["data"][0], float["data"][1], "{base}: inputs differ");
    let again = embed(
        g,
        base,
        json!({"model": "e", "input": "beta", "encoding_format": "base64"}),
    );
    assert_eq!(
        again["data"][0]["embedding"], b64["data"][1]["embedding"],
        "{base}: deterministic per input"
    );
    let wide = embed(
        g,
        base,
        json!({"model": "e", "input": "x", "dimensions": 32, "encoding_format": "base64"}),
    );
    let w = floats_of_base64(wide["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(w.len(), 32, "{base}: dimensions honoured");
    assert!(w.iter().all(|x| *x != 0.0), "{base}: {w:?}");
    let bad = g.post(
        &format!("{base}/v1/embeddings"),
        r#"{"model":"e","input":"x","encoding_format":"int8"}"#,
    );
    assert_eq!(bad.status, 400, "{base}: {}", bad.text());
}

#[test]
fn mock_provider_embeddings_honour_encoding_format() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    check_embeddings(&g, "/mock");
}

#[test]
fn mock_llm_embeddings_honour_encoding_format() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    check_embeddings(&g, "/up");
}

#[test]
fn a_2mib_chunked_chat_body_reaches_mock_llm_whole() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    let filler = "word ".repeat(2 * 1024 * 1024 / 5);
    // `model` first, so the gateway routes on the first buffer and
    // streams the rest.
    let body = format!(
        r#"{{"model":"m","max_tokens":2,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    );
    assert!(body.len() > 2 * 1024 * 1024 - 64, "{}", body.len());
    let mut s = connect(g.addr);
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\n",
    )
    .unwrap();
    for part in body.as_bytes().chunks(64 * 1024 + 7) {
        s.write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .unwrap();
        s.write_all(part).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from");
    let words = (2 * 1024 * 1024 / 5) as u64;
    assert_eq!(
        v["usage"]["prompt_tokens"], words,
        "the whole body was read"
    );
    let reqs = up.requests();
    let last = reqs.last().unwrap();
    assert_eq!(
        last["body"].as_str().unwrap().len(),
        body.len(),
        "mock-llm saw the whole body"
    );
}

/// The named SSE events of a stream, as (event, data).
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter_map(|e| {
            let mut name = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data = serde_json::from_str(d.trim()).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

/// `message_start.message.usage` has input and output tokens;
/// `message_delta.usage` repeats the input (and cache) counts with the
/// final output, as Anthropic's API sends them.
fn check_anthropic_stream_usage(g: &Gateway, base: &str) {
    let r = g.post(
        &format!("{base}/v1/messages"),
        r#"{"model":"claude","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"one two three four"}]}"#,
    );
    assert_eq!(r.status, 200, "{base}: {}", r.text());
    let evs = events(&r.body);
    let find = |n: &str| {
        evs.iter()
            .find(|(e, _)| e == n)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{base}: no {n} in {}", r.text()))
    };
    let start = find("message_start")["message"]["usage"].clone();
    assert_eq!(start["input_tokens"], 4, "{base}: {start}");
    assert!(start["output_tokens"].as_u64().is_some(), "{base}: {start}");
    assert_eq!(start["cache_creation_input_tokens"], 0, "{base}: {start}");
    assert_eq!(start["cache_read_input_tokens"], 0, "{base}: {start}");
    let delta = find("message_delta")["usage"].clone();
    assert_eq!(delta["output_tokens"], 3, "{base}: {delta}");
    assert_eq!(delta["input_tokens"], 4, "{base}: {delta}");
    assert_eq!(delta["cache_creation_input_tokens"], 0, "{base}: {delta}");
    assert_eq!(delta["cache_read_input_tokens"], 0, "{base}: {delta}");
}

#[test]
fn mock_provider_anthropic_stream_reports_input_tokens() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    check_anthropic_stream_usage(&g, "/mock-anthropic");
}

#[test]
fn mock_llm_anthropic_stream_reports_input_tokens() {
    let up = MockLlm::start("up");
    let g = gateway(&up);
    check_anthropic_stream_usage(&g, "/up-anthropic");
}

/// A 2 MiB chunked JSON body reaches the in-process mock whole: JSON
/// bodies are held whole past the body buffer (once, only its first
/// `body_buffer_bytes` reached `mock::answer`: 400 "EOF while parsing").
#[test]
fn a_2mib_chunked_chat_body_reaches_the_mock_provider_whole() {
    let g = Gateway::start(
        r#"
[[services]]
name = "mock"
provider = "mock"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "mock" } }
"#,
    );
    let filler = "word ".repeat(2 * 1024 * 1024 / 5);
    let body = format!(
        r#"{{"model":"m","max_tokens":2,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    );
    let mut s = connect(g.addr);
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\n",
    )
    .unwrap();
    for part in body.as_bytes().chunks(64 * 1024) {
        s.write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .unwrap();
        s.write_all(part).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["usage"]["prompt_tokens"],
        (2 * 1024 * 1024 / 5) as u64
    );
}
