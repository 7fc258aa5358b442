//! Anthropic ⇄ OpenAI translation costs: whole request bodies (typed,
//! borrowed parse + one write), stream events (one whole event in, whole
//! events out), and the usage-chunk check every relayed OpenAI stream event
//! of a pass-through request goes through.
//!
//! Run: `cargo bench --bench translate`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modelgate::protocol::openai::is_usage_only_chunk;
use modelgate::protocol::translate::request::{
    anthropic_to_openai, openai_to_anthropic, OpenaiTarget,
};
use modelgate::protocol::translate::stream::StreamTranslator;
use modelgate::protocol::translate::Direction;

const TOOL_A: &str = r#"{"name":"get_weather","description":"Current weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}}"#;
const TOOL_O: &str = r#"{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}}}"#;

const TURN: &str = "Here is some text about the weather, with \\\"quotes\\\", a newline\\n and unicode caf\\u00e9, as a real conversation has.";

/// An Anthropic Messages body of about `size` bytes: system, tools, turns
/// with a tool call and its result.
fn anthropic_body(size: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"model":"claude-sonnet","max_tokens":1024,"system":"You are careful.","tools":[{TOOL_A}],"stream":true,"messages":[{{"role":"user","content":"weather?"}},{{"role":"assistant","content":[{{"type":"text","text":"Checking."}},{{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{{"city":"Paris"}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"}}]}}"#
    );
    let mut turn = 0;
    while s.len() < size {
        let role = if turn % 2 == 0 { "assistant" } else { "user" };
        s.push_str(&format!(r#",{{"role":"{role}","content":"{TURN}"}}"#));
        turn += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

/// The same conversation as an OpenAI chat completions body.
fn openai_body(size: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"model":"gpt-4o","max_tokens":1024,"tools":[{TOOL_O}],"stream":true,"messages":[{{"role":"system","content":"You are careful."}},{{"role":"user","content":"weather?"}},{{"role":"assistant","content":"Checking.","tool_calls":[{{"id":"call_1","type":"function","function":{{"name":"get_weather","arguments":"{{\"city\":\"Paris\"}}"}}}}]}},{{"role":"tool","tool_call_id":"call_1","content":"18C"}}"#
    );
    let mut turn = 0;
    while s.len() < size {
        let role = if turn % 2 == 0 { "assistant" } else { "user" };
        s.push_str(&format!(r#",{{"role":"{role}","content":"{TURN}"}}"#));
        turn += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate_request");
    for size in [2 * 1024, 16 * 1024] {
        let a = anthropic_body(size);
        let o = openai_body(size);
        let target = OpenaiTarget {
            include_usage: true,
            max_completion_tokens: false,
        };
        anthropic_to_openai(&a, "gpt-4o", target).unwrap();
        openai_to_anthropic(&o, "claude").unwrap();
        g.throughput(Throughput::Bytes(a.len() as u64));
        g.bench_with_input(BenchmarkId::new("anthropic_to_openai", size), &a, |b, a| {
            b.iter(|| {
                black_box(
                    anthropic_to_openai(black_box(a), "gpt-4o", target)
                        .unwrap()
                        .len(),
                )
            })
        });
        g.throughput(Throughput::Bytes(o.len() as u64));
        g.bench_with_input(BenchmarkId::new("openai_to_anthropic", size), &o, |b, o| {
            b.iter(|| {
                black_box(
                    openai_to_anthropic(black_box(o), "claude")
                        .unwrap()
                        .body
                        .len(),
                )
            })
        });
    }
    g.finish();
}

const OPENAI_CHUNK: &[u8] = br#"data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" weather"},"logprobs":null,"finish_reason":null}],"usage":null}

"#;
const ANTHROPIC_DELTA: &[u8] = br#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" weather"}}

"#;
const ANTHROPIC_START: &[u8] = br#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}

"#;

fn stream_events(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate_stream_event");
    // The first event opens the message; measure the steady state after it.
    g.bench_function("openai_chunk_to_anthropic", |b| {
        let mut t = StreamTranslator::new(Direction::AnthropicToOpenai, false);
        let mut out = Vec::with_capacity(1024);
        t.event(OPENAI_CHUNK, &mut out);
        b.iter(|| {
            out.clear();
            t.event(black_box(OPENAI_CHUNK), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("anthropic_delta_to_openai", |b| {
        let mut t = StreamTranslator::new(Direction::OpenaiToAnthropic, false);
        let mut out = Vec::with_capacity(1024);
        t.event(ANTHROPIC_START, &mut out);
        b.iter(|| {
            out.clear();
            t.event(black_box(ANTHROPIC_DELTA), &mut out);
            black_box(out.len())
        })
    });
    // Pass-through: what hiding the usage chunk costs a content chunk.
    assert!(!is_usage_only_chunk(OPENAI_CHUNK));
    g.bench_function("usage_chunk_check", |b| {
        b.iter(|| black_box(is_usage_only_chunk(black_box(OPENAI_CHUNK))))
    });
    g.finish();
}

criterion_group!(benches, requests, stream_events);
criterion_main!(benches);
