//! `extract` (memchr scan of the top-level object) against a full parse with
//! simd-json and serde_json, on realistic chat requests.
//!
//! Run: `cargo bench --bench extract`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use simd_json::prelude::*;

/// A ~250-byte chat request, as an OpenAI SDK sends it.
const SMALL: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France? Answer in one word."}],"temperature":0.2,"max_tokens":64,"stream":true}"#;

/// A multi-turn chat request of about `size` bytes, with the model field
/// first or last.
fn chat(size: usize, model_first: bool) -> Vec<u8> {
    let mut s = String::from("{");
    if model_first {
        s.push_str(r#""model":"qwen-max-latest","#);
    }
    s.push_str(r#""messages":[{"role":"system","content":"You are a careful assistant. Answer with \"quotes\" escaped and\nnewlines kept."}"#);
    let mut turn = 0;
    while s.len() < size - 160 {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        s.push_str(&format!(
            r#",{{"role":"{role}","content":"Turn {turn}: here is some text about the \"model\" field, tabs\tand unicode caf\u00e9 \u4e2d\u6587, and a long sentence that fills the buffer like a real conversation would."}}"#
        ));
        turn += 1;
    }
    s.push_str(
        r#"],"temperature":0.7,"top_p":0.9,"stream":true,"stream_options":{"include_usage":true}"#,
    );
    if !model_first {
        s.push_str(r#","model":"qwen-max-latest""#);
    }
    s.push('}');
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let inputs = [
        ("chat_250B", SMALL.as_bytes().to_vec()),
        ("chat_16KiB_model_first", chat(16 * 1024, true)),
        ("chat_16KiB_model_last", chat(16 * 1024, false)),
    ];
    let mut g = c.benchmark_group("extract");
    for (name, body) in &inputs {
        // All three read the same answer.
        let f = modelgate::extract::extract(body).unwrap();
        let model = f.model.as_ref().unwrap().value(body).into_owned();
        let mut copy = body.clone();
        let v = simd_json::to_borrowed_value(&mut copy).unwrap();
        assert_eq!(v.get_str("model"), Some(model.as_str()));
        assert!(f.stream);

        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("modelgate", name), body, |b, body| {
            b.iter(|| {
                let f = modelgate::extract::extract(black_box(body)).unwrap();
                black_box((f.model.unwrap().value(body).len(), f.stream))
            })
        });
        // simd-json parses in place, so each iteration parses a fresh copy
        // (the copy is part of what a gateway would pay: it must forward
        // the original bytes).
        g.bench_with_input(BenchmarkId::new("simd_json", name), body, |b, body| {
            let mut buf = body.clone();
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(body));
                let v = simd_json::to_borrowed_value(&mut buf).unwrap();
                let m = v.get_str("model").map(str::len);
                black_box((m, v.get_bool("stream")))
            })
        });
        g.bench_with_input(BenchmarkId::new("serde_json", name), body, |b, body| {
            b.iter(|| {
                let v: serde_json::Value = serde_json::from_slice(black_box(body)).unwrap();
                let m = v.get("model").and_then(|m| m.as_str()).map(str::len);
                black_box((m, v.get("stream").and_then(|s| s.as_bool())))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
