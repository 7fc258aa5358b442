//! Per-request costs of the guard phases on the hot path: a consumer key
//! lookup (SHA-256 + constant-time compare), a rate-limit admission (one
//! window, uncontended and with another core hammering it), the usage scan
//! of a stream event, and moderation of a stream event.
//!
//! Run: `cargo bench --bench guard`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use modelgate::auth::{key_hash_hex, Consumers};
use modelgate::config::catalog::Protocol;
use modelgate::config::raw::{ConsumerSpec, KeyHash, ModerationSpec, RateLimitsSpec};
use modelgate::config::Problems;
use modelgate::limit::{now_s, Table, Window};
use modelgate::moderation::{Policy, ResponseCheck};
use modelgate::observe::Usage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const EVENT: &[u8] = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" the quick brown fox"},"finish_reason":null}]}

"#;
const USAGE_EVENT: &[u8] = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":380,"total_tokens":500}}

"#;

fn bench(c: &mut Criterion) {
    // 1,000 consumers with one admin-made key each.
    let specs: Vec<ConsumerSpec> = (0..1000)
        .map(|i| ConsumerSpec {
            name: format!("c{i}"),
            resource_group: "default".into(),
            limits: RateLimitsSpec::default(),
            keys: Vec::new(),
            key_hashes: vec![KeyHash {
                id: "k1".into(),
                sha256: key_hash_hex(&format!("mg-{i:040}")),
            }],
            enabled: true,
        })
        .collect();
    let consumers = Consumers::compile(&specs, &mut Table::default(), &mut Problems::default());
    let key = format!("mg-{:040}", 777);
    c.bench_function("auth/by_key_1000_consumers", |b| {
        b.iter(|| consumers.by_key(black_box(key.as_bytes())))
    });

    let w = Window::default();
    let now = now_s();
    c.bench_function("limit/try_admit_uncontended", |b| {
        b.iter(|| {
            let r = w.try_admit(black_box(now), u64::MAX);
            black_box(r)
        })
    });
    let shared = Arc::new(Window::default());
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (w, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = w.try_admit(now, u64::MAX);
            }
        })
    };
    c.bench_function("limit/try_admit_contended_2_threads", |b| {
        b.iter(|| black_box(shared.try_admit(black_box(now), u64::MAX)))
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();

    c.bench_function("usage/scan_event", |b| {
        b.iter(|| {
            let mut u = Usage::default();
            u.scan_event(black_box(EVENT));
            u.scan_event(black_box(USAGE_EVENT));
            black_box(u)
        })
    });

    let spec = ModerationSpec {
        enabled: true,
        deny: vec![
            "forbidden phrase".into(),
            "another banned phrase".into(),
            "re:secret-[0-9]+".into(),
        ],
        check_response: true,
        service: None,
    };
    let policy = Policy::compile("m", &spec, |_| None, &mut Problems::default()).unwrap();
    let mut check = ResponseCheck::new(policy, Protocol::Openai);
    c.bench_function("moderation/stream_event", |b| {
        b.iter(|| black_box(check.event(black_box(EVENT))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
