//! Observability (PRODUCT.md §9): `/metrics` counts and token sums, the
//! access log's fields and body logging with redaction, W3C trace context
//! to the upstream, OTLP/HTTP span export, health endpoints.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn services(up: &MockLlm) -> String {
    format!(
        r#"
[[services]]
name = "oa"
provider = "openai_compatible"
base_url = "{url}"

[[services]]
name = "an"
provider = "anthropic"
base_url = "{url}"
"#,
        url = up.url()
    )
}

fn api(name: &str, protocol: &str, base: &str, service: &str, extra: &str) -> String {
    format!(
        r#"
[[model_apis]]
name = "{name}"
scenario = "text"
protocol = "{protocol}"
domains = ["*"]
base_path = "{base}"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "{service}" }} }}
{extra}
"#
    )
}

/// `/metrics` samples: `name{labels}` → value.
fn metrics(g: &Gateway) -> HashMap<String, f64> {
    let r = request(g.admin, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// Sum of the samples of `name` whose labels include every pair given.
fn sum(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(n, v)| k.contains(&format!("{n}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Polls `/metrics` until `ok` holds, for at most `within`.
fn wait_metrics(
    g: &Gateway,
    within: Duration,
    ok: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + within;
    loop {
        let m = metrics(g);
        if ok(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "metrics not as expected within {within:?}: {m:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The access log line (stdout) of the request with `id`.
fn log_line(g: &Gateway, id: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = g.proc.lines.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["request_id"] == id).then_some(v)
        });
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {id}: {:?}",
            g.proc.lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Input and output tokens as the client saw them in the answer's usage.
fn client_usage(body: &[u8], stream: bool) -> (u64, u64) {
    let mut usage = (0, 0);
    let mut take = |u: &Value| {
        for k in ["prompt_tokens", "input_tokens"] {
            if let Some(n) = u[k].as_u64() {
                usage.0 = n;
            }
        }
        for k in ["completion_tokens", "output_tokens"] {
            if let Some(n) = u[k].as_u64() {
                usage.1 = n;
            }
        }
    };
    if !stream {
        take(&serde_json::from_slice::<Value>(body).unwrap()["usage"]);
        return usage;
    }
    for d in sse_data(body) {
        let Ok(v) = serde_json::from_str::<Value>(&d) else {
            continue;
        };
        if v["usage"].is_object() {
            take(&v["usage"]);
        } else if v["message"]["usage"].is_object() {
            take(&v["message"]["usage"]);
        }
    }
    usage
}

#[test]
fn counts_and_token_sums_across_workers() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        "{}{}{}",
        services(&up),
        api("chat", "openai", "/", "oa", ""),
        api("msgs", "anthropic", "/anthropic", "an", "")
    ));
    // A known mix, plain and streamed, each request on its own connection
    // (so both workers serve some), from four clients at once.
    let mut jobs = Vec::new();
    for i in 0..24u64 {
        let stream = i % 2 == 1;
        let anthropic = i % 4 >= 2;
        let words = "tell me a story ".repeat(1 + i as usize % 3);
        let mut body = json!({
            "model": if anthropic { "claude-x" } else { "gpt-x" },
            "max_tokens": 2 + i % 5,
            "stream": stream,
            "messages": [{"role": "user", "content": words}],
        });
        if stream && !anthropic {
            body["stream_options"] = json!({"include_usage": true});
        }
        let path = if anthropic {
            "/anthropic/v1/messages"
        } else {
            "/v1/chat/completions"
        };
        jobs.push((path, anthropic, stream, body.to_string()));
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let results = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (jobs, results, addr) = (jobs.clone(), results.clone(), g.addr);
            std::thread::spawn(move || loop {
                let Some((path, anthropic, stream, body)) = jobs.lock().unwrap().pop() else {
                    return;
                };
                let r = request(
                    addr,
                    "POST",
                    path,
                    &[("content-type", "application/json")],
                    body.as_bytes(),
                );
                assert_eq!(r.status, 200, "{}", r.text());
                let usage = client_usage(&r.body, stream);
                results.lock().unwrap().push((anthropic, stream, usage));
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 24);

    for (api_name, service, model, anthropic) in [
        ("chat", "oa", "gpt-x", false),
        ("msgs", "an", "claude-x", true),
    ] {
        let mine: Vec<_> = results.iter().filter(|r| r.0 == anthropic).collect();
        let input: u64 = mine.iter().map(|r| r.2 .0).sum();
        let output: u64 = mine.iter().map(|r| r.2 .1).sum();
        let streamed = mine.iter().filter(|r| r.1).count() as f64;
        assert!(input > 0 && output > 0);
        let labels = [
            ("model_api", api_name),
            ("service", service),
            ("model", model),
            ("consumer", ""),
            ("resource_group", "default"),
        ];
        let route = if anthropic {
            "create-message"
        } else {
            "create-chat-completion"
        };
        let m = wait_metrics(&g, TIMEOUT, |m| {
            sum(m, "modelgate_requests_total", &labels) == mine.len() as f64
        });
        let with_status: Vec<_> = labels
            .iter()
            .copied()
            .chain([("status", "200"), ("route", route)])
            .collect();
        assert_eq!(
            sum(&m, "modelgate_requests_total", &with_status),
            mine.len() as f64
        );
        assert_eq!(
            sum(&m, "modelgate_input_tokens_total", &labels),
            input as f64
        );
        assert_eq!(
            sum(&m, "modelgate_output_tokens_total", &labels),
            output as f64
        );
        assert_eq!(
            sum(&m, "modelgate_request_duration_seconds_count", &labels),
            mine.len() as f64
        );
        let inf: Vec<_> = labels.iter().copied().chain([("le", "+Inf")]).collect();
        assert_eq!(
            sum(&m, "modelgate_request_duration_seconds_bucket", &inf),
            mine.len() as f64
        );
        // First packet: streamed requests only.
        assert_eq!(
            sum(&m, "modelgate_first_packet_seconds_count", &labels),
            streamed
        );
    }
    let m = metrics(&g);
    assert_eq!(sum(&m, "modelgate_active_connections", &[]), 0.0);
    assert_eq!(sum(&m, "modelgate_access_log_dropped_total", &[]), 0.0);
}

#[test]
fn access_log_fields_fallbacks_and_errors() {
    let bad = MockLlm::start("bad");
    let good = MockLlm::start("good");
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "bad"
provider = "openai_compatible"
base_url = "{bad}"

[[services]]
name = "good"
provider = "openai_compatible"
base_url = "{good}"

[[model_apis]]
name = "fb"
scenario = "text"
protocol = "openai"
domains = ["*"]
resource_group = "team-a"
service = {{ mode = "single", target = {{ service = "bad", model = "small" }} }}
fallback = {{ enabled = true, targets = [{{ service = "good" }}] }}
"#,
        bad = bad.url(),
        good = good.url()
    ));

    // A plain answer: every field of the line.
    let body =
        r#"{"model":"m1","max_tokens":4,"messages":[{"role":"user","content":"one two three"}]}"#;
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "obs-plain-1"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    // Shows in /metrics within one second of the answer.
    let labels = [("model_api", "fb"), ("service", "bad"), ("model", "small")];
    wait_metrics(&g, Duration::from_secs(1), |m| {
        sum(m, "modelgate_requests_total", &labels) == 1.0
    });
    let usage = client_usage(&r.body, false);
    let l = log_line(&g, "obs-plain-1");
    let ts = l["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert_eq!(l["model_api"], "fb");
    assert_eq!(l["route"], "create-chat-completion");
    assert_eq!(l["consumer"], Value::Null);
    assert_eq!(l["service"], "bad");
    assert_eq!(l["model"], "small", "the model sent upstream");
    assert_eq!(l["status"], 200);
    assert_eq!(l["input_tokens"], usage.0);
    assert_eq!(l["output_tokens"], usage.1);
    assert_eq!(l["fallbacks"], 0);
    assert_eq!(l["stream"], false);
    let duration = l["duration_ms"].as_f64().unwrap();
    let first = l["first_packet_ms"].as_f64().unwrap();
    assert!(duration > 0.0 && first > 0.0 && first <= duration, "{l}");
    assert_eq!(l["trace_id"].as_str().unwrap().len(), 32);
    assert!(l.get("request_body").is_none() && l.get("response_body").is_none());

    // A 503 from the primary: one fallback, counted per Model API and
    // service, and the primary's failure as an upstream error.
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "obs-fallback-1"),
            ("x-mock-status", "503"),
            ("x-mock-fault-target", "bad"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelgate-fallback"), Some("1"));
    let l = log_line(&g, "obs-fallback-1");
    assert_eq!(l["fallbacks"], 1);
    assert_eq!(l["service"], "good");
    assert_eq!(
        l["model"], "m1",
        "the fallback target passes the model through"
    );
    assert_eq!(l["status"], 200);
    let m = wait_metrics(&g, TIMEOUT, |m| {
        sum(m, "modelgate_fallbacks_total", &[]) == 1.0
    });
    assert_eq!(
        sum(
            &m,
            "modelgate_fallbacks_total",
            &[("model_api", "fb"), ("service", "good")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "modelgate_upstream_errors_total",
            &[("service", "bad"), ("kind", "http_5xx")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "modelgate_requests_total",
            &[
                ("model_api", "fb"),
                ("service", "good"),
                ("resource_group", "team-a"),
                ("status", "200")
            ]
        ),
        1.0
    );

    // Both fail: the gateway's own error, logged with its code.
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "obs-failed-1"),
            ("x-mock-status", "500"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 500);
    let l = log_line(&g, "obs-failed-1");
    assert_eq!(
        (l["status"].as_u64(), l["fallbacks"].as_u64()),
        (Some(500), Some(1))
    );
    // A path the Model API has no route for, and a request refused
    // before routing.
    let r = request(
        g.addr,
        "GET",
        "/nowhere",
        &[("x-request-id", "obs-404")],
        b"",
    );
    assert_eq!(r.status, 404);
    let l = log_line(&g, "obs-404");
    assert_eq!(l["status"], 404);
    assert_eq!(l["model_api"], "fb");
    assert_eq!(l["route"], Value::Null);
    assert_eq!(l["service"], Value::Null);
    assert_eq!(l["error"], "route_not_found");
    let mut s = connect(g.addr);
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let bad_resp = read_response(&mut r, false).unwrap();
    assert_eq!(bad_resp.status, 400);
    let id = bad_resp.header("x-request-id").unwrap().to_string();
    assert_eq!(log_line(&g, &id)["status"], 400);
    let m = wait_metrics(&g, TIMEOUT, |m| {
        sum(m, "modelgate_requests_total", &[("status", "400")]) == 1.0
    });
    assert_eq!(
        sum(
            &m,
            "modelgate_upstream_errors_total",
            &[("service", "bad"), ("kind", "http_5xx")]
        ),
        2.0
    );
}

#[test]
fn body_logging_redacts_credentials_and_is_capped() {
    let up = MockLlm::start("up");
    let logged =
        r#"monitoring = { enabled = true, log_request_body = true, log_response_body = true }"#;
    let off = r#"monitoring = { enabled = false }"#;
    let g = Gateway::start_raw(&format!(
        "{}body_max_bytes = 400\n{}{}{}{}",
        server_section(2),
        services(&up),
        api("logged", "openai", "/logged", "oa", logged),
        api("plain", "openai", "/plain", "oa", ""),
        api("unmonitored", "openai", "/off", "oa", off),
    ));
    let body = json!({
        "model": "m",
        "api_key": "sk-live-SECRET-1",
        "metadata": {"password": "SECRET-2", "note": "keep me"},
        "messages": [{"role": "user", "content": "hello body log"}],
    })
    .to_string();
    let send = |path: &str, id: &str, body: &str| {
        let r = request(
            g.addr,
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer sk-client-SECRET-3"),
                ("x-request-id", id),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r
    };
    let r = send("/logged/v1/chat/completions", "obs-body-on", &body);
    let l = log_line(&g, "obs-body-on");
    let text = l.to_string();
    assert!(!text.contains("SECRET"), "credentials leaked: {text}");
    let req_body = l["request_body"].as_str().unwrap();
    let logged_req: Value = serde_json::from_str(req_body).unwrap();
    assert_eq!(logged_req["api_key"], "[REDACTED]");
    assert_eq!(logged_req["metadata"]["password"], "[REDACTED]");
    assert_eq!(logged_req["metadata"]["note"], "keep me");
    assert_eq!(logged_req["messages"][0]["content"], "hello body log");
    let resp_body: Value = serde_json::from_str(l["response_body"].as_str().unwrap()).unwrap();
    assert_eq!(resp_body, r.json());

    // Over the cap: cut at body_max_bytes.
    let long =
        json!({"model": "m", "messages": [{"role": "user", "content": "word ".repeat(500)}]})
            .to_string();
    send("/logged/v1/chat/completions", "obs-body-long", &long);
    let l = log_line(&g, "obs-body-long");
    assert_eq!(l["request_body"].as_str().unwrap().len(), 400);
    assert!(long.starts_with(l["request_body"].as_str().unwrap()));

    // Off by default; no line at all where monitoring is disabled, but
    // the request still counts.
    send("/plain/v1/chat/completions", "obs-body-off", &body);
    let l = log_line(&g, "obs-body-off");
    assert!(l.get("request_body").is_none() && l.get("response_body").is_none());
    send("/off/v1/chat/completions", "obs-unmonitored", &body);
    wait_metrics(&g, TIMEOUT, |m| {
        sum(
            m,
            "modelgate_requests_total",
            &[("model_api", "unmonitored")],
        ) == 1.0
    });
    // Lines are written in order per worker; give the writer a moment.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!g
        .proc
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("obs-unmonitored")));
}

#[test]
fn access_log_to_a_file_or_off() {
    let up = MockLlm::start("up");
    let dir = TempDir::new();
    let path = dir.0.join("logs/access.log");
    let section = server_section(2).replace(
        "[log]\n",
        &format!("[log]\naccess = \"{}\"\n", path.display()),
    );
    let g = Gateway::start_raw(&format!(
        "{section}{}{}",
        services(&up),
        api("chat", "openai", "/", "oa", "")
    ));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    for i in 0..3 {
        let id = format!("obs-file-{i}");
        let r = request(
            g.addr,
            "POST",
            "/v1/chat/completions",
            &[("x-request-id", &id)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["request_id"].to_string())
            .collect();
        if ids.len() == 3 {
            for i in 0..3 {
                assert!(ids.contains(&format!("\"obs-file-{i}\"")));
            }
            break;
        }
        assert!(Instant::now() < deadline, "log file: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!g
        .proc
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("obs-file")));

    // logrotate: the file is moved away, SIGHUP reopens the path.
    std::fs::rename(&path, dir.0.join("logs/access.log.1")).unwrap();
    g.signal("HUP");
    let deadline = Instant::now() + TIMEOUT;
    for i in 0.. {
        let id = format!("obs-rotated-{i}");
        let r = request(
            g.addr,
            "POST",
            "/v1/chat/completions",
            &[("x-request-id", &id)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(300));
        if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("obs-rotated-")) {
            break;
        }
        assert!(Instant::now() < deadline, "no line in the reopened file");
    }
    drop(g);

    let section = server_section(2).replace("[log]\n", "[log]\naccess = \"off\"\n");
    let g = Gateway::start_raw(&format!(
        "{section}{}{}",
        services(&up),
        api("chat", "openai", "/", "oa", "")
    ));
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-request-id", "obs-off")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    wait_metrics(&g, TIMEOUT, |m| {
        sum(m, "modelgate_requests_total", &[]) == 1.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!g
        .proc
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("obs-off")));
}

/// The `traceparent` (and `tracestate`) the upstream got for `id`.
fn upstream_trace(up: &MockLlm, id: &str) -> (String, Option<String>) {
    let reqs = up.requests();
    let r = reqs
        .iter()
        .find(|r| {
            r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "x-request-id" && h[1] == id)
        })
        .unwrap_or_else(|| panic!("upstream never saw {id}"));
    let header = |name: &str| {
        let hs: Vec<String> = r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_string())
            .collect();
        assert!(hs.len() <= 1, "{name} sent {} times", hs.len());
        hs.into_iter().next()
    };
    (
        header("traceparent").expect("no traceparent"),
        header("tracestate"),
    )
}

/// (version, trace id, span id, flags) of a well-formed traceparent.
fn parts(tp: &str) -> (String, String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert!(p.iter().all(|s| s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
    assert_eq!(
        (p[0].len(), p[1].len(), p[2].len(), p[3].len()),
        (2, 32, 16, 2)
    );
    assert_ne!(p[1], "0".repeat(32));
    assert_ne!(p[2], "0".repeat(16));
    (p[0].into(), p[1].into(), p[2].into(), p[3].into())
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn traceparent_propagates_to_the_upstream() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        "{}{}",
        services(&up),
        api("chat", "openai", "/", "oa", "")
    ));
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let send = |id: &str, headers: &[(&str, &str)]| {
        let mut h = vec![("x-request-id", id)];
        h.extend_from_slice(headers);
        let r = request(g.addr, "POST", "/v1/chat/completions", &h, body.as_bytes());
        assert_eq!(r.status, 200);
    };

    // Joined: same trace, a new child span, same flags, tracestate kept.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    send(
        "obs-tp-valid",
        &[("traceparent", &tp), ("tracestate", "vendor=1")],
    );
    let (got, state) = upstream_trace(&up, "obs-tp-valid");
    let (v, trace, span, flags) = parts(&got);
    assert_eq!(
        (v.as_str(), trace.as_str(), flags.as_str()),
        ("00", CLIENT_TRACE, "01")
    );
    assert_ne!(span, CLIENT_SPAN);
    assert_eq!(state.as_deref(), Some("vendor=1"));
    assert_eq!(log_line(&g, "obs-tp-valid")["trace_id"], CLIENT_TRACE);

    // Not sampled by the caller: still propagated as such.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    send("obs-tp-unsampled", &[("traceparent", &tp)]);
    let (got, _) = upstream_trace(&up, "obs-tp-unsampled");
    assert_eq!(parts(&got).3, "00");

    // Absent: a new trace, the one the access log names.
    send("obs-tp-none", &[]);
    let (got, _) = upstream_trace(&up, "obs-tp-none");
    let (_, trace, _, flags) = parts(&got);
    assert_eq!(flags, "01");
    assert_ne!(trace, CLIENT_TRACE);
    assert_eq!(log_line(&g, "obs-tp-none")["trace_id"], trace.as_str());

    // Malformed: never forwarded as is; a new trace, its tracestate dropped.
    for (i, bad) in [
        format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase()),
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra"),
        "garbage".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("obs-tp-bad-{i}");
        send(&id, &[("traceparent", bad), ("tracestate", "vendor=2")]);
        let (got, state) = upstream_trace(&up, &id);
        assert_ne!(&got, bad);
        let (_, trace, _, _) = parts(&got);
        assert_ne!(trace, CLIENT_TRACE);
        assert_ne!(trace.to_uppercase(), CLIENT_TRACE.to_uppercase());
        assert_eq!(state, None);
    }
}

/// A tiny OTLP/HTTP collector: stores each JSON body posted to it.
struct Collector {
    addr: std::net::SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let b = b.clone();
                std::thread::spawn(move || serve_collector(stream, b));
            }
        });
        Collector { addr, bodies }
    }

    fn spans(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn serve_collector(stream: std::net::TcpStream, bodies: Arc<Mutex<Vec<Value>>>) {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    // Keep-alive: one POST after another, bounded.
    for _ in 0..1000 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /v1/traces "), "{line}");
        let mut len = 0;
        let mut json = false;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            json |= h == "content-type: application/json";
        }
        assert!(json, "OTLP/HTTP JSON expected");
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        w.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap();
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or(&Value::Null)
}

#[test]
fn spans_are_exported_over_otlp_http() {
    let bad = MockLlm::start("bad");
    let good = MockLlm::start("good");
    let collector = Collector::start();
    let section = server_section(2).replace(
        "[log]\n",
        &format!(
            "[trace]\notlp_endpoint = \"http://{}\"\nservice_name = \"gw-test\"\n[log]\n",
            collector.addr
        ),
    );
    let g = Gateway::start_raw(&format!(
        r#"{section}
[[services]]
name = "bad"
provider = "openai_compatible"
base_url = "{bad}"

[[services]]
name = "good"
provider = "openai_compatible"
base_url = "{good}"

[[model_apis]]
name = "fb"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "bad" }} }}
fallback = {{ enabled = true, targets = [{{ service = "good" }}] }}
"#,
        bad = bad.url(),
        good = good.url()
    ));
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c"}]}"#;
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("traceparent", &tp),
            ("x-request-id", "obs-otlp"),
            ("x-mock-status", "503"),
            ("x-mock-fault-target", "bad"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let (input, output) = client_usage(&r.body, true);

    let deadline = Instant::now() + TIMEOUT;
    let spans = loop {
        let spans: Vec<Value> = collector
            .spans()
            .into_iter()
            .filter(|s| s["traceId"] == CLIENT_TRACE)
            .collect();
        if spans.len() >= 4 {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans: {spans:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let res = &collector.bodies.lock().unwrap()[0]["resourceSpans"][0]["resource"];
    assert!(res.to_string().contains("gw-test"));

    let server = spans.iter().find(|s| s["kind"] == 2).expect("server span");
    assert_eq!(server["parentSpanId"], CLIENT_SPAN);
    assert_eq!(attr(server, "http.response.status_code")["intValue"], "200");
    assert_eq!(attr(server, "modelgate.model_api")["stringValue"], "fb");
    assert_eq!(
        attr(server, "modelgate.request_id")["stringValue"],
        "obs-otlp"
    );
    assert_eq!(attr(server, "modelgate.fallbacks")["intValue"], "1");
    assert_eq!(
        attr(server, "gen_ai.usage.input_tokens")["intValue"],
        input.to_string()
    );
    assert_eq!(
        attr(server, "gen_ai.usage.output_tokens")["intValue"],
        output.to_string()
    );
    let start: u64 = server["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u64 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 1_600_000_000_000_000_000 && end >= start);

    // One client span per attempt, each the parent the upstream was given.
    let attempts: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!(attempts.len(), 2);
    for (a, (up, svc, failed)) in attempts
        .iter()
        .zip([(&bad, "bad", true), (&good, "good", false)])
    {
        assert_eq!(a["parentSpanId"], server["spanId"]);
        assert_eq!(attr(a, "modelgate.service")["stringValue"], svc);
        assert_eq!(a["status"]["code"], if failed { 2 } else { 0 });
        let (seen, _) = upstream_trace(up, "obs-otlp");
        assert_eq!(parts(&seen).2, a["spanId"].as_str().unwrap());
    }
    let first = spans.iter().find(|s| s["name"] == "first packet").unwrap();
    assert_eq!(first["parentSpanId"], attempts[1]["spanId"]);
}

#[test]
fn health_readiness_and_metrics_need_no_token() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&format!(
        "{}{}{}",
        server_section(2).replace("[admin]\n", "[admin]\ntoken = \"admin-secret\"\n"),
        services(&up),
        api("chat", "openai", "/", "oa", "")
    ));
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = request(g.admin, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}");
    }
    assert_eq!(
        request(g.admin, "GET", "/readyz", &[], b"").json()["status"],
        "ready"
    );
    let m = metrics(&g);
    for name in [
        "modelgate_active_connections",
        "modelgate_access_log_dropped_total",
        "modelgate_trace_spans_dropped_total",
    ] {
        assert!(m.contains_key(name), "{name}");
    }
    // The shipped Grafana dashboard queries only metrics served here.
    let text = request(g.admin, "GET", "/metrics", &[], b"").text();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            exprs += 1;
            for (at, _) in expr.match_indices("modelgate_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = name.trim_end_matches("_bucket");
                assert!(
                    text.contains(&format!("# TYPE {family} ")),
                    "{name} in {expr}"
                );
            }
        }
    }
    assert!(exprs >= 10);

    // An open connection shows as active.
    let mut s = connect(g.addr);
    s.write_all(&raw_request(
        "POST",
        "/v1/chat/completions",
        &[],
        br#"{"model":"m","messages":[]}"#,
    ))
    .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    assert_eq!(sum(&metrics(&g), "modelgate_active_connections", &[]), 1.0);
}

#[test]
fn check_reports_bad_observability_settings() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        "[trace]\notlp_endpoint = \"ftp://collector\"\n[log]\nbody_max_bytes = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trace.otlp_endpoint: must start with http://"),
        "{err}"
    );
    assert!(err.contains("log.body_max_bytes"), "{err}");
}

#[test]
fn a_stream_cut_midway_is_logged_and_counted() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        "{}{}",
        services(&up),
        api("chat", "openai", "/", "oa", "")
    ));
    let body =
        r#"{"model":"m","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-request-id", "obs-cut"), ("x-mock-reset-after", "2")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"error\""));
    let l = log_line(&g, "obs-cut");
    assert_eq!(l["status"], 200);
    assert_eq!(l["error"], "upstream_protocol_error");
    assert_eq!(l["stream"], true);
    assert!(l["first_packet_ms"].as_f64().unwrap() > 0.0);
    wait_metrics(&g, TIMEOUT, |m| {
        sum(
            m,
            "modelgate_upstream_errors_total",
            &[("service", "oa"), ("kind", "stream")],
        ) == 1.0
    });
}

/// An upstream that answers every request with a chunked JSON body whose
/// `usage` is split across chunks.
fn chunked_json_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                for _ in 0..16 {
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let parts = [
                        r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"us"#,
                        r#"age":{"prompt_tokens":41,"comple"#,
                        r#"tion_tokens":17,"total_tokens":58}}"#,
                    ];
                    let mut out = String::from(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                    );
                    for p in parts {
                        out.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
                    }
                    out.push_str("0\r\n\r\n");
                    if w.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn usage_of_chunked_and_large_json_answers() {
    let up = MockLlm::start("up");
    let chunked = chunked_json_upstream();
    let g = Gateway::start(&format!(
        r#"{}
[[services]]
name = "chunky"
provider = "openai_compatible"
base_url = "http://{chunked}"
{}{}"#,
        services(&up),
        api("chat", "openai", "/", "oa", ""),
        api("chunked", "openai", "/chunked", "chunky", ""),
    ));
    // A chunked JSON answer: usage split across chunks.
    for _ in 0..2 {
        let r = g.post(
            "/chunked/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.status, 200);
        assert_eq!(client_usage(&r.body, false), (41, 17));
    }
    // A large answer that arrives over many reads.
    let r = g.post(
        "/v1/chat/completions",
        r#"{"model":"big","max_tokens":6000,"messages":[{"role":"user","content":"write a lot"}]}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 32 * 1024, "{}", r.body.len());
    let usage = client_usage(&r.body, false);
    assert_eq!(usage.1, 6000);
    let m = wait_metrics(&g, TIMEOUT, |m| {
        sum(m, "modelgate_requests_total", &[]) == 3.0
    });
    assert_eq!(
        sum(
            &m,
            "modelgate_input_tokens_total",
            &[("model_api", "chunked")]
        ),
        82.0
    );
    assert_eq!(
        sum(
            &m,
            "modelgate_output_tokens_total",
            &[("model_api", "chunked")]
        ),
        34.0
    );
    assert_eq!(
        sum(&m, "modelgate_output_tokens_total", &[("model", "big")]),
        6000.0
    );
    assert_eq!(
        sum(&m, "modelgate_input_tokens_total", &[("model", "big")]),
        usage.0 as f64
    );
}

/// Usage is read from the upstream's own answer, before the gateway
/// translates it or hides the usage chunk it asked for: whole and streamed,
/// Anthropic ⇄ OpenAI, and OpenAI pass-through streams.
#[test]
fn usage_of_translated_and_reshaped_answers() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&format!(
        "{}{}{}{}",
        services(&up),
        api("to-oa", "anthropic", "/a", "oa", ""),
        api("to-an", "openai", "/o", "an", ""),
        api("plain", "openai", "/p", "oa", ""),
    ));
    let post = |path: &str, id: &str, body: Value| {
        let r = request(
            g.addr,
            "POST",
            path,
            &[("content-type", "application/json"), ("x-request-id", id)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        r
    };
    let logged = |id: &str| {
        let l = log_line(&g, id);
        (
            l["input_tokens"].as_u64().unwrap_or(0),
            l["output_tokens"].as_u64().unwrap_or(0),
        )
    };
    let messages = json!([{"role": "user", "content": "one two three"}]);

    // Anthropic client, OpenAI service: the client sees translated usage.
    for (id, stream) in [("tr-a-whole", false), ("tr-a-stream", true)] {
        let r = post(
            "/a/v1/messages",
            id,
            json!({"model": "m", "max_tokens": 5, "stream": stream, "messages": messages}),
        );
        let usage = client_usage(&r.body, stream);
        assert_eq!(usage.1, 5, "{id}");
        assert!(usage.0 > 0, "{id}");
        assert_eq!(logged(id), usage, "{id}");
    }

    // OpenAI client, Anthropic service, whole and streamed with usage asked.
    let r = post(
        "/o/v1/chat/completions",
        "tr-o-whole",
        json!({"model": "m", "max_tokens": 5, "messages": messages}),
    );
    let usage = client_usage(&r.body, false);
    assert_eq!(usage.1, 5);
    assert_eq!(logged("tr-o-whole"), usage);
    let r = post(
        "/o/v1/chat/completions",
        "tr-o-usage",
        json!({"model": "m", "max_tokens": 5, "stream": true,
               "stream_options": {"include_usage": true}, "messages": messages}),
    );
    assert_eq!(client_usage(&r.body, true), usage);
    assert_eq!(logged("tr-o-usage"), usage);

    // Streams whose client sees no usage: still logged.
    let r = post(
        "/o/v1/chat/completions",
        "tr-o-hidden",
        json!({"model": "m", "max_tokens": 5, "stream": true, "messages": messages}),
    );
    assert_eq!(client_usage(&r.body, true), (0, 0));
    assert_eq!(logged("tr-o-hidden"), usage);
    let r = post(
        "/p/v1/chat/completions",
        "pass-hidden",
        json!({"model": "m", "max_tokens": 5, "stream": true, "messages": messages}),
    );
    assert_eq!(client_usage(&r.body, true), (0, 0));
    let (_, out) = logged("pass-hidden");
    assert_eq!(out, 5);
    assert!(logged("pass-hidden").0 > 0);
}
