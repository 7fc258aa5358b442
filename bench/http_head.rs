//! Hot-path HTTP/1.1 codec: request-head parsing and chunked decoding.
//!
//! `cargo bench --bench http_head`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use modelgate::http::body::{write_chunk_header, ChunkedDecoder, CHUNK_DATA_END, LAST_CHUNK};
use modelgate::http::head::{parse_request, Limits};

/// A realistic OpenAI-SDK-style head: 10 header fields.
const CHAT_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: api.modelgate.example.com\r\n\
User-Agent: OpenAI/Python 1.54.3\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate\r\n\
Content-Type: application/json\r\n\
Authorization: Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Retry-Count: 0\r\n\
Connection: keep-alive\r\n\
Content-Length: 187\r\n\
\r\n";

fn head(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("http_head");
    g.throughput(Throughput::Bytes(CHAT_HEAD.len() as u64));
    g.bench_function("parse_request_chat_10_headers", |b| {
        let mut scratch = Vec::with_capacity(16);
        b.iter(|| {
            let h = parse_request(black_box(CHAT_HEAD), &limits, &mut scratch).expect("valid head");
            black_box(h.framing);
            h.recycle(&mut scratch);
        })
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    // 16 KiB of payload in 1 KiB chunks.
    let payload: Vec<u8> = (0..16 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = Vec::new();
    for chunk in payload.chunks(1024) {
        write_chunk_header(chunk.len(), &mut wire);
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(CHUNK_DATA_END);
    }
    wire.extend_from_slice(LAST_CHUNK);

    let mut g = c.benchmark_group("http_body");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("chunked_decode_16k_in_1k_chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new(u64::MAX);
            let mut n = 0usize;
            let p = d
                .decode(black_box(&wire), |s| n += s.len())
                .expect("valid body");
            assert!(p.done);
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, head, chunked);
criterion_main!(benches);
