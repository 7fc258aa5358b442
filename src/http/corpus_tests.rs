//! The llhttp-derived request corpus (`tests/fixtures/http1-requests.jsonl`,
//! see the README beside it) run through the head parser and the chunked
//! decoder.
//!
//! Framing is checked with the Host rule relaxed (`parse_request_any_host`):
//! most llhttp cases are HTTP/1.1 requests without Host, which RFC 9112 §3.2
//! makes a 400 on its own. Separately, the strict `parse_request` is checked
//! to refuse such cases for exactly that reason and nothing else.
//!
//! A few `accept` cases are not HTTP/1.x requests at all (RTSP, ICE,
//! HTTP/0.9); they are listed in `DISPUTED` with the reason, and the test
//! checks that they are refused, so the disagreement stays visible.

use super::body::{ChunkError, ChunkedDecoder};
use super::head::{
    parse_request, parse_request_any_host, Framing, Limits, Method, ParseError, MISSING_HOST,
};

const CORPUS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/http1-requests.jsonl"
));

/// Cases labelled `accept` that a strict HTTP/1.1 gateway refuses, and why.
const DISPUTED: &[(&str, &str)] = &[
    (
        "method_ANNOUNCE_request_with_RTSP",
        "RTSP/1.0 is not HTTP: only HTTP/1.0 and HTTP/1.1 are valid versions",
    ),
    (
        "method_OPTIONS_request_with_RTSP",
        "RTSP/1.0 is not HTTP: only HTTP/1.0 and HTTP/1.1 are valid versions",
    ),
    (
        "method_SOURCE_request_with_ICE",
        "ICE/1.0 is not HTTP: only HTTP/1.0 and HTTP/1.1 are valid versions",
    ),
    (
        "sample_No_HTTP_version",
        "`GET /` without a version is an HTTP/0.9 simple request; RFC 9112 §3 requires HTTP-version",
    ),
];

struct Case {
    name: String,
    expect: String,
    bytes: Vec<u8>,
}

fn cases() -> Vec<Case> {
    CORPUS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line is JSON");
            let s = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("field {k} in {l}"))
                    .to_string()
            };
            Case {
                name: s("name"),
                expect: s("expect"),
                bytes: base64_decode(&s("request_b64")),
            }
        })
        .collect()
}

/// Standard base64 (RFC 4648 §4) with optional padding.
fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c:#x}"),
        }
    }
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn limits() -> Limits {
    Limits {
        max_header_bytes: 64 * 1024,
        max_headers: 100,
        ..Limits::default()
    }
}

/// What happened to a chunked or fixed-length body.
enum BodyOutcome {
    /// Complete; the next message starts at this offset of the input.
    Done(usize),
    /// The input ended inside the body.
    Partial,
    Error(ChunkError),
}

fn body(framing: Framing, rest: &[u8], max: u64) -> BodyOutcome {
    match framing {
        Framing::None => BodyOutcome::Done(0),
        Framing::Length(n) => {
            if (rest.len() as u64) < n {
                BodyOutcome::Partial
            } else {
                BodyOutcome::Done(n as usize)
            }
        }
        Framing::Chunked => {
            let mut d = ChunkedDecoder::new(max);
            match d.decode(rest, |_| {}) {
                Ok(p) if p.done => BodyOutcome::Done(p.consumed),
                Ok(_) => BodyOutcome::Partial,
                Err(e) => BodyOutcome::Error(e),
            }
        }
        Framing::UntilClose => unreachable!("requests are never UntilClose"),
    }
}

/// How a `reject` case was refused, or why it was not.
fn refusal(bytes: &[u8]) -> Result<String, String> {
    let lim = limits();
    let mut scratch = Vec::new();
    match parse_request_any_host(bytes, &lim, &mut scratch) {
        Ok(h) => match body(h.framing, &bytes[h.head_len..], lim.max_body_bytes) {
            BodyOutcome::Error(e) => Ok(format!("body: {e}")),
            BodyOutcome::Done(_) => Err(format!("head and body accepted ({:?})", h.framing)),
            BodyOutcome::Partial => {
                Err(format!("head accepted, body incomplete ({:?})", h.framing))
            }
        },
        Err(ParseError::Incomplete) => {
            // The case ends before its head does. Finish the head as a client
            // would (CRLF, then the blank line) and require a real refusal,
            // so a case is never passed merely for being cut short.
            let mut completed = bytes.to_vec();
            if !completed.ends_with(b"\r\n") {
                completed.extend_from_slice(b"\r\n");
            }
            completed.extend_from_slice(b"\r\n");
            match parse_request_any_host(&completed, &lim, &mut scratch) {
                Err(ParseError::Incomplete) => {
                    Err("incomplete even once the head is finished".into())
                }
                Err(e) => Ok(format!("once the head is finished: {e}")),
                Ok(h) => Err(format!("head accepted once finished ({:?})", h.framing)),
            }
        }
        Err(e) => Ok(e.to_string()),
    }
}

/// Parses every complete request of an `accept` input, pipelined ones
/// included; returns how many were parsed.
fn accept_all(bytes: &[u8]) -> Result<usize, String> {
    let lim = limits();
    let mut scratch = Vec::new();
    let mut at = 0;
    let mut count = 0;
    loop {
        let input = &bytes[at..];
        let h = match parse_request_any_host(input, &lim, &mut scratch) {
            Ok(h) => h,
            Err(ParseError::Incomplete) if count > 0 => return Ok(count),
            Err(e) => return Err(format!("request {count} at byte {at}: {e}")),
        };
        count += 1;
        match body(h.framing, &input[h.head_len..], lim.max_body_bytes) {
            BodyOutcome::Error(e) => return Err(format!("request {count} body: {e}")),
            BodyOutcome::Partial => return Ok(count),
            BodyOutcome::Done(n) => at += h.head_len + n,
        }
        if !h.keep_alive || h.upgrade || at >= bytes.len() {
            return Ok(count);
        }
        h.recycle(&mut scratch);
    }
}

/// The strict parser refuses a request only for a missing Host, and only
/// when it is an HTTP/1.1 request without one.
fn check_host_rule(case: &Case) -> Result<bool, String> {
    let mut scratch = Vec::new();
    let relaxed = parse_request_any_host(&case.bytes, &limits(), &mut scratch);
    let strict = parse_request(&case.bytes, &limits(), &mut Vec::new());
    match (relaxed, strict) {
        (Ok(h), Err(ParseError::Invalid(MISSING_HOST))) => {
            if h.minor_version == 1 && h.header(&case.bytes, "host").is_none() {
                Ok(true)
            } else {
                Err("refused for a missing Host it has".into())
            }
        }
        (Ok(_), Ok(_)) => Ok(false),
        (Ok(_), Err(e)) => Err(format!("strict parse differs: {e}")),
        (Err(_), _) => Ok(false),
    }
}

#[test]
fn corpus_is_complete_and_decodes() {
    let all = cases();
    assert_eq!(all.len(), 113, "the corpus README says 113 cases");
    for (name, _) in DISPUTED {
        assert!(
            all.iter().any(|c| c.name == *name && c.expect == "accept"),
            "{name} not an accept case"
        );
    }
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(base64_decode("YQ"), b"a");
}

#[test]
fn corpus_cases() {
    let mut failures = Vec::new();
    let mut missing_host = Vec::new();
    let mut refused_upgrades = Vec::new();
    let mut refusals = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let all = cases();
    for case in &all {
        *counts.entry(case.expect.as_str()).or_default() += 1;
        let lim = limits();
        let mut scratch = Vec::new();
        if let Some((_, why)) = DISPUTED.iter().find(|(n, _)| *n == case.name) {
            match parse_request_any_host(&case.bytes, &lim, &mut scratch) {
                Err(ParseError::Invalid(_)) => {}
                other => failures.push(format!(
                    "{} (disputed: {why}) was not refused: {other:?}",
                    case.name
                )),
            }
            continue;
        }
        let outcome: Result<(), String> = match case.expect.as_str() {
            "reject" => {
                refusal(&case.bytes).map(|why| refusals.push(format!("{}: {why}", case.name)))
            }
            "accept" => accept_all(&case.bytes).map(|_| ()),
            "upgrade" => match parse_request_any_host(&case.bytes, &lim, &mut scratch) {
                Ok(h) if h.upgrade || h.method == Method::Connect => Ok(()),
                Ok(_) => Err("parsed but upgrade/CONNECT not recognised".into()),
                Err(ParseError::Invalid(why)) => {
                    refused_upgrades.push(format!("{}: {why}", case.name));
                    Ok(())
                }
                Err(e) => Err(format!("neither parsed nor refused: {e}")),
            },
            "closeafter" => match parse_request_any_host(&case.bytes, &lim, &mut scratch) {
                Ok(h) if !h.keep_alive => {
                    match body(h.framing, &case.bytes[h.head_len..], lim.max_body_bytes) {
                        BodyOutcome::Error(e) => Err(format!("body: {e}")),
                        _ => Ok(()),
                    }
                }
                Ok(_) => Err("keep_alive is true".into()),
                Err(e) => Err(format!("not parsed: {e}")),
            },
            other => Err(format!("unknown expectation {other}")),
        };
        if let Err(e) = outcome {
            failures.push(format!("{} [{}]: {e}", case.name, case.expect));
        }
        if case.expect != "reject" {
            match check_host_rule(case) {
                Ok(true) => missing_host.push(case.name.clone()),
                Ok(false) => {}
                Err(e) => failures.push(format!("{} [{}]: {e}", case.name, case.expect)),
            }
        }
    }
    eprintln!("corpus: {counts:?}");
    eprintln!(
        "refused by the strict parser only for lacking Host (RFC 9112 §3.2), {}:",
        missing_host.len()
    );
    for n in &missing_host {
        eprintln!("  {n}");
    }
    eprintln!("reject cases, and why they were refused:");
    for r in &refusals {
        eprintln!("  {r}");
    }
    eprintln!("upgrade cases refused by policy:");
    for n in &refused_upgrades {
        eprintln!("  {n}");
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn reject_cases_are_refused_in_any_split() {
    // The head parser is re-run on growing prefixes as bytes arrive: no
    // prefix of a rejected request may be accepted with a different head.
    for case in cases().iter().filter(|c| c.expect == "reject") {
        let mut scratch = Vec::new();
        for k in 0..=case.bytes.len() {
            if let Ok(h) = parse_request_any_host(&case.bytes[..k], &limits(), &mut scratch) {
                // A complete head in a prefix must be the same head as in the
                // whole input: then its refusal comes from the body.
                let full = parse_request_any_host(&case.bytes, &limits(), &mut Vec::new());
                assert_eq!(Ok(&h), full.as_ref(), "{} prefix {k}", case.name);
            }
        }
    }
}

#[test]
fn valid_heads_are_incomplete_until_their_end() {
    // Eager refusals (bare LF, unknown method prefix, non-ASCII target) must
    // never fire on a prefix of a valid head.
    for case in cases().iter().filter(|c| c.expect != "reject") {
        let Ok(h) = parse_request_any_host(&case.bytes, &limits(), &mut Vec::new()) else {
            continue;
        };
        for k in 0..h.head_len {
            assert_eq!(
                parse_request_any_host(&case.bytes[..k], &limits(), &mut Vec::new()),
                Err(ParseError::Incomplete),
                "{} prefix {k}",
                case.name
            );
        }
    }
}
