//! Integration tests for `modelgate-load`: the real binary against a real
//! `mock-llm` on port 0 with known pacing, each run a second or two. They
//! check what was measured against what the mock was told to do, within
//! generous bounds (these are correctness tests, not benchmarks).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest any one modelgate-load run may take in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(30);

struct Mock {
    child: Child,
    addr: String,
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
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
        let Ok(line) = rx.recv_timeout(IO_TIMEOUT) else {
            let _ = child.kill();
            panic!("mock-llm did not print its address in time");
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Mock { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> Value {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        let body = all.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    /// Model requests the mock has served.
    fn served(&self) -> u64 {
        self.get("/_mock/stats")["requests_total"].as_u64().unwrap()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("mgl-test-{}-{n}-{name}", std::process::id()))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Option<Value>,
}

fn wait_bounded(mut child: Child) -> Output {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("modelgate-load ran past {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_load(args: &[&str], json: &PathBuf) -> Child {
    Command::new(env!("CARGO_BIN_EXE_modelgate-load"))
        .args(args)
        .arg("--json")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn modelgate-load")
}

/// Runs modelgate-load with `args` plus `--json`, and reads the report.
fn load(args: &[&str]) -> Run {
    let json = temp_path("report.json");
    let out = wait_bounded(spawn_load(args, &json));
    finish(out, &json)
}

fn finish(out: Output, json: &PathBuf) -> Run {
    let report = std::fs::read_to_string(json)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("the report is JSON"));
    let _ = std::fs::remove_file(json);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    fn report(&self) -> &Value {
        self.report.as_ref().expect("a report was written")
    }
}

fn f(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{ptr} is not a number in {v:#}"))
}

fn u(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ptr} is not a count in {v:#}"))
}

#[test]
fn closed_loop_counts_every_answer_and_reports_the_contract_fields() {
    let mock = Mock::start(&[]);
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--concurrency",
        "4",
        "--threads",
        "2",
        "--duration",
        "1s",
        "--max-tokens",
        "5",
        "--input-tokens",
        "12",
    ])
    .ok();
    let r = run.report();
    let n = u(r, "/requests");
    assert!(n > 20, "{r:#}");
    assert_eq!(n, mock.served(), "every request the mock served is counted");
    assert_eq!((u(r, "/ok"), u(r, "/errors")), (n, 0));
    assert_eq!(
        (r["mode"].as_str(), u(r, "/concurrency")),
        (Some("closed"), 4)
    );
    // Tokens from the answers' usage: max_tokens out, 12 words in.
    assert_eq!(u(r, "/usage_reported"), n);
    assert_eq!(u(r, "/output_tokens"), 5 * n);
    assert_eq!(u(r, "/input_tokens"), 12 * n);
    let rps = f(r, "/rps");
    assert!(rps > 0.0);
    assert!((f(r, "/output_tokens_per_s") - 5.0 * rps).abs() < 0.01 * rps);
    // About `requests` answers in the one-second window.
    assert!((n as f64 - rps).abs() < 0.2 * rps, "n {n} rps {rps}");
    for k in ["latency_ms", "ttft_ms", "itl_ms"] {
        assert!(
            r[k].get("p50").is_some() && r[k].get("p99").is_some(),
            "{k}: {r:#}"
        );
    }
    let (p50, p99) = (f(r, "/latency_ms/p50"), f(r, "/latency_ms/p99"));
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= f(r, "/latency_ms/max"),
        "{r:#}"
    );
    // Not streamed: no TTFT or ITL samples.
    assert_eq!(u(r, "/ttft_ms/count"), 0);
    assert!(r["ttft_ms"]["p50"].is_null());
    assert_eq!(
        u(r, "/send_lag_ms/count"),
        0,
        "closed loop: no intended times"
    );
    // The final table.
    assert!(
        run.stdout.contains("closed loop, concurrency 4"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("requests    {n:>10}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("latency"), "{}", run.stdout);
    // The progress line, once a second.
    assert!(run.stderr.contains("[   1s]"), "{}", run.stderr);
}

#[test]
fn open_loop_holds_the_rate() {
    let mock = Mock::start(&[]);
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--rate",
        "200/s",
        "--duration",
        "1.5s",
        "--threads",
        "2",
        "--arrivals",
        "uniform",
        "-q",
    ])
    .ok();
    let r = run.report();
    // Uniform arrivals: exactly rate x duration sent, all answered.
    assert_eq!(u(r, "/sent"), 300);
    assert_eq!(u(r, "/requests"), 300);
    assert_eq!(mock.served(), 300);
    let rps = f(r, "/rps");
    assert!((rps - 200.0).abs() <= 4.0, "rps {rps} not within 2% of 200");
    assert_eq!(r["mode"], "open");
    assert_eq!(f(r, "/rate"), 200.0);
    // Each request's lateness against its intended send time is measured
    // (and small at this rate).
    assert_eq!(u(r, "/send_lag_ms/count"), 300);
    assert!(f(r, "/send_lag_ms/p50") < 20.0, "{r:#}");
    assert!(
        run.stderr.is_empty(),
        "-q prints no progress: {}",
        run.stderr
    );

    // Poisson arrivals: the same rate on average (the seed fixes the draw).
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--rate",
        "200/s",
        "--duration",
        "1s",
        "--arrivals",
        "poisson",
        "-q",
    ])
    .ok();
    let n = u(run.report(), "/requests");
    assert!((160..=240).contains(&n), "{n}");
}

#[test]
fn streaming_ttft_and_itl_match_the_mock_pacing() {
    let mock = Mock::start(&["--ttft-ms", "100", "--itl-ms", "20"]);
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--stream",
        "--rate",
        "20/s",
        "--duration",
        "1s",
        "--max-tokens",
        "10",
        "--threads",
        "1",
    ])
    .ok();
    let r = run.report();
    let n = u(r, "/requests");
    assert_eq!((n, u(r, "/errors")), (20, 0));
    let ttft = f(r, "/ttft_ms/p50");
    assert!(
        (100.0..=110.0).contains(&ttft),
        "ttft p50 {ttft} not within 10% of 100"
    );
    let itl = f(r, "/itl_ms/p50");
    assert!(
        (18.0..=22.0).contains(&itl),
        "itl p50 {itl} not within 10% of 20"
    );
    let tpot = f(r, "/tpot_ms/p50");
    assert!((18.0..=22.0).contains(&tpot), "tpot p50 {tpot}");
    // 9 gaps per stream of 10 tokens.
    assert_eq!(u(r, "/itl_ms/count"), 9 * n);
    // The whole answer: TTFT plus nine gaps.
    let lat = f(r, "/latency_ms/p50");
    assert!((280.0..=320.0).contains(&lat), "latency p50 {lat}");
    assert_eq!(u(r, "/output_tokens"), 10 * n);
    assert_eq!(u(r, "/usage_reported"), n);
    assert!(run.stdout.contains("ttft"), "{}", run.stdout);

    // Anthropic streams, with per-request pacing set by headers.
    let run = load(&[
        &mock.url("/v1/messages"),
        "--stream",
        "--concurrency",
        "2",
        "--duration",
        "1s",
        "--max-tokens",
        "4",
        "-H",
        "x-mock-ttft-ms: 150",
        "-H",
        "x-mock-itl-ms: 10",
        "-q",
    ])
    .ok();
    let r = run.report();
    let n = u(r, "/requests");
    assert!(n >= 4, "{r:#}");
    let ttft = f(r, "/ttft_ms/p50");
    assert!((150.0..=165.0).contains(&ttft), "ttft p50 {ttft}");
    let itl = f(r, "/itl_ms/p50");
    assert!((8.0..=12.0).contains(&itl), "itl p50 {itl}");
    assert_eq!(u(r, "/output_tokens"), 4 * n);
    assert_eq!(r["api"], "messages");
}

#[test]
fn output_lengths_drawn_per_request_are_counted_from_usage() {
    let mock = Mock::start(&[]);
    let run = load(&[
        &mock.url("/v1/completions"),
        "--stream",
        "--rate",
        "400/s",
        "--duration",
        "0.5s",
        "--output-tokens",
        "uniform:3:9",
        "-q",
    ])
    .ok();
    let r = run.report();
    // Within what the mock keeps a record of.
    let n = u(r, "/requests");
    assert_eq!(n, 200);
    // What was asked for, from the mock's record of the requests.
    let asked: u64 = mock
        .get("/_mock/requests")
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| {
            let body: Value = serde_json::from_str(rec["body"].as_str().unwrap()).unwrap();
            body["max_tokens"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(u(r, "/output_tokens"), asked);
    let per = asked as f64 / n as f64;
    assert!((4.0..=8.0).contains(&per), "{per}");
}

#[test]
fn errors_are_counted_by_kind() {
    let mock = Mock::start(&[]);
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--concurrency",
        "2",
        "--duration",
        "0.5s",
        "-H",
        "x-mock-status: 503",
        "-q",
    ]);
    // Nothing succeeded: a failed run, with its report kept.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no request succeeded"),
        "{}",
        run.stderr
    );
    let r = run.report();
    let n = u(r, "/requests");
    assert!(n > 0);
    assert_eq!(u(r, "/errors"), n);
    assert_eq!(u(r, "/errors_by_kind/status_503"), n);
    assert!(r["first_error"]
        .as_str()
        .unwrap()
        .contains("injected status 503"));
    assert!(run.stdout.contains("status_503"), "{}", run.stdout);

    // Streams cut by a reset count as I/O errors.
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--stream",
        "--concurrency",
        "2",
        "--duration",
        "0.5s",
        "-H",
        "x-mock-reset-after: 2",
        "-q",
    ]);
    let r = run.report();
    assert!(u(r, "/errors_by_kind/io") > 0, "{r:#}");
    assert_eq!(u(r, "/errors"), u(r, "/requests"));

    // Answers slower than --timeout.
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--concurrency",
        "2",
        "--duration",
        "0.3s",
        "--timeout",
        "100ms",
        "-H",
        "x-mock-delay-ms: 1000",
        "-q",
    ]);
    let r = run.report();
    let n = u(r, "/requests");
    assert!(n >= 2, "{r:#}");
    assert_eq!(u(r, "/errors_by_kind/timeout"), n);
}

#[test]
fn bad_input_fails_clearly_and_keeps_the_report() {
    // A port held (bound, never listening) for the whole test: connects
    // are refused and no other test can take it meanwhile.
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let port = held.local_addr().unwrap().as_socket().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let run = load(&[&url, "--duration", "1s"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    assert_eq!(u(run.report(), "/errors_by_kind/connect"), 1);

    // A streaming request answered with plain JSON.
    let mock = Mock::start(&[]);
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--stream",
        "--concurrency",
        "2",
        "--duration",
        "5s",
        "-H",
        "x-mock-echo: 1",
        "-q",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("not text/event-stream"),
        "{}",
        run.stderr
    );
    let r = run.report();
    assert!(u(r, "/errors_by_kind/not_sse") >= 1);
    assert!(r["aborted"].as_str().unwrap().contains("application/json"));
    assert!(f(r, "/elapsed_s") < 2.0, "stopped at once: {r:#}");

    // A malformed JSONL prompt file: the line is named, nothing is sent.
    let file = temp_path("prompts.jsonl");
    std::fs::write(&file, "\"fine\"\n{\"prompt\": broken}\n").unwrap();
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--prompt-file",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("prompts.jsonl:2: not JSON"),
        "{}",
        run.stderr
    );

    // A path that names no known API.
    let run = load(&[&mock.url("/v2/whatever")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--api"), "{}", run.stderr);
}

#[test]
fn interrupt_stops_the_run_and_keeps_the_report() {
    let mock = Mock::start(&[]);
    let json = temp_path("interrupted.json");
    let child = spawn_load(
        &[
            &mock.url("/v1/chat/completions"),
            "--rate",
            "50/s",
            "--duration",
            "30s",
            "-q",
        ],
        &json,
    );
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signalling our own child by its id.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let started = Instant::now();
    let run = finish(wait_bounded(child), &json);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(run.code, 1);
    let r = run.report();
    assert_eq!(r["aborted"], "interrupted");
    assert!(u(r, "/requests") > 10, "{r:#}");
}

#[test]
fn compare_prints_the_ratio_table() {
    let mock = Mock::start(&[]);
    let a = temp_path("a.json");
    let b = temp_path("b.json");
    for (path, c) in [(&a, "1"), (&b, "4")] {
        let out = wait_bounded(spawn_load(
            &[
                &mock.url("/v1/chat/completions"),
                "-c",
                c,
                "-d",
                "0.5s",
                "--threads",
                "1",
                "-q",
            ],
            path,
        ));
        assert!(out.status.success());
    }
    let read = |p: &PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (ra, rb) = (read(&a), read(&b));
    let out = wait_bounded(
        Command::new(env!("CARGO_BIN_EXE_modelgate-load"))
            .arg("--compare")
            .args([&a, &b])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let rps = row("rps");
    let want = f(&rb, "/rps") / f(&ra, "/rps");
    assert_eq!(rps[3], format!("{want:.3}"), "{text}");
    assert_eq!(rps[1], format!("{:.3}", f(&ra, "/rps")));
    assert!(
        text.lines().any(|l| l.starts_with("latency p99 ms")),
        "{text}"
    );
    assert!(text.lines().next().unwrap().contains("B/A"));
}

#[test]
fn sweep_finds_the_highest_rate_meeting_the_slo() {
    // Two generations at a time, 50 ms each: about 40 requests/s at most.
    let mock = Mock::start(&["--ttft-ms", "50", "--max-concurrency", "2"]);
    let run = load(&[
        &mock.url("/v1/chat/completions"),
        "--stream",
        "--max-tokens",
        "1",
        "--sweep",
        "20:100:40/s",
        "--duration",
        "0.6s",
        "--slo",
        "p99_ttft=150ms",
        "--timeout",
        "5s",
        "-q",
    ])
    .ok();
    let r = run.report();
    assert_eq!(f(r, "/max_rate"), 20.0, "{r:#}");
    let steps = r["steps"].as_array().unwrap();
    // 20/s met it, 60/s did not (queueing), and the sweep stopped there.
    assert_eq!(steps.len(), 2, "{r:#}");
    assert_eq!(steps[0]["slo_met"], true);
    assert_eq!(steps[1]["slo_met"], false);
    assert!(f(&steps[1], "/ttft_ms/p99") > 150.0);
    assert!(steps[1]["slo_violations"][0]
        .as_str()
        .unwrap()
        .starts_with("p99_ttft<=150ms"));
    assert_eq!(r["slo"][0], "p99_ttft<=150ms");
    assert!(
        run.stdout.contains("max rate meeting the SLO: 20/s"),
        "{}",
        run.stdout
    );
}

/// A small HTTPS server on 127.0.0.1 with a certificate from a fresh CA:
/// answers every request with a chat completion (usage 7 tokens), keeping
/// connections alive. Returns its address and the CA's PEM file.
fn tls_server() -> (String, PathBuf) {
    use std::sync::Arc;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "modelgate-load test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let ca_file = temp_path("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        // Bounded: a few hundred connections at most in these tests.
        for tcp in listener.incoming().take(500).flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":7,"total_tokens":10}}"#;
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                // One request after another, up to 100,000 per connection.
                for _ in 0..100_000 {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        match s.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes())
                        .and_then(|_| s.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, ca_file)
}

#[test]
fn https_targets_with_a_trusted_ca() {
    let (addr, ca) = tls_server();
    let url = format!("https://{addr}/v1/chat/completions");
    let run = load(&[
        &url,
        "--cacert",
        ca.to_str().unwrap(),
        "--concurrency",
        "2",
        "--duration",
        "0.5s",
        "-q",
    ])
    .ok();
    let r = run.report();
    let n = u(r, "/requests");
    assert!(n > 5, "{r:#}");
    assert_eq!(u(r, "/errors"), 0);
    assert_eq!(u(r, "/output_tokens"), 7 * n);

    // Not trusted without the CA: every connection fails its handshake.
    let run = load(&[&url, "--concurrency", "1", "--duration", "0.3s", "-q"]);
    let _ = std::fs::remove_file(&ca);
    assert_eq!(run.code, 1);
    let r = run.report();
    assert_eq!(u(r, "/errors_by_kind/connect"), u(r, "/requests"));
    assert!(
        r["first_error"].as_str().unwrap().contains("certificate"),
        "{r:#}"
    );
}
