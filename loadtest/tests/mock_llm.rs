//! Integration tests for the `mock-llm` binary: start it on port 0, talk raw
//! HTTP/1.1 over std TcpStream. Every wait is bounded by a timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-llm"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mock-llm");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("mock-llm did not print its address in time");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"));
        Server { child, addr }
    }

    fn conn(&self) -> Conn {
        Conn::open(&self.addr)
    }

    fn stats(&self) -> Value {
        self.conn().request("GET", "/_mock/stats", &[], "").json()
    }

    /// Polls `/_mock/stats` until `key` equals `want` (5 s at most).
    fn wait_stat(&self, key: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.stats();
            if s[key] == want {
                return;
            }
            assert!(Instant::now() < deadline, "{key} never became {want}: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

#[derive(Debug)]
struct Resp {
    head: Head,
    body: Vec<u8>,
    /// Each chunk of a chunked body, in order.
    chunks: Vec<Vec<u8>>,
}

impl Resp {
    fn status(&self) -> u16 {
        self.head.status
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Chunks as strings (one SSE event each).
    fn events(&self) -> Vec<String> {
        self.chunks
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect()
    }
}

/// `data: {...}` payloads of OpenAI-style events (`[DONE]` as a string).
fn data_of(event: &str) -> Value {
    assert!(event.ends_with("\n\n"), "event not whole: {event:?}");
    let d = event
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("not a data event: {event:?}"))
        .trim_end();
    if d == "[DONE]" {
        Value::String(d.into())
    } else {
        serde_json::from_str(d).unwrap()
    }
}

/// `(event name, data)` of an Anthropic-style event.
fn named_of(event: &str) -> (String, Value) {
    assert!(event.ends_with("\n\n"), "event not whole: {event:?}");
    let mut lines = event.trim_end().lines();
    let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
    (name.to_string(), serde_json::from_str(data).unwrap())
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect_timeout(&addr.parse().unwrap(), IO_TIMEOUT).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).unwrap();
    }

    fn send_request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        let raw = raw_request(method, path, headers, body);
        self.send(raw.as_bytes());
    }

    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        self.send_request(method, path, headers, body);
        self.read_response().unwrap()
    }

    fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
        self.request("POST", path, headers, &body.to_string())
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut tmp = [0u8; 8192];
        let n = self.s.read(&mut tmp)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_exact_buf(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_head(&mut self) -> io::Result<Head> {
        let status_line = self.read_line()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let status = parts.next().unwrap_or("").parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = self.read_line()?;
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok(Head { status, headers })
    }

    /// The next chunk of a chunked body; `None` after the last chunk.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = self.read_line()?;
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        if size == 0 {
            let end = self.read_line()?;
            assert!(end.is_empty());
            return Ok(None);
        }
        let mut data = self.read_exact_buf(size + 2)?;
        assert_eq!(&data[size..], b"\r\n");
        data.truncate(size);
        Ok(Some(data))
    }

    fn read_response(&mut self) -> io::Result<Resp> {
        let head = self.read_head()?;
        let mut chunks = Vec::new();
        let body = if head.chunked() {
            while let Some(c) = self.next_chunk()? {
                chunks.push(c);
            }
            chunks.concat()
        } else {
            let len: usize = head
                .header("content-length")
                .expect("content-length")
                .parse()
                .unwrap();
            self.read_exact_buf(len)?
        };
        Ok(Resp { head, body, chunks })
    }

    /// Whether the server closed the connection (EOF or reset) in time.
    fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nhost: mock.test\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        r.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

fn chat_body(content: &str, extra: Value) -> Value {
    let mut b = json!({"model": "gpt-test", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": content}]},
    ]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn chat_completion_plain() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let r = c.post(
        "/openai/deployments/gpt4/chat/completions?api-version=x",
        &[],
        &chat_body("one two three", json!({"max_tokens": 5})),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("x-mock-name"), Some("mock"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-llm token token"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 10);

    // Defaults: 3 tokens; `max_completion_tokens`; `x-mock-chunks` wins.
    let v = c
        .post("/v1/chat/completions", &[], &chat_body("x", json!({})))
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock-llm");
    assert_eq!(v["usage"]["total_tokens"], 3 + 3);
    let v = c
        .post(
            "/v1/chat/completions",
            &[],
            &chat_body("x", json!({"max_completion_tokens": 1})),
        )
        .json();
    assert_eq!(v["usage"]["completion_tokens"], 1);
    let v = c
        .post(
            "/api/paas/v4/chat/completions",
            &[("x-mock-chunks", "7")],
            &chat_body("x", json!({"max_tokens": 2})),
        )
        .json();
    assert_eq!(v["usage"]["completion_tokens"], 7);
}

#[test]
fn chat_completion_stream() {
    let srv = Server::start(&["--name", "s1"]);
    let mut c = srv.conn();
    let body = chat_body(
        "a b c d",
        json!({"stream": true, "max_tokens": 4, "stream_options": {"include_usage": true}}),
    );
    let r = c.post("/compatible-mode/v1/chat/completions", &[], &body);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-mock-name"), Some("s1"));
    assert!(r.head.chunked());
    let evs: Vec<Value> = r.events().iter().map(|e| data_of(e)).collect();
    // 4 token chunks, finish chunk, usage chunk, [DONE]
    assert_eq!(evs.len(), 7, "{evs:?}");
    assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(evs[0]["object"], "chat.completion.chunk");
    let text: String = evs[..4]
        .iter()
        .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from mock-llm token");
    assert!(evs[1]["choices"][0]["delta"].get("role").is_none());
    assert_eq!(evs[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(evs[5]["choices"], json!([]));
    let u = &evs[5]["usage"];
    assert_eq!(u["prompt_tokens"], 6);
    assert_eq!(u["completion_tokens"], 4);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(evs[6], "[DONE]");

    // Same connection, no include_usage: no usage chunk.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat_body("x", json!({"stream": true})),
    );
    let evs: Vec<Value> = r.events().iter().map(|e| data_of(e)).collect();
    assert_eq!(evs.len(), 3 + 2);
    assert!(evs.iter().all(|e| e.get("usage").is_none()));
    assert_eq!(evs[4], "[DONE]");
    assert_eq!(srv.stats()["connections_total"], 1);
}

#[test]
fn text_completion_embeddings_models_and_404() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let v = c
        .post(
            "/v1/completions",
            &[],
            &json!({"model": "m", "prompt": "say hi", "max_tokens": 2}),
        )
        .json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "Hello from");
    assert_eq!(v["usage"]["total_tokens"], 4);
    let r = c.post(
        "/v1/completions",
        &[],
        &json!({"prompt": "x", "stream": true, "stream_options": {"include_usage": true}}),
    );
    let evs: Vec<Value> = r.events().iter().map(|e| data_of(e)).collect();
    assert_eq!(evs.len(), 3 + 3);
    assert_eq!(evs[0]["choices"][0]["text"], "Hello");
    assert_eq!(evs[4]["usage"]["total_tokens"], 4);

    let v = c
        .post(
            "/v1/embeddings",
            &[],
            &json!({"model": "emb", "input": ["a b", "c"]}),
        )
        .json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 3);
    let again = c
        .post("/v1/embeddings", &[], &json!({"input": "a b"}))
        .json();
    assert_eq!(again["data"][0]["embedding"], v["data"][0]["embedding"]);

    let v = c.request("GET", "/v1/models", &[], "").json();
    assert_eq!(v["object"], "list");
    assert!(!v["data"].as_array().unwrap().is_empty());

    let r = c.request("GET", "/nothing/here", &[], "");
    assert_eq!(r.status(), 404);
    assert!(r.json()["error"]["message"].is_string());
    let r = c.request("POST", "/v1/chat/completions", &[], "not json");
    assert_eq!(r.status(), 400);
    assert_eq!(r.json()["error"]["param"], Value::Null);

    let r = c.request("POST", "/api/v1/audio/speech", &[], "{}");
    assert_eq!(r.header("content-type"), Some("audio/mpeg"));
    assert!(r.chunks.len() >= 3);
    assert!(r.body.len() >= 2048);
}

#[test]
fn anthropic_messages() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let body = json!({"model": "claude-x", "max_tokens": 2, "system": "be nice",
        "messages": [{"role": "user", "content": "hello there"}]});
    let v = c.post("/anthropic/v1/messages", &[], &body).json();
    assert_eq!(v["type"], "message");
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(v["content"][0]["text"], "Hello from");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], 2);

    let mut body = body;
    body["stream"] = json!(true);
    let r = c.post("/api/anthropic/v1/messages", &[], &body);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let evs: Vec<(String, Value)> = r.events().iter().map(|e| named_of(e)).collect();
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (n, d) in &evs {
        assert_eq!(d["type"], n.as_str());
    }
    assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 4);
    assert_eq!(evs[0].1["message"]["usage"]["output_tokens"], 1);
    assert_eq!(evs[3].1["delta"]["type"], "text_delta");
    assert_eq!(evs[4].1["delta"]["text"], " from");
    assert_eq!(evs[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(evs[6].1["usage"]["output_tokens"], 2);
}

#[test]
fn tool_calls_when_forced() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let args = r#"{"city":"Paris","days":3}"#;
    // OpenAI: tool_choice names a function.
    let body = chat_body(
        "weather?",
        json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
               "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    );
    let v = c.post("/v1/chat/completions", &[], &body).json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert!(call["id"]
        .as_str()
        .unwrap()
        .starts_with("call_chatcmpl-mock-"));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], args);
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    // Streamed: the header names the tool; arguments come in fragments.
    let mut body = chat_body(
        "x",
        json!({"tools": [{"type": "function", "function": {"name": "a"}}], "stream": true}),
    );
    body["tool_choice"] = json!("auto");
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-tool-call", "lookup")],
        &body,
    );
    let evs: Vec<Value> = r.events().iter().map(|e| data_of(e)).collect();
    assert_eq!(evs.len(), 6);
    let first = &evs[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["function"]["name"], "lookup");
    assert_eq!(first["function"]["arguments"], "");
    let joined: String = evs[1..4]
        .iter()
        .map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(joined, args);
    assert_eq!(evs[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(evs[5], "[DONE]");

    // No tools declared: the header alone changes nothing.
    let v = c
        .post(
            "/v1/chat/completions",
            &[("x-mock-tool-call", "f")],
            &chat_body("x", json!({})),
        )
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Anthropic: {"type":"any"} calls the first tool.
    let body = json!({"model": "claude-x", "max_tokens": 5, "tool_choice": {"type": "any"},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "weather?"}]});
    let v = c.post("/v1/messages", &[], &body).json();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["name"], "get_weather");
    assert_eq!(
        v["content"][0]["input"],
        json!({"city": "Paris", "days": 3})
    );
    let mut body = body;
    body["stream"] = json!(true);
    let r = c.post("/v1/messages", &[], &body);
    let evs: Vec<(String, Value)> = r.events().iter().map(|e| named_of(e)).collect();
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[1].1["content_block"]["type"], "tool_use");
    let joined: String = evs[2..5]
        .iter()
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(joined, args);
    assert_eq!(evs[6].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn dashscope_async_task_and_rerank() {
    let srv = Server::start(&["--name", "ds1"]);
    let mut c = srv.conn();
    let path = "/api/v1/services/aigc/text2image/image-synthesis";
    let body = json!({"model": "wanx-v1", "input": {"prompt": "a cat"}});
    let v = c
        .post(path, &[("X-DashScope-Async", "enable")], &body)
        .json();
    assert_eq!(v["output"]["task_status"], "PENDING");
    let task = v["output"]["task_id"].as_str().unwrap().to_string();
    assert!(task.starts_with("ds1-task-"), "{task}");
    assert!(v["request_id"].is_string());

    let r = c.request("GET", &format!("/api/v1/tasks/{task}"), &[], "");
    assert_eq!(r.status(), 200);
    let v = r.json();
    assert_eq!(v["output"]["task_id"], task.as_str());
    assert_eq!(v["output"]["task_status"], "SUCCEEDED");
    assert_eq!(v["output"]["results"][0]["url"], "http://mock/x.png");
    assert_eq!(v["served_by"], "ds1");

    let r = c.request("GET", "/api/v1/tasks/other-task-1", &[], "");
    assert_eq!(r.status(), 404);
    let v = r.json();
    assert!(v["code"].is_string() && v["message"].is_string() && v["request_id"].is_string());

    // Without the async header: a finished result at once.
    let v = c.post(path, &[], &body).json();
    assert_eq!(v["output"]["task_status"], "SUCCEEDED");

    let v = c
        .post(
            "/api/v1/services/rerank/text-rerank/text-rerank",
            &[],
            &json!({"model": "gte-rerank", "input": {"query": "red apple",
                    "documents": ["green pear", "red apple pie", "sky"]},
                    "parameters": {"top_n": 2}}),
        )
        .json();
    let res = v["output"]["results"].as_array().unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0]["index"], 1);
    assert!(
        res[0]["relevance_score"].as_f64().unwrap() > res[1]["relevance_score"].as_f64().unwrap()
    );
    assert_eq!(v["usage"]["total_tokens"], 2 + 2 + 3 + 1);

    let v = c
        .post(
            "/v1/rerank",
            &[],
            &json!({"model": "bge", "query": "red", "documents": ["blue", "red"]}),
        )
        .json();
    assert_eq!(v["results"][0]["index"], 1);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
}

#[test]
fn chunked_request_body_and_pipelining() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let body = chat_body("w1 w2 w3 w4 w5 w6 w7", json!({})).to_string();
    let (a, b) = body.split_at(10);
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
    std::thread::sleep(Duration::from_millis(30));
    c.send(format!("{:x}\r\n{a}\r\n", a.len()).as_bytes());
    std::thread::sleep(Duration::from_millis(30));
    c.send(format!("{:x};ext=1\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json()["usage"]["prompt_tokens"], 9);

    // Two pipelined requests in one write.
    let mut two = raw_request("GET", "/v1/models", &[], "");
    two.push_str(&raw_request(
        "POST",
        "/v1/embeddings",
        &[],
        &json!({"input": "x"}).to_string(),
    ));
    c.send(two.as_bytes());
    assert_eq!(c.read_response().unwrap().json()["object"], "list");
    assert_eq!(
        c.read_response().unwrap().json()["data"][0]["object"],
        "embedding"
    );

    let recs = srv.conn().request("GET", "/_mock/requests", &[], "").json();
    assert_eq!(recs[0]["body"], body.as_str());

    // Both Content-Length and Transfer-Encoding: refused.
    let mut bad = srv.conn();
    bad.send(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(bad.read_response().unwrap().status(), 400);
    assert!(bad.is_closed());
}

#[test]
fn injected_status_uses_protocol_shape() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let h = [("x-mock-status", "503")];
    let r = c.post(
        "/v1/chat/completions",
        &h,
        &chat_body("x", json!({"stream": true})),
    );
    assert_eq!(r.status(), 503);
    assert_eq!(r.header("x-mock-name"), Some("mock"));
    let e = &r.json()["error"];
    assert!(e["message"].is_string() && e["type"].is_string() && e["code"].is_string());
    assert_eq!(e["param"], Value::Null);

    let r = c.post(
        "/v1/messages",
        &h,
        &json!({"max_tokens": 1, "messages": []}),
    );
    assert_eq!(r.status(), 503);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string());

    let r = c.post(
        "/api/v1/services/aigc/text2image/image-synthesis",
        &[("x-mock-status", "429")],
        &json!({}),
    );
    assert_eq!(r.status(), 429);
    let v = r.json();
    assert!(v["code"].is_string() && v["message"].is_string() && v["request_id"].is_string());
    // The connection survives an error answer.
    assert_eq!(c.request("GET", "/v1/models", &[], "").status(), 200);
}

#[test]
fn reset_after_cuts_the_stream() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    c.send_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-reset-after", "2")],
        &chat_body("x", json!({"stream": true, "max_tokens": 10})).to_string(),
    );
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    let mut got = 0;
    let err = loop {
        match c.next_chunk() {
            Ok(Some(ev)) => {
                data_of(std::str::from_utf8(&ev).unwrap());
                got += 1;
            }
            Ok(None) => panic!("stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 2);
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ),
        "{err:?}"
    );

    // Non-stream with K=0: reset instead of any answer.
    let mut c = srv.conn();
    c.send_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-reset-after", "0")],
        &chat_body("x", json!({})).to_string(),
    );
    assert!(c.read_head().is_err());
    srv.wait_stat("connections_open", 0);
}

#[test]
fn fault_target_selects_the_server() {
    let a = Server::start(&["--name", "primary"]);
    let b = Server::start(&["--name", "fallback"]);
    let h = [("x-mock-status", "500"), ("x-mock-fault-target", "primary")];
    let body = chat_body("x", json!({}));
    let ra = a.conn().post("/v1/chat/completions", &h, &body);
    let rb = b.conn().post("/v1/chat/completions", &h, &body);
    assert_eq!(ra.status(), 500);
    assert_eq!(ra.header("x-mock-name"), Some("primary"));
    assert_eq!(rb.status(), 200);
    assert_eq!(rb.header("x-mock-name"), Some("fallback"));
    // Without the target header the fault applies everywhere.
    let rb = b
        .conn()
        .post("/v1/chat/completions", &[("x-mock-status", "500")], &body);
    assert_eq!(rb.status(), 500);
}

#[test]
fn recording_echo_and_stats() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    for i in 0..3 {
        let r = c.request(
            "POST",
            &format!("/v1/embeddings?i={i}"),
            &[("X-Custom", "v")],
            &json!({"input": "q"}).to_string(),
        );
        assert_eq!(r.status(), 200);
    }
    let s = srv.stats();
    assert_eq!(s["connections_total"], 1, "{s}");
    assert_eq!(s["connections_open"], 1, "{s}");
    assert_eq!(s["requests_total"], 3, "{s}");

    let mut insp = srv.conn();
    let recs = insp.request("GET", "/_mock/requests", &[], "").json();
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["method"], "POST");
    assert_eq!(recs[2]["path"], "/v1/embeddings?i=2");
    assert_eq!(recs[0]["body"], r#"{"input":"q"}"#);
    assert!(recs[0]["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-custom", "v"])));

    let r = c.request("POST", "/anything", &[("x-mock-echo", "1")], "hello");
    assert_eq!(r.status(), 200);
    let v = r.json();
    assert_eq!(v["path"], "/anything");
    assert_eq!(v["body"], "hello");

    assert_eq!(
        insp.request("DELETE", "/_mock/requests", &[], "").status(),
        200
    );
    let recs = insp.request("GET", "/_mock/requests", &[], "").json();
    assert_eq!(recs, json!([]));

    drop(c);
    srv.wait_stat("connections_open", 0);
    assert_eq!(srv.stats()["requests_total"], 4);
}

#[test]
fn stall_holds_until_the_client_leaves() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    c.send_request(
        "POST",
        "/v1/messages",
        &[("x-mock-stall-after", "1")],
        &json!({"max_tokens": 3, "stream": true, "messages": []}).to_string(),
    );
    assert_eq!(c.read_head().unwrap().status, 200);
    let ev = c.next_chunk().unwrap().unwrap();
    assert_eq!(
        named_of(std::str::from_utf8(&ev).unwrap()).0,
        "message_start"
    );
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = c.next_chunk().unwrap_err();
    assert!(matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    assert_eq!(srv.stats()["connections_open"], 1);
    drop(c);
    srv.wait_stat("connections_open", 0);
}

#[test]
fn timing_faults() {
    let srv = Server::start(&["--itl-ms", "30"]);
    let mut c = srv.conn();
    let t = Instant::now();
    let r = c.request("GET", "/v1/models", &[("x-mock-delay-ms", "200")], "");
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(200));

    let t = Instant::now();
    c.send_request("GET", "/v1/models", &[("x-mock-first-byte-ms", "300")], "");
    let head = c.read_head().unwrap();
    let head_at = t.elapsed();
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    c.read_exact_buf(len).unwrap();
    assert!(head_at < Duration::from_millis(250), "{head_at:?}");
    assert!(t.elapsed() >= Duration::from_millis(300));

    // x-mock-chunk-delay-ms before every event: 3 tokens + finish +
    // [DONE] = 4 gaps.
    let t = Instant::now();
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-chunk-delay-ms", "40"), ("x-mock-itl-ms", "0")],
        &chat_body("x", json!({"stream": true})),
    );
    assert_eq!(r.chunks.len(), 5);
    assert!(t.elapsed() >= Duration::from_millis(160));

    // --chunk-delay-ms sets the same for every request.
    let srv = Server::start(&["--chunk-delay-ms", "40"]);
    let mut c = srv.conn();
    let t = Instant::now();
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat_body("x", json!({"stream": true})),
    );
    assert_eq!(r.chunks.len(), 5);
    assert!(t.elapsed() >= Duration::from_millis(160));
}

/// Reads a chunked SSE response, noting when each chunk arrived.
fn timed_chunks(c: &mut Conn, t: Instant) -> Vec<(Duration, String)> {
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    let mut out = Vec::new();
    while let Some(ch) = c.next_chunk().unwrap() {
        out.push((t.elapsed(), String::from_utf8(ch).unwrap()));
    }
    out
}

#[test]
fn token_pacing() {
    let srv = Server::start(&["--ttft-ms", "150", "--itl-ms", "30"]);
    let mut c = srv.conn();
    // Streamed: first token at TTFT, one token per ITL, the finish and
    // [DONE] events right after the last token.
    let t = Instant::now();
    let body = chat_body("x", json!({"stream": true, "max_tokens": 5}));
    c.send_request("POST", "/v1/chat/completions", &[], &body.to_string());
    let chunks = timed_chunks(&mut c, t);
    assert_eq!(chunks.len(), 7);
    let at: Vec<u64> = chunks.iter().map(|(d, _)| d.as_millis() as u64).collect();
    assert!((150..250).contains(&at[0]), "{at:?}");
    for w in at[..5].windows(2) {
        assert!((20..80).contains(&(w[1] - w[0])), "{at:?}");
    }
    assert!(at[6] - at[4] < 20, "{at:?}");

    // Per-request overrides; Anthropic's preamble comes at once.
    let t = Instant::now();
    let body = json!({"model": "m", "max_tokens": 3, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    c.send_request(
        "POST",
        "/v1/messages",
        &[("x-mock-ttft-ms", "300"), ("x-mock-itl-ms", "0")],
        &body.to_string(),
    );
    let chunks = timed_chunks(&mut c, t);
    assert!(chunks[0].1.contains("message_start"));
    assert!(chunks[0].0 < Duration::from_millis(150), "{chunks:?}");
    let first_delta = chunks
        .iter()
        .find(|(_, e)| e.contains("content_block_delta"))
        .unwrap();
    assert!(first_delta.0 >= Duration::from_millis(300), "{chunks:?}");

    // Not streamed: the answer comes when its last token would.
    let t = Instant::now();
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-itl-ms", "50")],
        &chat_body("x", json!({"max_tokens": 4})),
    );
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // Not a generation: not paced.
    let t = Instant::now();
    c.request("GET", "/v1/models", &[], "");
    assert!(t.elapsed() < Duration::from_millis(100));
}

#[test]
fn max_concurrency_queues_generations() {
    let srv = Server::start(&["--ttft-ms", "200", "--max-concurrency", "2"]);
    let t = Instant::now();
    let mut conns: Vec<Conn> = (0..4).map(|_| srv.conn()).collect();
    let body = chat_body("x", json!({"max_tokens": 1})).to_string();
    for c in &mut conns {
        c.send_request("POST", "/v1/chat/completions", &[], &body);
    }
    let mut done = Vec::new();
    for c in &mut conns {
        assert_eq!(c.read_response().unwrap().status(), 200);
        done.push(t.elapsed());
    }
    done.sort();
    // Two at a time: two answers at ~200 ms, two at ~400 ms.
    assert!(done[1] < Duration::from_millis(350), "{done:?}");
    assert!(done[2] >= Duration::from_millis(390), "{done:?}");
}

#[test]
fn close_and_garbage() {
    let srv = Server::start(&[]);
    let mut c = srv.conn();
    let r = c.request("GET", "/v1/models", &[("x-mock-close", "1")], "");
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());

    let mut c = srv.conn();
    c.send_request("GET", "/v1/models", &[("x-mock-garbage", "1")], "");
    let mut all = Vec::new();
    let _ = c.s.read_to_end(&mut all);
    assert!(!all.is_empty());
    assert!(!all.starts_with(b"HTTP/"));
}

#[test]
fn hang_up_interim_heads_idle_close_and_connection_events() {
    let srv = Server::start(&[]);
    // x-mock-interim: 100 and 103 heads in the same write as the final one.
    let mut c = srv.conn();
    let interim = [("x-mock-interim", "100,103"), ("x-request-id", "i")];
    c.send_request("GET", "/v1/models", &interim, "");
    assert_eq!(c.read_head().unwrap().status, 100);
    assert!(
        find(&c.buf, b"HTTP/1.1 200 OK\r\n").is_some(),
        "not one write"
    );
    let early = c.read_head().unwrap();
    assert_eq!(early.status, 103);
    assert!(early.header("link").unwrap().contains("preload"));
    assert_eq!(c.read_response().unwrap().status(), 200);

    // x-mock-continue-every-ms: 100 Continue again and again, no final head.
    let t = Instant::now();
    let every = [("x-mock-continue-every-ms", "50"), ("x-request-id", "c")];
    c.send_request("GET", "/v1/models", &every, "");
    for _ in 0..4 {
        assert_eq!(c.read_head().unwrap().status, 100);
    }
    assert!(t.elapsed() >= Duration::from_millis(150));
    drop(c); // peer_closed

    // x-mock-hang-up: the whole request is read, then FIN without a byte.
    let mut c = srv.conn();
    let hang_up = [("x-mock-hang-up", "1"), ("x-request-id", "h")];
    c.send_request("POST", "/v1/chat/completions", &hang_up, "{}");
    let e = c.read_head().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);

    // A body cut short: `cut` with the body bytes that came.
    let mut c = srv.conn();
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\nx-request-id: cut\r\ncontent-length: 100\r\n\r\n0123456789");
    drop(c);

    // x-mock-idle-close-ms: keep-alive framing, then closed once idle.
    let mut c = srv.conn();
    let r = c.request("GET", "/v1/models", &[("x-mock-idle-close-ms", "100")], "");
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let t = Instant::now();
    assert!(c.is_closed());
    assert!(t.elapsed() < Duration::from_secs(2));

    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let v = srv.conn().request("GET", "/_mock/events", &[], "").json();
        let evs: Vec<(String, String, Value)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let rid = e["request_id"].as_str().unwrap_or("-").to_string();
                (
                    e["event"].as_str().unwrap().to_string(),
                    rid,
                    e["value"].clone(),
                )
            })
            .collect();
        let has = |ev: &str| evs.iter().any(|(e, _, _)| e == ev);
        if (has("cut") && has("peer_closed")) || Instant::now() > deadline {
            break evs;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ev = |e: &str, r: &str, v: Value| (e.to_string(), r.to_string(), v);
    for want in [
        ev("head", "i", Value::Null),
        ev("head", "c", Value::Null),
        ev("head", "h", json!(2)),
        ev("hung_up", "h", Value::Null),
        ev("head", "cut", json!(100)),
        ev("cut", "cut", json!(10)),
        ev("head", "-", Value::Null),
    ] {
        assert!(events.contains(&want), "{want:?} not in {events:?}");
    }
    assert!(events
        .iter()
        .any(|(e, r, v)| e == "peer_closed" && r == "c" && v.as_u64() >= Some(150)));
    let cleared = srv.conn().request("DELETE", "/_mock/events", &[], "");
    assert_eq!(cleared.status(), 200);
    let v = srv.conn().request("GET", "/_mock/events", &[], "").json();
    assert_eq!(v, json!([]));
}
