//! Properties the fuzz targets (`fuzz/`) check on arbitrary input, shared
//! with the unit tests that replay the inputs the fuzzers once broke
//! (`fuzz/regressions/<target>/*`). Each function panics when a property
//! fails; none does I/O.

use crate::extract;
use crate::http::body::{write_chunk_header, ChunkError, ChunkedDecoder, LAST_CHUNK};
use crate::http::head::{self, Limits, Method, ParseError};

/// The head parser: never panics; an accepted head lies inside the input,
/// ends in CRLFCRLF, parses the same from its own bytes, and every proper
/// prefix of it is `Incomplete` (an eager refusal must never fire on the
/// start of a valid head).
pub fn head_parser(data: &[u8]) {
    let limits = Limits {
        max_header_bytes: 4096,
        max_headers: 24,
        max_body_bytes: 1 << 20,
    };
    let mut scratch = Vec::new();
    match head::parse_request(data, &limits, &mut scratch) {
        Ok(h) => {
            assert!(h.head_len <= data.len() && h.head_len <= limits.max_header_bytes);
            assert!(data[..h.head_len].ends_with(b"\r\n\r\n"));
            let within = |r: &std::ops::Range<usize>| r.start <= r.end && r.end <= h.head_len;
            assert!(within(&h.method_range) && within(&h.target));
            assert!(h.host.as_ref().is_none_or(within));
            for hp in &h.headers {
                assert!(within(&hp.name) && within(&hp.value));
                assert!(!hp.name.is_empty());
                let v = hp.value_in(data);
                assert!(!v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            }
            if let head::Framing::Length(n) = h.framing {
                assert!(n <= limits.max_body_bytes);
            }
            let _ = (h.path(data), h.query(data), h.host_bytes(data));
            let again = head::parse_request(&data[..h.head_len], &limits, &mut Vec::new());
            assert_eq!(again.as_ref(), Ok(&h));
            for k in [0, h.head_len / 2, h.head_len - 1] {
                assert_eq!(
                    head::parse_request(&data[..k], &limits, &mut Vec::new()),
                    Err(ParseError::Incomplete),
                    "prefix {k} of an accepted head"
                );
            }
            h.recycle(&mut scratch);
        }
        Err(ParseError::Incomplete) => assert!(data.len() < limits.max_header_bytes),
        Err(_) => {}
    }
    for method in [Method::Get, Method::Head, Method::Connect] {
        if let Ok(r) = head::parse_response(data, method, 4096, &mut scratch) {
            assert!(r.head_len <= data.len());
            for hp in &r.headers {
                assert!(hp.name.end <= r.head_len && hp.value.end <= r.head_len);
            }
        }
    }
}

/// What decoding produced: the outcome and the payload handed out.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    outcome: Result<(usize, bool), ChunkError>,
    payload: Vec<u8>,
}

fn decode_in_pieces(input: &[u8], max_total: u64, piece: usize) -> Decoded {
    let mut d = ChunkedDecoder::new(max_total);
    let mut payload = Vec::new();
    let mut fed = 0;
    for part in input.chunks(piece.max(1)) {
        match d.decode(part, |s| payload.extend_from_slice(s)) {
            Ok(p) => {
                assert!(p.consumed <= part.len());
                fed += p.consumed;
                if p.done {
                    break;
                }
                assert_eq!(p.consumed, part.len(), "input left over before the end");
            }
            Err(e) => {
                return Decoded {
                    outcome: Err(e),
                    payload,
                }
            }
        }
    }
    assert_eq!(payload.len() as u64, d.total());
    assert!(d.total() <= max_total);
    Decoded {
        outcome: Ok((fed, d.is_done())),
        payload,
    }
}

/// The chunked decoder: the first byte picks a size limit and a piece
/// size; the rest decodes to the same outcome and payload whole and in
/// pieces, and a body it completes re-encodes to one that decodes alike.
pub fn chunked_decoder(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let max_total = [u64::MAX, 0, 1, 16, 1000, 4096, 1 << 20, u64::MAX - 1][(ctl & 7) as usize];
    let whole = decode_in_pieces(input, max_total, input.len());
    let piece = 1 + (ctl >> 3) as usize;
    let split = decode_in_pieces(input, max_total, piece);
    assert_eq!(whole, split, "piece size {piece}");
    if let Ok((_, true)) = whole.outcome {
        let mut again = Vec::new();
        if !whole.payload.is_empty() {
            write_chunk_header(whole.payload.len(), &mut again);
            again.extend_from_slice(&whole.payload);
            again.extend_from_slice(b"\r\n");
        }
        again.extend_from_slice(LAST_CHUNK);
        let re = decode_in_pieces(&again, u64::MAX, again.len());
        assert_eq!(re.outcome, Ok((again.len(), true)));
        assert_eq!(re.payload, whole.payload);
    }
}

/// Model extraction: never panics; agrees with serde_json on every body
/// serde_json reads as an object (model, stream); a rewritten model reads
/// back as written and leaves the other fields alone.
pub fn model_extract(data: &[u8]) {
    let got = extract::extract(data);
    let reference = serde_json::from_slice::<serde_json::Value>(data).ok();
    if let Some(serde_json::Value::Object(obj)) = &reference {
        match (obj.get("model"), &got) {
            (Some(serde_json::Value::String(m)), Ok(f)) => {
                let field = f.model.as_ref().expect("model missed");
                assert_eq!(field.value(data), m.as_str());
            }
            (Some(_), Err(e)) => assert_eq!(*e, extract::ExtractError::ModelNotString),
            (None, Ok(f)) => assert!(f.model.is_none()),
            (m, r) => panic!("serde_json model {m:?}, extract {r:?}"),
        }
        if let Ok(f) = &got {
            assert_eq!(
                f.stream,
                obj.get("stream") == Some(&serde_json::Value::Bool(true))
            );
        }
    }
    if let Ok(f) = &got {
        assert!(f.object.end <= data.len());
        if let Some(field) = &f.model {
            assert!(field.span.end <= data.len());
            let new_model = "rewritten-\"model\"\\é";
            let out = extract::rewrite_model(data, field, new_model);
            let f2 = extract::extract(&out).expect("rewritten body reads back");
            assert_eq!(f2.model.expect("model kept").value(&out), new_model);
            assert_eq!(f2.stream, f.stream);
            if let Some(serde_json::Value::Object(mut obj)) = reference {
                let mut back: serde_json::Value =
                    serde_json::from_slice(&out).expect("rewritten body is JSON");
                obj.insert("model".into(), new_model.into());
                back.as_object_mut()
                    .unwrap()
                    .insert("model".into(), new_model.into());
                assert_eq!(serde_json::Value::Object(obj), back);
            }
        }
    }
    let cut = data.len() / 2;
    if let Ok(f) = extract::extract_prefix(&data[..cut]) {
        if let Some(field) = &f.model {
            assert!(field.span.end <= cut);
            let _ = field.value(&data[..cut]);
        }
    }
}

/// The usage scanners (`observe::usage`): the first byte picks a piece
/// size; a JSON body's tail kept from pieces reads the same usage as the
/// body pushed whole, scanning never panics, and moderation's event check
/// never panics on the same bytes.
pub fn usage_scan(data: &[u8]) {
    use crate::observe::usage::{BodyTail, Usage};
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let mut whole = Usage::default();
    whole.scan_json(body);
    whole.scan_event(body);
    whole.scan_tail(body);
    let mut once = BodyTail::default();
    once.push(body);
    let mut pieces = BodyTail::default();
    for part in body.chunks(1 + ctl as usize) {
        pieces.push(part);
    }
    assert_eq!(
        pieces.usage(),
        once.usage(),
        "piece size {}",
        1 + ctl as usize
    );
    static POLICY: std::sync::OnceLock<std::sync::Arc<crate::moderation::Policy>> =
        std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let spec = crate::config::raw::ModerationSpec {
            enabled: true,
            deny: vec!["from mock".into(), "re:secret-[0-9]+".into()],
            check_response: true,
            service: None,
        };
        crate::moderation::Policy::compile("m", &spec, |_| None, &mut Default::default())
            .expect("policy")
    });
    for protocol in [
        crate::config::catalog::Protocol::Openai,
        crate::config::catalog::Protocol::Anthropic,
    ] {
        let mut check = crate::moderation::ResponseCheck::new(policy.clone(), protocol);
        for event in body.split_inclusive(|&b| b == b'\n') {
            check.event(event);
        }
        check.whole(body);
    }
}

/// The response head parser on its own: the first byte picks the request
/// method and the head size limit. Never panics; an accepted head lies
/// inside the input and the limit, ends in CRLFCRLF, has a status in
/// 100..=599, at most `MAX_RESPONSE_HEADERS` fields whose values carry no
/// CR, LF or NUL, a framing that follows the method and status (RFC 9112
/// §6.3), parses the same from its own bytes, and every proper prefix of it
/// is `Incomplete`; `Incomplete` is only ever answered below the limit (a
/// caller never buffers past it waiting for more).
pub fn response_head(data: &[u8]) {
    let Some((&ctl, buf)) = data.split_first() else {
        return;
    };
    let method = [Method::Get, Method::Head, Method::Connect, Method::Post][(ctl & 3) as usize];
    let max = [64, 512, 4096, 16384][((ctl >> 2) & 3) as usize];
    let mut scratch = Vec::new();
    match head::parse_response(buf, method, max, &mut scratch) {
        Ok(r) => {
            assert!(r.head_len <= buf.len() && r.head_len <= max);
            assert!(buf[..r.head_len].ends_with(b"\r\n\r\n"));
            assert!((100..=599).contains(&r.status), "status {}", r.status);
            assert!(r.minor_version <= 1);
            assert!(r.headers.len() <= head::MAX_RESPONSE_HEADERS);
            for hp in &r.headers {
                assert!(hp.name.start < hp.name.end && hp.name.end <= r.head_len);
                assert!(hp.value.start <= hp.value.end && hp.value.end <= r.head_len);
                let v = hp.value_in(buf);
                assert!(!v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            }
            let no_body = method == Method::Head
                || r.status < 200
                || r.status == 204
                || r.status == 304
                || (method == Method::Connect && (200..300).contains(&r.status));
            if no_body {
                assert_eq!(r.framing, head::Framing::None);
            }
            if r.framing == head::Framing::UntilClose {
                assert!(!r.keep_alive);
            }
            let again = head::parse_response(&buf[..r.head_len], method, max, &mut Vec::new());
            assert_eq!(again.as_ref(), Ok(&r));
            for k in [0, 1, r.head_len / 2, r.head_len - 2, r.head_len - 1] {
                assert_eq!(
                    head::parse_response(&buf[..k], method, max, &mut Vec::new()),
                    Err(ParseError::Incomplete),
                    "prefix {k} of an accepted head"
                );
            }
            r.recycle(&mut scratch);
        }
        Err(ParseError::Incomplete) => assert!(buf.len() < max),
        Err(_) => {}
    }
}

/// Piece sizes for feeding `input` in parts: the control byte picks the
/// largest piece; sizes vary below it (a small LCG seeded by the byte).
fn pieces(input: &[u8], ctl: u8) -> impl Iterator<Item = &[u8]> {
    let largest = [1usize, 2, 3, 7, 16, 64, 1000, usize::MAX][(ctl >> 5) as usize];
    let mut x = u32::from(ctl) | 1;
    let mut rest = input;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 1 + (x >> 8) as usize % largest.min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        Some(piece)
    })
}

/// What the SSE splitter must find, read whole (`finish` at the end): an
/// event ends after an empty line, lines end in LF, CRLF or CR. The event
/// ranges and where the incomplete tail starts.
fn sse_reference(input: &[u8]) -> (Vec<std::ops::Range<usize>>, usize) {
    let (mut events, mut start, mut i, mut line_empty) = (Vec::new(), 0, 0, true);
    while i < input.len() {
        match input[i] {
            b'\n' => i += 1,
            b'\r' => {
                i += if input.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                }
            }
            _ => {
                line_empty = false;
                i += 1;
                continue;
            }
        }
        if line_empty {
            events.push(start..i);
            start = i;
        }
        line_empty = true;
    }
    (events, start)
}

/// The SSE splitter (`http::sse::SseSplitter`): the first byte picks the
/// piece sizes and an event size limit. Fed in pieces, the events passed
/// on followed by `pending()` are exactly the bytes fed so far; after
/// `finish` the events are those a plain whole-input reading finds (an
/// empty line ends each), each one split again alone gives itself back;
/// and a caller that stops once `pending()` passes its limit (as the relay
/// does with `max_event_bytes`) never sees it hold more than the limit plus
/// the last piece.
pub fn sse_splitter(data: &[u8]) {
    use crate::http::sse::SseSplitter;
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let limit = [0usize, 1, 16, 100][(ctl & 3) as usize];
    let (want, tail) = sse_reference(input);
    let mut s = SseSplitter::new();
    let mut events: Vec<Vec<u8>> = Vec::new();
    let (mut fed, mut passed, mut bounded_stop) = (0usize, 0usize, false);
    for piece in pieces(input, ctl) {
        let before = s.pending().len();
        s.push(piece, |e| {
            assert!(!e.is_empty());
            passed += e.len();
            events.push(e.to_vec());
        });
        fed += piece.len();
        assert_eq!(passed + s.pending().len(), fed, "bytes lost or invented");
        assert_eq!(s.pending(), &input[passed..fed]);
        assert!(s.pending().len() <= before + piece.len());
        if !bounded_stop {
            // Under a bounded caller, pending was within the limit before
            // this push (else it would have stopped).
            assert!(before <= limit && s.pending().len() <= limit + piece.len());
            bounded_stop = s.pending().len() > limit;
        }
    }
    s.finish(|e| {
        passed += e.len();
        events.push(e.to_vec());
    });
    assert_eq!(s.pending(), &input[tail..]);
    let want: Vec<&[u8]> = want.iter().map(|r| &input[r.clone()]).collect();
    let got: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    assert_eq!(got, want);
    for e in &events {
        let mut alone = SseSplitter::new();
        let mut back = Vec::new();
        alone.push(e, |x| back.push(x.to_vec()));
        assert!(!alone.finish(|x| back.push(x.to_vec())));
        assert_eq!(back, std::slice::from_ref(e));
    }
}

#[cfg(test)]
mod tests {
    /// Replays every input kept under `fuzz/regressions/<target>/`.
    #[test]
    fn fuzz_regressions_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 6] = [
            ("head_parser", super::head_parser),
            ("chunked_decoder", super::chunked_decoder),
            ("model_extract", super::model_extract),
            ("usage_scan", super::usage_scan),
            ("sse_splitter", super::sse_splitter),
            ("response_head", super::response_head),
        ];
        let mut replayed = 0;
        for (name, check) in targets {
            let dir = root.join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let r = std::panic::catch_unwind(|| check(&data));
                assert!(r.is_ok(), "{} fails again", path.display());
                replayed += 1;
            }
        }
        eprintln!("replayed {replayed} fuzz regression inputs");
    }

    #[test]
    fn properties_hold_on_plain_inputs() {
        super::head_parser(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
        );
        super::head_parser(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        super::chunked_decoder(b"\x0b5;a=b\r\nhello\r\n0\r\nx: y\r\n\r\nrest");
        super::model_extract(br#"{"model":"m","stream":true,"messages":[{"model":"x"}]}"#);
        super::model_extract(br#"{"mod\u0065l":"m","model":"n"}"#);
        super::usage_scan(
            b"\x02data: {\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}\n\n",
        );
        for ctl in [0u8, 0x21, 0x42, 0x63, 0xe0, 0xff] {
            let mut input = vec![ctl];
            input.extend_from_slice(
                b"data: a\r\n\r\n: ping\n\nevent: x\rdata: {}\r\r\n\ndata: cut\r",
            );
            super::sse_splitter(&input);
        }
        for ctl in [0u8, 1, 2, 3, 8, 12] {
            let mut input = vec![ctl];
            input.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            );
            super::response_head(&input);
            input.truncate(20);
            super::response_head(&input);
        }
    }
}
