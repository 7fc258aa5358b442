//! SIGHUP reloads into a new snapshot (a bad config keeps the old one);
//! SIGTERM drains in-flight requests and exits 0.

mod common;
use common::*;
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

fn config(up: &MockLlm, model: &str) -> String {
    format!(
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
service = {{ mode = "single", target = {{ service = "up", model = "{model}" }} }}
"#,
        server_section(2),
        url = up.url()
    )
}

fn model_of(g: &Gateway) -> String {
    let r = g.post(
        "/v1/chat/completions",
        r#"{"model":"client","messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["model"].as_str().unwrap().to_string()
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sighup_swaps_config_and_a_bad_one_is_rejected() {
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&config(&up, "v1"));
    assert_eq!(model_of(&g), "v1");
    std::fs::write(&g.config_path, config(&up, "v2")).unwrap();
    g.signal("HUP");
    assert!(wait_for(|| model_of(&g) == "v2"), "reload not applied");
    // Broken config: logged, old snapshot kept.
    std::fs::write(
        &g.config_path,
        config(&up, "v3").replace("scenario = \"text\"", "scenario = \"nope\""),
    )
    .unwrap();
    g.signal("HUP");
    assert!(
        wait_for(|| g.proc.stderr_text().contains("model_apis[0].scenario")),
        "{}",
        g.proc.stderr_text()
    );
    for _ in 0..10 {
        assert_eq!(model_of(&g), "v2");
    }
}

#[test]
fn sigterm_finishes_in_flight_streams_then_exits_zero() {
    let up = MockLlm::start("up");
    let mut g = Gateway::start_raw(&config(&up, "m"));
    let mut s = connect(g.addr);
    let body = br#"{"model":"m","stream":true,"max_tokens":6,"messages":[]}"#;
    s.write_all(&raw_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunk-delay-ms", "200")],
        body,
    ))
    .unwrap();
    let mut r = BufReader::new(s);
    let head = read_head_only(&mut r).unwrap();
    assert_eq!(head.status, 200);
    g.signal("TERM");
    // New connections are refused soon after.
    assert!(
        wait_for(|| std::net::TcpStream::connect(g.addr).is_err()),
        "still accepting"
    );
    // The in-flight stream completes.
    let mut rest = Vec::new();
    use std::io::Read;
    r.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("data: [DONE]"), "stream cut: {text}");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = g.proc.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// Clients on keep-alive connections, streaming and not, counting requests
/// and failures until `stop` is set.
fn load(
    addr: std::net::SocketAddr,
    stream: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let body = if stream {
            r#"{"model":"m","stream":true,"max_tokens":4,"messages":[]}"#
        } else {
            r#"{"model":"m","messages":[]}"#
        };
        let headers: &[(&str, &str)] = if stream {
            &[("x-mock-chunk-delay-ms", "20")]
        } else {
            &[]
        };
        let mut s = connect(addr);
        let mut r = BufReader::new(s.try_clone().unwrap());
        let (mut done, mut failures) = (0, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let sent = s.write_all(&raw_request(
                "POST",
                "/v1/chat/completions",
                headers,
                body.as_bytes(),
            ));
            match sent.and_then(|_| read_response(&mut r, false)) {
                Ok(resp)
                    if resp.status == 200
                        && (!stream || resp.text().ends_with("data: [DONE]\n\n")) =>
                {
                    done += 1
                }
                Ok(resp) => failures.push(format!("{} {}", resp.status, resp.text())),
                Err(e) => {
                    failures.push(e.to_string());
                    s = connect(addr);
                    r = BufReader::new(s.try_clone().unwrap());
                }
            }
        }
        (done, failures)
    })
}

#[test]
fn twenty_reloads_under_load_fail_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let up = MockLlm::start("up");
    let g = Gateway::start_raw(&config(&up, "v0"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|i| load(g.addr, i % 2 == 0, stop.clone()))
        .collect();
    for n in 1..=20 {
        std::fs::write(&g.config_path, config(&up, &format!("v{n}"))).unwrap();
        g.signal("HUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_for(|| model_of(&g) == "v20"),
        "last reload not applied"
    );
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for c in clients {
        let (done, failures) = c.join().unwrap();
        assert!(
            failures.is_empty(),
            "failed requests during reloads: {failures:?}"
        );
        total += done;
    }
    assert!(total > 100, "load too light to mean anything: {total}");
}

#[test]
fn sigterm_under_load_finishes_every_stream_and_refuses_new_connections() {
    let up = MockLlm::start("up");
    let mut g = Gateway::start_raw(&config(&up, "m"));
    // Eight streams in flight, each lasting ~1.2 s.
    let streams: Vec<_> = (0..8)
        .map(|_| {
            let addr = g.addr;
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let body = br#"{"model":"m","stream":true,"max_tokens":6,"messages":[]}"#;
                s.write_all(&raw_request(
                    "POST",
                    "/v1/chat/completions",
                    &[("x-mock-chunk-delay-ms", "200")],
                    body,
                ))
                .unwrap();
                let mut r = BufReader::new(s);
                read_response(&mut r, false).map(|resp| resp.text())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    g.signal("TERM");
    assert!(
        wait_for(|| std::net::TcpStream::connect(g.addr).is_err()),
        "still accepting"
    );
    for s in streams {
        let text = s.join().unwrap().expect("stream failed");
        assert!(text.ends_with("data: [DONE]\n\n"), "stream cut: {text}");
    }
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = g.proc.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
