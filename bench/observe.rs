//! What observability costs a worker per request: starting the record
//! (trace context), reading usage from stream events, and the finish
//! (metrics delta + access log line + the periodic flush), with the
//! access log off and on (written to /dev/null by the writer thread).
//!
//! Run: `cargo bench --bench observe`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use modelgate::config::raw::RawConfig;
use modelgate::http::head::Method;
use modelgate::observe::access_log::Destination;
use modelgate::observe::{Observe, Record, Settings, Usage};
use modelgate::snapshot::{compile, Mode};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[services]]
name = "openai-main"
provider = "openai"
base_url = "http://127.0.0.1:9"

[[model_apis]]
name = "chat-prod"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "openai-main" } }
"#;

const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const DELTA: &[u8] = br#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" the"},"finish_reason":null}]}

"#;
const USAGE: &[u8] = br#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":812,"completion_tokens":256,"total_tokens":1068}}

"#;

fn observe(access: Destination) -> Observe {
    let raw: RawConfig = toml::from_str("").unwrap();
    let mut settings = Settings::from_raw(&raw).unwrap();
    settings.access = access;
    Observe::start(settings).unwrap()
}

fn bench(c: &mut Criterion) {
    let raw: RawConfig = toml::from_str(CONFIG).unwrap();
    let (snap, _) = compile(&raw, 1, Mode::Check).unwrap();
    let route = snap.apis[0]
        .routes
        .iter()
        .find(|r| r.name == "create-chat-completion");

    let mut g = c.benchmark_group("observe");
    g.bench_function("record_start_with_traceparent", |b| {
        b.iter(|| black_box(Record::start(Method::Post, Some(black_box(TRACEPARENT)))))
    });
    g.bench_function("usage_scan_content_event", |b| {
        let mut u = Usage::default();
        b.iter(|| u.scan_event(black_box(DELTA)))
    });
    g.bench_function("usage_scan_usage_event", |b| {
        let mut u = Usage::default();
        b.iter(|| u.scan_event(black_box(USAGE)))
    });

    for (name, access) in [
        ("finish_metrics_only", Destination::Off),
        (
            "finish_metrics_and_access_log",
            Destination::File("/dev/null".into()),
        ),
    ] {
        let obs = observe(access);
        let shard = obs.shard();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // Worker side: a chunk of requests, then a flush (as
                    // the worker does every 200 ms)...
                    let n = (iters - done).min(256);
                    let t = Instant::now();
                    for i in 0..n {
                        let mut rec = Record::start(Method::Post, None);
                        rec.api = Some(0);
                        rec.route = route;
                        rec.model = Some("gpt-4o-mini".into());
                        rec.stream = i % 2 == 0;
                        rec.attempt(0, None);
                        rec.attempt_answered(200, false);
                        rec.first_packet();
                        rec.usage = Usage {
                            input: Some(812),
                            output: Some(256),
                        };
                        rec.status = 200;
                        shard.finish(&snap, "3f2a9c1b7d4e5f60000000000000002a", &mut rec);
                    }
                    shard.flush(true);
                    spent += t.elapsed();
                    done += n;
                    // ...and the control thread's merge, not timed.
                    obs.metrics.collect();
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
