//! Every scenario row of PRODUCT.md §5 other than text chat, end to end
//! through the real binary and real mock-llm upstreams: DashScope async
//! tasks (polls stick to the accepting service), OpenAI image edits routed
//! by the multipart `model` field, WebSocket tunnels, OpenAI speech,
//! embeddings, rerank, every ComfyUI REST route, and the `other`
//! scenario's any-method routes; bad input in each protocol's shape.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// helpers

/// FNV-1a 64 as 16 hex digits (what mock-llm reports for uploads).
fn fnv_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Deterministic binary "file" bytes.
fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 % 251) as u8).collect()
}

const BOUNDARY: &str = "----modelgate-test-7MA4YWxkTrZu0gW";

/// A multipart/form-data body: (name, filename, content) per part.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, filename, content) in parts {
        v.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match filename {
            Some(f) => v.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => v.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        v.extend_from_slice(content);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    v
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn post_form(addr: SocketAddr, host: &str, path: &str, body: &[u8]) -> Response {
    let ct = form_type();
    request(
        addr,
        "POST",
        path,
        &[("host", host), ("content-type", &ct)],
        body,
    )
}

/// Sends `body` with chunked framing, in 64 KiB chunks.
fn post_chunked(addr: SocketAddr, host: &str, path: &str, ct: &str, body: &[u8]) -> Response {
    let mut s = connect(addr);
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {ct}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for c in body.chunks(64 * 1024) {
        raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        raw.extend_from_slice(c);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&raw).unwrap();
    read_response(&mut BufReader::new(s), false).unwrap()
}

fn header_of<'a>(rec: &'a Value, name: &str) -> Option<&'a str> {
    rec["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

fn served_by(r: &Response) -> String {
    r.header("x-mock-name").unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------
// DashScope image and video: async tasks

#[test]
fn dashscope_tasks_stick_to_the_accepting_service() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "ds-a"
provider = "dashscope"
base_url = "{a}"
api_keys = ["key-a"]

[[services]]
name = "ds-b"
provider = "dashscope"
base_url = "{b}"
api_keys = ["key-b"]

[[model_apis]]
name = "image"
scenario = "image"
protocol = "dashscope"
domains = ["*"]
service = {{ mode = "by_weight", targets = [
  {{ service = "ds-a", weight = 1 }},
  {{ service = "ds-b", weight = 1 }},
] }}

[[model_apis]]
name = "video"
scenario = "video"
protocol = "dashscope"
domains = ["video.example.com"]
service = {{ mode = "single", target = {{ service = "ds-a" }} }}
fallback = {{ enabled = true, targets = [{{ service = "ds-b" }}] }}
"#,
        a = a.url(),
        b = b.url()
    ));
    let submit = |host: &str, path: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![
            ("host", host),
            ("content-type", "application/json"),
            ("x-dashscope-async", "enable"),
        ];
        headers.extend_from_slice(extra);
        request(
            g.addr,
            "POST",
            path,
            &headers,
            br#"{"model":"wanx-v1","input":{"prompt":"a cat"},"parameters":{"n":1}}"#,
        )
    };

    // Every image submit route, over many connections (both workers); the
    // by_weight split sends them to both services.
    let routes = [
        "/api/v1/services/aigc/text2image/image-synthesis",
        "/api/v1/services/aigc/image2image/image-synthesis",
        "/api/v1/services/aigc/image2image/out-painting",
        "/api/v1/services/aigc/virtualmodel/generation",
        "/api/v1/services/aigc/background-generation/generation",
    ];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let path = routes[i % routes.len()];
        let r = submit("img.example.com", path, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["output"]["task_status"], "PENDING");
        let id = v["output"]["task_id"].as_str().unwrap().to_string();
        let by = served_by(&r);
        assert!(id.starts_with(&format!("{by}-task-")), "{id} from {by}");
        tasks.push((id, by));
    }
    for name in ["a", "b"] {
        assert!(
            tasks.iter().any(|(_, by)| by == name),
            "no submit reached {name}: {tasks:?}"
        );
    }
    // Every submit path arrived unchanged, with the service's key.
    let (recs_a, recs_b) = (a.requests(), b.requests());
    for p in routes {
        assert!(recs_a.iter().chain(&recs_b).any(|r| r["path"] == p), "{p}");
    }
    for (recs, key) in [(&recs_a, "Bearer key-a"), (&recs_b, "Bearer key-b")] {
        for r in recs {
            assert_eq!(header_of(r, "authorization"), Some(key));
            assert_eq!(header_of(r, "x-dashscope-async"), Some("enable"));
        }
    }

    // Polls (and their sub-paths) reach the service that accepted each task,
    // whatever the weights pick, on fresh connections (both workers).
    let poll_all = |round: usize| {
        for (id, by) in &tasks {
            for _ in 0..2 {
                let r = request(
                    g.addr,
                    "GET",
                    &format!("/api/v1/tasks/{id}"),
                    &[("host", "img.example.com")],
                    b"",
                );
                assert_eq!(r.status, 200, "round {round} {id}: {}", r.text());
                assert_eq!(r.json()["served_by"], by.as_str());
                assert_eq!(r.json()["output"]["task_id"], id.as_str());
            }
        }
    };
    poll_all(0);
    let (id, by) = &tasks[0];
    let r = request(
        g.addr,
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        &[("host", "img.example.com")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&served_by(&r), by);
    let mine = if by == "a" { &a } else { &b };
    let rec = mine
        .requests()
        .into_iter()
        .rev()
        .find(|r| r["path"] == format!("/api/v1/tasks/{id}/cancel"))
        .expect("cancel recorded");
    assert_eq!(
        header_of(&rec, "authorization"),
        Some(format!("Bearer key-{by}").as_str())
    );

    // The memory outlives a reload.
    g.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    poll_all(1);

    // Video: the single target fails the submit, the fallback accepts it;
    // polls then go to the fallback although the selection says ds-a.
    let r = submit(
        "video.example.com",
        "/api/v1/services/aigc/video-generation/video-synthesis",
        &[("x-mock-status", "500"), ("x-mock-fault-target", "a")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelgate-fallback"), Some("1"));
    assert_eq!(served_by(&r), "b");
    let vid = r.json()["output"]["task_id"].as_str().unwrap().to_string();
    for _ in 0..4 {
        let r = request(
            g.addr,
            "GET",
            &format!("/api/v1/tasks/{vid}"),
            &[("host", "video.example.com")],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(&r), "b");
        assert_eq!(r.header("x-modelgate-fallback"), Some("0"));
    }
    let r = submit(
        "video.example.com",
        "/api/v1/services/aigc/image2video/video-synthesis",
        &[],
    );
    assert_eq!(served_by(&r), "a");

    // An unknown task id follows the normal selection (ds-a), which answers
    // for itself in DashScope's shape.
    let r = request(
        g.addr,
        "GET",
        "/api/v1/tasks/no-such-task",
        &[("host", "video.example.com")],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(served_by(&r), "a");
    assert_eq!(r.json()["code"], "NotFound");

    // A submit without the async header is not remembered: its id is not
    // special to the gateway (the selection decides).
    let r = request(
        g.addr,
        "POST",
        "/api/v1/services/aigc/video-generation/video-synthesis",
        &[("host", "video.example.com")],
        br#"{"model":"wanx2.1-t2v","input":{"prompt":"waves"}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["output"]["task_status"], "SUCCEEDED");

    // Gateway errors on these APIs are DashScope-shaped.
    a.clear();
    b.clear();
    let r = request(
        g.addr,
        "PUT",
        "/api/v1/services/aigc/text2image/image-synthesis",
        &[("host", "img.example.com")],
        b"{}",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], "InvalidParameter");
    assert_eq!(r.json()["request_id"], r.header("x-request-id").unwrap());
    let r = submit(
        "img.example.com",
        "/api/v1/services/aigc/text2image/nothing-here",
        &[],
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "NotFound");
    let r = request(
        g.addr,
        "POST",
        "/api/v1/services/aigc/text2image/image-synthesis",
        &[("host", "img.example.com")],
        br#"{"input":{"prompt":"no model"}}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "InvalidParameter");
    assert!(a.requests().is_empty() && b.requests().is_empty());
}

/// A DashScope-like upstream that answers submits with a chunked body
/// (split inside the task id) and polls only for ids it issued.
fn chunked_dashscope() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        for (n, conn) in listener.incoming().flatten().enumerate() {
            let issued = issued.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                while let Ok(req) = read_request_head(&mut r) {
                    let (status, body) = if req.0 == "POST" {
                        let id = format!("raw-task-{n}-{}", issued.lock().unwrap().len());
                        issued.lock().unwrap().push(id.clone());
                        (
                            200,
                            format!(
                                r#"{{"request_id":"x","output":{{"task_status":"PENDING","task_id":"{id}"}}}}"#
                            ),
                        )
                    } else {
                        let id = req.1.rsplit('/').next().unwrap().to_string();
                        if issued.lock().unwrap().contains(&id) {
                            (
                                200,
                                format!(
                                    r#"{{"output":{{"task_id":"{id}","task_status":"RUNNING"}},"served_by":"raw"}}"#
                                ),
                            )
                        } else {
                            (
                                404,
                                r#"{"code":"NotFound","message":"unknown task"}"#.to_string(),
                            )
                        }
                    };
                    let (a, b) = body.split_at(body.len() / 2);
                    let out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-mock-name: raw\r\n\
                         transfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    );
                    if w.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// (method, target) of the next request on `r`, its body skipped.
fn read_request_head(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, String)> {
    use std::io::BufRead;
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
    );
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((method, target))
}

#[test]
fn dashscope_task_id_read_from_a_chunked_answer() {
    let raw = chunked_dashscope();
    let b = MockLlm::start("b");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "raw"
provider = "dashscope"
base_url = "http://{raw}"

[[services]]
name = "ds-b"
provider = "dashscope"
base_url = "{b}"

[[model_apis]]
name = "video"
scenario = "video"
protocol = "dashscope"
domains = ["*"]
service = {{ mode = "by_weight", targets = [
  {{ service = "raw", weight = 1 }},
  {{ service = "ds-b", weight = 1 }},
] }}
"#,
        b = b.url()
    ));
    let mut from_raw = Vec::new();
    for _ in 0..8 {
        let r = request(
            g.addr,
            "POST",
            "/api/v1/services/aigc/video-generation/video-synthesis",
            &[
                ("x-dashscope-async", "enable"),
                ("content-type", "application/json"),
            ],
            br#"{"model":"wanx2.1-t2v","input":{"prompt":"waves"}}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        if served_by(&r) == "raw" {
            from_raw.push(r.json()["output"]["task_id"].as_str().unwrap().to_string());
        }
    }
    assert!(!from_raw.is_empty());
    for id in &from_raw {
        for _ in 0..3 {
            let r = request(g.addr, "GET", &format!("/api/v1/tasks/{id}"), &[], b"");
            assert_eq!(r.status, 200, "{id}: {}", r.text());
            assert_eq!(r.json()["served_by"], "raw");
        }
    }
}

// ---------------------------------------------------------------------------
// OpenAI images: generation, and multipart edit/variation routed by `model`

#[test]
fn openai_image_edits_route_by_the_multipart_model() {
    let a = MockLlm::start("a");
    let b = MockLlm::start("b");
    let g = Gateway::start_raw(&format!(
        r#"{}
[server.limits]
body_buffer_bytes = 4096

[[services]]
name = "img-a"
provider = "openai"
base_url = "{a}"
api_keys = ["key-a"]

[[services]]
name = "img-b"
provider = "openai"
base_url = "{b}"
api_keys = ["key-b"]

[[model_apis]]
name = "images"
scenario = "image"
protocol = "openai"
domains = ["*"]
service = {{ mode = "by_model", rules = [
  {{ pattern = "dall-e-*", service = "img-a", model = "dall-e-3" }},
  {{ pattern = "gpt-image-*", service = "img-b" }},
] }}
"#,
        server_section(2),
        a = a.url(),
        b = b.url()
    ));
    let h = "img.example.com";
    let check = |r: &Response, by: &str, model: &str, image: &[u8]| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(r), by);
        let v = r.json();
        assert_eq!(v["model"], model);
        assert_eq!(v["image_bytes"], image.len());
        assert_eq!(v["image_fnv"], fnv_hex(image));
        assert_eq!(v["prompt"], "a hat");
    };

    // Small form: whole in the buffer; the rule rewrites the model.
    let small = blob(100);
    let body = form(&[
        ("model", None, b"dall-e-2"),
        ("image", Some("cat.png"), &small),
        ("prompt", None, b"a hat"),
    ]);
    let r = post_form(g.addr, h, "/api/v1/images/edits", &body);
    check(&r, "a", "dall-e-3", &small);
    let rec = a.requests().pop().unwrap();
    assert_eq!(rec["path"], "/v1/images/edits");
    assert_eq!(header_of(&rec, "authorization"), Some("Bearer key-a"));

    // Large forms (far past body_buffer_bytes) stream through after the
    // prefix: routed by the model part, spliced when rewritten, intact.
    let big = blob(300_000);
    for (model, by, seen) in [
        ("gpt-image-1", "b", "gpt-image-1"),
        ("dall-e-2", "a", "dall-e-3"),
    ] {
        let body = form(&[
            ("model", None, model.as_bytes()),
            ("prompt", None, b"a hat"),
            ("image", Some("cat.png"), &big),
        ]);
        let r = post_form(g.addr, h, "/api/v1/images/edits", &body);
        check(&r, by, seen, &big);
        // Chunked framing too.
        let r = post_chunked(g.addr, h, "/api/v1/images/edits", &form_type(), &body);
        check(&r, by, seen, &big);
    }
    // Variation: the same routing.
    let body = form(&[
        ("image", Some("cat.png"), &small),
        ("model", None, b"gpt-image-1"),
        ("prompt", None, b"a hat"),
    ]);
    let r = post_form(g.addr, h, "/api/v1/images/variations", &body);
    check(&r, "b", "gpt-image-1", &small);
    assert_eq!(b.requests().pop().unwrap()["path"], "/v1/images/variations");
    // Generation: JSON, model rewritten in the body.
    let r = request(
        g.addr,
        "POST",
        "/api/v1/images/generations",
        &[("host", h), ("content-type", "application/json")],
        br#"{"model":"dall-e-2","prompt":"a hat","n":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["url"].is_string());
    let rec = a.requests().pop().unwrap();
    assert_eq!(rec["path"], "/v1/images/generations");
    assert!(rec["body"].as_str().unwrap().contains("\"dall-e-3\""));

    // Bad input: 400/404/413 in OpenAI's shape, nothing forwarded, and the
    // gateway keeps serving.
    a.clear();
    b.clear();
    let bad_cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (
            "application/json".into(),
            br#"{"model":"dall-e-2"}"#.to_vec(),
            400,
            "multipart/form-data",
        ),
        (
            "multipart/form-data".into(),
            form(&[("model", None, b"dall-e-2")]),
            400,
            "boundary",
        ),
        (
            form_type(),
            form(&[("model", None, b"dall-e-2")])[..60].to_vec(),
            400,
            "invalid multipart body",
        ),
        (
            form_type(),
            b"model=dall-e-2&prompt=x".to_vec(),
            400,
            "invalid multipart body",
        ),
        (
            form_type(),
            form(&[("model", None, b"sd-xl"), ("image", Some("a.png"), &small)]),
            404,
            "sd-xl",
        ),
        // A large form whose model part comes after the image.
        (
            form_type(),
            form(&[("image", Some("a.png"), &big), ("model", None, b"dall-e-2")]),
            413,
            "body_buffer_bytes",
        ),
    ];
    for (ct, body, status, says) in &bad_cases {
        let r = request(
            g.addr,
            "POST",
            "/api/v1/images/edits",
            &[("host", h), ("content-type", ct)],
            body,
        );
        assert_eq!(r.status, *status, "{ct}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(says), "{msg}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    assert!(a.requests().is_empty() && b.requests().is_empty());
    let body = form(&[
        ("model", None, b"dall-e-2"),
        ("image", Some("a.png"), &small),
    ]);
    assert_eq!(
        post_form(g.addr, h, "/api/v1/images/edits", &body).status,
        200
    );
}

// ---------------------------------------------------------------------------
// WebSocket tunnels: DashScope speech and ComfyUI /ws

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// One masked client frame.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one (unmasked) server frame: (opcode, payload).
fn ws_read(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).unwrap();
    (h[0] & 0x0f, payload)
}

/// Opens a WebSocket through the gateway; `early` is sent right behind
/// the upgrade request, in the same write.
fn ws_open(
    addr: SocketAddr,
    host: &str,
    path: &str,
    early: &[u8],
) -> (TcpStream, BufReader<TcpStream>, Response) {
    let mut s = connect(addr);
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
         Authorization: Bearer client-key\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(early);
    s.write_all(&raw).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let head = read_head_only(&mut r).unwrap();
    (s, r, head)
}

fn ws_echo_session(addr: SocketAddr) {
    let (mut s, mut r, head) = ws_open(
        addr,
        "speech.example.com",
        "/api-ws/v1/inference",
        &ws_frame(0x1, br#"{"header":{"action":"run-task"}}"#),
    );
    assert_eq!(head.status, 101);
    assert_eq!(head.header("sec-websocket-accept"), Some(WS_ACCEPT));
    assert!(head
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(head.header("x-request-id").is_some());
    assert_eq!(head.header("x-mock-name"), Some("ds"));
    // The frame sent with the upgrade request comes back first.
    assert_eq!(
        ws_read(&mut r),
        (0x1, br#"{"header":{"action":"run-task"}}"#.to_vec())
    );
    // Short, 16-bit and 64-bit lengths, text and binary; ping → pong.
    for (op, payload) in [
        (0x1u8, b"hello".to_vec()),
        (0x2, blob(300)),
        (0x2, blob(100_000)),
        (0x1, Vec::new()),
    ] {
        s.write_all(&ws_frame(op, &payload)).unwrap();
        assert_eq!(ws_read(&mut r), (op, payload));
    }
    s.write_all(&ws_frame(0x9, b"are you there")).unwrap();
    assert_eq!(ws_read(&mut r), (0xA, b"are you there".to_vec()));
    // Close handshake, then the gateway closes the connection.
    s.write_all(&ws_frame(0x8, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(ws_read(&mut r), (0x8, 1000u16.to_be_bytes().to_vec()));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap_or(0), 0);
}

#[test]
fn websocket_routes_are_byte_tunnels() {
    let ds = MockLlm::start("ds");
    let comfy = MockLlm::start("comfy");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "ds"
provider = "dashscope"
base_url = "{ds}"
api_keys = ["ds-key"]

[[services]]
name = "comfy"
provider = "comfyui"
base_url = "{comfy}"

[[services]]
name = "chat"
provider = "openai_compatible"
base_url = "{ds}"

[[model_apis]]
name = "speech"
scenario = "audio"
protocol = "dashscope"
domains = ["speech.example.com"]
service = {{ mode = "single", target = {{ service = "ds" }} }}

[[model_apis]]
name = "comfy"
scenario = "image"
protocol = "comfyui"
domains = ["comfy.example.com"]
service = {{ mode = "single", target = {{ service = "comfy" }} }}

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["chat.example.com"]
service = {{ mode = "single", target = {{ service = "chat" }} }}
"#,
        ds = ds.url(),
        comfy = comfy.url()
    ));

    // DashScope speech: several sessions at once, over both workers.
    let sessions: Vec<_> = (0..6)
        .map(|_| {
            let addr = g.addr;
            std::thread::spawn(move || ws_echo_session(addr))
        })
        .collect();
    for s in sessions {
        s.join().unwrap();
    }
    let recs = ds.requests();
    assert_eq!(recs.len(), 6);
    for rec in &recs {
        assert_eq!(rec["path"], "/api-ws/v1/inference");
        // The service's key replaced the client's.
        assert_eq!(header_of(rec, "authorization"), Some("Bearer ds-key"));
        assert_eq!(header_of(rec, "sec-websocket-key"), Some(WS_KEY));
        assert!(header_of(rec, "x-request-id").is_some());
    }

    // ComfyUI: the greeting that came with the 101 is relayed, the query
    // goes along, and a client that just hangs up ends the tunnel.
    let (mut s, mut r, head) = ws_open(g.addr, "comfy.example.com", "/ws?clientId=abc", b"");
    assert_eq!(head.status, 101);
    let (op, hello) = ws_read(&mut r);
    assert_eq!(op, 0x1);
    let hello: Value = serde_json::from_slice(&hello).unwrap();
    assert_eq!(hello["type"], "status");
    assert_eq!(hello["served_by"], "comfy");
    s.write_all(&ws_frame(0x2, &blob(5000))).unwrap();
    assert_eq!(ws_read(&mut r), (0x2, blob(5000)));
    assert_eq!(comfy.requests()[0]["path"], "/ws?clientId=abc");
    drop(r);
    drop(s);
    let deadline = Instant::now() + TIMEOUT;
    while comfy.stats()["connections_open"] != 0 {
        assert!(Instant::now() < deadline, "upstream side never closed");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A plain GET on a WebSocket route: 400 (OpenAI shape for ComfyUI),
    // nothing forwarded.
    comfy.clear();
    let r = request(g.addr, "GET", "/ws", &[("host", "comfy.example.com")], b"");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("WebSocket"));
    assert!(comfy.requests().is_empty());
    // Not a WebSocket upgrade (another protocol): refused the same way.
    let r = request(
        g.addr,
        "GET",
        "/api-ws/v1/inference",
        &[
            ("host", "speech.example.com"),
            ("connection", "upgrade"),
            ("upgrade", "h2c"),
        ],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "InvalidParameter");

    // Upgrade on a route that is not a WebSocket route: ignored, plain HTTP.
    ds.clear();
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("host", "chat.example.com"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("content-type", "application/json"),
        ],
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "chat.completion");
    let rec = ds.requests().pop().unwrap();
    assert_eq!(header_of(&rec, "upgrade"), None);
}

/// wss:// upstreams (DashScope's real endpoint is TLS) tunnel the same,
/// here on the epoll driver.
#[test]
fn websocket_tunnel_over_tls_on_epoll() {
    let ds = MockLlm::start("ds");
    let dir = TempDir::new();
    let (front, ca) = common::tls::tls_front(ds.addr, &dir);
    let g = Gateway::start_raw(&format!(
        r#"{}
[[services]]
name = "ds"
provider = "dashscope"
base_url = "https://localhost:{port}"
ca_file = "{ca}"
api_keys = ["ds-key"]

[[model_apis]]
name = "speech"
scenario = "audio"
protocol = "dashscope"
domains = ["speech.example.com"]
service = {{ mode = "single", target = {{ service = "ds" }} }}
"#,
        server_section(2).replace("workers = 2", "workers = 2\nio = \"epoll\""),
        port = front.port(),
        ca = ca.display()
    ));
    for _ in 0..2 {
        ws_echo_session(g.addr);
    }
    let recs = ds.requests();
    assert_eq!(recs.len(), 2);
    assert_eq!(header_of(&recs[0], "authorization"), Some("Bearer ds-key"));
}

// ---------------------------------------------------------------------------
// Audio (OpenAI speech), embeddings, rerank

#[test]
fn speech_embeddings_and_rerank() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "oa"
provider = "openai"
base_url = "{u}"
api_keys = ["sk-oa"]

[[services]]
name = "ds"
provider = "dashscope"
base_url = "{u}"

[[services]]
name = "vl"
provider = "vllm"
base_url = "{u}"

[[model_apis]]
name = "speech"
scenario = "audio"
protocol = "openai"
domains = ["speech.example.com"]
service = {{ mode = "single", target = {{ service = "oa" }} }}

[[model_apis]]
name = "emb"
scenario = "embedding"
protocol = "openai"
domains = ["emb.example.com"]
service = {{ mode = "single", target = {{ service = "oa", model = "text-embedding-3-small" }} }}

[[model_apis]]
name = "rerank-ds"
scenario = "rerank"
protocol = "dashscope"
domains = ["rr-ds.example.com"]
service = {{ mode = "single", target = {{ service = "ds" }} }}

[[model_apis]]
name = "rerank-vllm"
scenario = "rerank"
protocol = "vllm"
domains = ["rr-vl.example.com"]
service = {{ mode = "single", target = {{ service = "vl" }} }}
"#,
        u = up.url()
    ));
    let post = |host: &str, path: &str, body: &str| {
        request(
            g.addr,
            "POST",
            path,
            &[("host", host), ("content-type", "application/json")],
            body.as_bytes(),
        )
    };

    // Speech: binary, relayed chunk by chunk, byte for byte.
    let speech = r#"{"model":"tts-1","input":"hello","voice":"alloy"}"#;
    let direct = request(
        up.addr,
        "POST",
        "/v1/audio/speech",
        &[("content-type", "application/json")],
        speech.as_bytes(),
    );
    let mut s = connect(g.addr);
    s.write_all(&raw_request(
        "POST",
        "/api/v1/audio/speech",
        &[
            ("host", "speech.example.com"),
            ("content-type", "application/json"),
        ],
        speech.as_bytes(),
    ))
    .unwrap();
    let (r, chunks) = read_chunks(&mut BufReader::new(s)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("audio/mpeg"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(!chunks.is_empty());
    assert!(r.body.starts_with(b"ID3"));
    assert_eq!(r.body, direct.body);
    let rec = up.requests().pop().unwrap();
    assert_eq!(rec["path"], "/v1/audio/speech");
    assert_eq!(header_of(&rec, "authorization"), Some("Bearer sk-oa"));

    // Embeddings, with the target's model.
    let r = post(
        "emb.example.com",
        "/v1/embeddings",
        r#"{"model":"e","input":["a b","c"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);

    // Rerank, DashScope's shape.
    let r = post(
        "rr-ds.example.com",
        "/api/v1/services/rerank/text-rerank/text-rerank",
        r#"{"model":"gte-rerank","input":{"query":"a cat","documents":["the dog","my cat sleeps"]},"parameters":{"top_n":1,"return_documents":true}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["output"]["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["output"]["results"][0]["index"], 1);
    assert_eq!(
        up.requests().pop().unwrap()["path"],
        "/api/v1/services/rerank/text-rerank/text-rerank"
    );
    // Rerank, vLLM's shape.
    let r = post(
        "rr-vl.example.com",
        "/v1/rerank",
        r#"{"model":"bge-reranker","query":"cat","documents":["cat here","dog"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "bge-reranker");
    assert_eq!(v["results"][0]["index"], 0);
    assert_eq!(up.requests().pop().unwrap()["path"], "/v1/rerank");

    // Bad input in each protocol's shape, nothing forwarded.
    up.clear();
    let r = post("emb.example.com", "/v1/embeddings", r#"{"input":"x"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post(
        "rr-ds.example.com",
        "/api/v1/services/rerank/text-rerank/text-rerank",
        "not json",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "InvalidParameter");
    assert_eq!(r.json()["request_id"], r.header("x-request-id").unwrap());
    let r = post("rr-vl.example.com", "/v1/score", r#"{"model":"m"}"#);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "route_not_found");
    let r = request(
        g.addr,
        "GET",
        "/api/v1/audio/speech",
        &[("host", "speech.example.com")],
        b"",
    );
    assert_eq!(r.status, 405);
    assert!(up.requests().is_empty());
}

// ---------------------------------------------------------------------------
// ComfyUI: every REST route

#[test]
fn every_comfyui_rest_route() {
    let up = MockLlm::start("comfy");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "comfy"
provider = "comfyui"
base_url = "{u}"

[[model_apis]]
name = "comfy"
scenario = "image"
protocol = "comfyui"
domains = ["*"]
base_path = "/comfy"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "comfy" }} }}
"#,
        u = up.url()
    ));
    let cases: &[(&str, &str, &[u8])] = &[
        ("GET", "/embeddings", b""),
        ("GET", "/extensions", b""),
        ("GET", "/features", b""),
        ("GET", "/models", b""),
        ("GET", "/models/checkpoints", b""),
        ("GET", "/workflow_templates", b""),
        ("GET", "/view?filename=a.png&type=output&subfolder=", b""),
        ("GET", "/view_metadata/loras?filename=x.safetensors", b""),
        ("GET", "/system_stats", b""),
        ("GET", "/prompt", b""),
        (
            "POST",
            "/prompt",
            br#"{"prompt":{"3":{"class_type":"KSampler"}},"client_id":"abc"}"#,
        ),
        ("GET", "/object_info", b""),
        ("GET", "/object_info/KSampler", b""),
        ("GET", "/history?max_items=5", b""),
        ("POST", "/history", br#"{"clear":true}"#),
        ("GET", "/history/0b5e-41", b""),
        ("GET", "/queue", b""),
        ("POST", "/queue", br#"{"delete":["x"]}"#),
        ("POST", "/interrupt", b""),
        ("POST", "/free", br#"{"unload_models":true}"#),
        ("GET", "/userdata?dir=workflows", b""),
        ("GET", "/v2/userdata", b""),
        ("GET", "/userdata/workflows%2Fa.json", b""),
        (
            "POST",
            "/userdata/workflows%2Fa.json?overwrite=true",
            br#"{"nodes":[]}"#,
        ),
        ("DELETE", "/userdata/workflows%2Fa.json", b""),
        ("POST", "/userdata/a.json/move/b.json", b""),
        ("GET", "/users", b""),
        ("POST", "/users", br#"{"username":"x"}"#),
    ];
    for (method, path, body) in cases {
        let r = request(
            g.addr,
            method,
            &format!("/comfy{path}"),
            &[("content-type", "application/json")],
            body,
        );
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["comfyui"], true, "{method} {path}");
        assert_eq!(v["method"], *method);
        assert_eq!(v["path"], *path);
        assert_eq!(v["body_fnv"], fnv_hex(body));
    }
    // Uploads: multipart, a large one streamed through; no model needed.
    for (path, size) in [("/upload/image", 1000), ("/upload/mask", 1_500_000)] {
        let image = blob(size);
        let body = form(&[
            ("image", Some("in.png"), &image),
            ("overwrite", None, b"true"),
        ]);
        let r = post_form(g.addr, "comfy.example.com", &format!("/comfy{path}"), &body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["path"], path);
        assert_eq!(v["name"], "in.png");
        assert_eq!(v["image_bytes"], size);
        assert_eq!(v["image_fnv"], fnv_hex(&image));
    }
    // Gateway errors: OpenAI's shape; nothing forwarded.
    up.clear();
    for (method, path, status) in [
        ("GET", "/comfy/nope", 404),
        ("GET", "/comfy/models/a/b", 404),
        ("DELETE", "/comfy/prompt", 405),
        ("POST", "/comfy/history/abc", 405),
    ] {
        let r = request(g.addr, method, path, &[], b"");
        assert_eq!(r.status, status, "{method} {path}");
        assert!(r.json()["error"]["message"].is_string());
    }
    let r = request(
        g.addr,
        "POST",
        "/comfy/upload/image",
        &[("content-type", "image/png")],
        b"\x89PNG",
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("multipart"));
    assert!(up.requests().is_empty());
}

// ---------------------------------------------------------------------------
// other: models, files, batches, fine-tuning — any method, sub-paths

#[test]
fn other_scenario_routes_take_any_method_and_sub_paths() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "oa"
provider = "openai"
base_url = "{u}"
api_keys = ["sk-oa"]

[[model_apis]]
name = "other"
scenario = "other"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "oa" }} }}
"#,
        u = up.url()
    ));
    // A file upload well past the body buffer (1 MiB): streamed through.
    let file = blob(2_500_000);
    let body = form(&[
        ("purpose", None, b"batch"),
        ("file", Some("batch.jsonl"), &file),
    ]);
    for r in [
        post_form(g.addr, "x", "/v1/files", &body),
        post_chunked(g.addr, "x", "/v1/files", &form_type(), &body),
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["bytes"], file.len());
        assert_eq!(v["sha"], fnv_hex(&file));
        assert_eq!(v["filename"], "batch.jsonl");
        assert_eq!(v["purpose"], "batch");
    }
    let rec = up.requests().pop().unwrap();
    assert_eq!(rec["path"], "/v1/files");
    assert_eq!(header_of(&rec, "authorization"), Some("Bearer sk-oa"));

    // A client that waits for `100 Continue` (curl, for large uploads) is
    // told to go on once the request is routed; the body follows.
    let mut s = connect(g.addr);
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nhost: x\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
         expect: 100-continue\r\n\r\n",
        form_type(),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert_eq!(line, "\r\n");
    s.write_all(&body).unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["sha"], fnv_hex(&file));
    assert_eq!(header_of(&up.requests().pop().unwrap(), "expect"), None);

    // Sub-paths, any method.
    let r = request(g.addr, "GET", "/v1/files/file-xyz/content", &[], b"");
    assert_eq!(r.status, 200);
    let want: Vec<u8> = b"file-xyz\n".iter().copied().cycle().take(3000).collect();
    assert_eq!(r.body, want);
    let r = request(g.addr, "GET", "/v1/files/file-xyz", &[], b"");
    assert_eq!(r.json()["id"], "file-xyz");
    let r = request(g.addr, "DELETE", "/v1/files/file-xyz", &[], b"");
    assert_eq!(r.json()["deleted"], true);
    let r = request(g.addr, "GET", "/v1/files", &[], b"");
    assert_eq!(r.json()["object"], "list");
    let r = request(g.addr, "GET", "/v1/models", &[], b"");
    assert_eq!(r.json()["object"], "list");
    let r = request(g.addr, "GET", "/v1/models/gpt-4o", &[], b"");
    assert_eq!(r.json()["id"], "gpt-4o");
    let echoes: &[(&str, &str, &[u8])] = &[
        ("DELETE", "/v1/models/ft:gpt-4o:acme:1", b""),
        (
            "POST",
            "/v1/batches",
            br#"{"input_file_id":"file-1","endpoint":"/v1/chat/completions"}"#,
        ),
        ("GET", "/v1/batches?limit=2&after=b_0", b""),
        ("GET", "/v1/batches/batch_1", b""),
        ("POST", "/v1/batches/batch_1/cancel", b""),
        (
            "POST",
            "/v1/fine_tuning/jobs",
            br#"{"model":"gpt-4o-mini","training_file":"file-1"}"#,
        ),
        ("GET", "/v1/fine_tuning/jobs/ft-1/events", b""),
        ("PUT", "/v1/fine_tuning/jobs/ft-1", br#"{"x":1}"#),
        ("PATCH", "/v1/batches/batch_1", br#"{"metadata":{}}"#),
    ];
    for (method, path, body) in echoes {
        let r = request(
            g.addr,
            method,
            path,
            &[("content-type", "application/json")],
            body,
        );
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["method"], *method);
        assert_eq!(v["path"], *path);
        assert_eq!(v["body_fnv"], fnv_hex(body));
    }
    up.clear();
    for (method, path, status) in [
        ("GET", "/v1/nothing", 404),
        ("GET", "/v1/filesX", 404),
        ("OPTIONS", "/v1/files", 405),
    ] {
        let r = request(g.addr, method, path, &[], b"");
        assert_eq!(r.status, status, "{method} {path}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    assert!(up.requests().is_empty());
}
