//! W3C trace context and span export.
//!
//! Each request joins the client's trace (`traceparent`) or starts one.
//! Every upstream attempt is a child span whose id goes upstream in a
//! fresh `traceparent`. Workers hand finished spans to the control thread
//! in batches; it posts them as OTLP/HTTP JSON (hyper client) when
//! `[trace] otlp_endpoint` is set.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// The trace a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub trace_id: TraceId,
    /// The caller's span, when the client sent a usable `traceparent`.
    pub parent: Option<SpanId>,
    /// This request's span.
    pub span: SpanId,
    pub flags: u8,
    /// The client sent a `traceparent` that was not valid: a new trace
    /// was started and the client's `tracestate` is not forwarded.
    pub restarted: bool,
}

impl Context {
    /// Joins the trace of `traceparent` when it is valid, else starts one.
    pub fn from_header(traceparent: Option<&[u8]>) -> Context {
        match traceparent.map(parse_traceparent) {
            Some(Some((trace_id, parent, flags))) => Context {
                trace_id,
                parent: Some(parent),
                span: new_span_id(),
                flags,
                restarted: false,
            },
            other => Context {
                trace_id: new_trace_id(),
                parent: None,
                span: new_span_id(),
                flags: 0x01,
                restarted: other.is_some(),
            },
        }
    }

    /// Whether the trace's owner asked for it to be recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// The `traceparent` value naming `span` as the parent.
    pub fn traceparent(&self, span: SpanId) -> [u8; TRACEPARENT_LEN] {
        let mut out = [0u8; TRACEPARENT_LEN];
        out[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        hex_into(&span, &mut out[36..52]);
        out[52] = b'-';
        hex_into(&[self.flags], &mut out[53..55]);
        out
    }
}

fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

pub fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

/// A trace id in hex, without allocating.
pub fn trace_hex(id: &TraceId) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex_into(id, &mut out);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

/// Lowercase hex only, as the spec requires.
fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// Parses a W3C `traceparent`: `version-traceid-parentid-flags`. Version
/// `ff` and all-zero ids are invalid; a future version may append fields.
pub fn parse_traceparent(v: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    let v = v.trim_ascii();
    if v.len() < TRACEPARENT_LEN || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = unhex::<1>(&v[..2])?[0];
    if version == 0xff
        || (version == 0 && v.len() != TRACEPARENT_LEN)
        || (v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-')
    {
        return None;
    }
    let trace = unhex::<16>(&v[3..35])?;
    let parent = unhex::<8>(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?[0];
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags))
}

/// OTLP span kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

#[derive(Clone, Debug)]
pub enum Attr {
    Str(String),
    Int(i64),
}

/// One finished span, as a worker hands it to the control thread.
#[derive(Clone, Debug)]
pub struct SpanData {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Set for a failed span: its status message.
    pub error: Option<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

/// The OTLP/HTTP JSON request body for `spans`.
pub fn encode(spans: &[SpanData], service_name: &str) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let attrs: Vec<Value> = s
                .attrs
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Attr::Str(s) => json!({ "stringValue": s }),
                        Attr::Int(i) => json!({ "intValue": i.to_string() }),
                    };
                    json!({ "key": k, "value": value })
                })
                .collect();
            let mut span = json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": s.name,
                "kind": s.kind as i32,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": attrs,
                "status": match &s.error {
                    Some(m) => json!({ "code": 2, "message": m }),
                    None => json!({ "code": 0 }),
                },
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = json!(hex(&p));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": service_name } },
                { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
            ]},
            "scopeSpans": [{
                "scope": { "name": "modelgate", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}

/// Where spans go: an `http://` OTLP endpoint. A URL without a path gets
/// the standard `/v1/traces`.
pub fn endpoint_uri(url: &str) -> Result<hyper::Uri, String> {
    if url.starts_with("https://") {
        return Err(
            "https endpoints are not supported yet; use a local collector on http://".into(),
        );
    }
    if !url.starts_with("http://") {
        return Err("must start with http://".into());
    }
    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    if uri.host().is_none() {
        return Err("has no host".into());
    }
    if matches!(uri.path(), "" | "/") && uri.query().is_none() {
        return format!("{}/v1/traces", url.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("invalid URL: {e}"));
    }
    Ok(uri)
}

/// Posts span batches to one OTLP/HTTP endpoint (control thread).
pub struct Exporter {
    uri: hyper::Uri,
    service_name: String,
    client: Client<HttpConnector, Full<Bytes>>,
    last_warning: Option<Instant>,
}

/// Spans per POST.
const MAX_BATCH: usize = 1024;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl Exporter {
    pub fn new(uri: hyper::Uri, service_name: String) -> Exporter {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Exporter {
            uri,
            service_name,
            client,
            last_warning: None,
        }
    }

    async fn post(&self, spans: &[SpanData]) -> Result<(), String> {
        let body =
            serde_json::to_vec(&encode(spans, &self.service_name)).map_err(|e| e.to_string())?;
        let req = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(EXPORT_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("collector answered {}", resp.status()))
        }
    }

    /// Exports everything the workers have sent so far, in batches.
    pub async fn drain(&mut self, rx: &crossbeam_channel::Receiver<Vec<SpanData>>) {
        let mut batch: Vec<SpanData> = Vec::new();
        loop {
            let more = rx.try_recv();
            if let Ok(spans) = &more {
                batch.extend_from_slice(spans);
            }
            if batch.len() >= MAX_BATCH || (more.is_err() && !batch.is_empty()) {
                if let Err(e) = self.post(&batch).await {
                    // One warning a minute: a down collector must not flood the log.
                    if self
                        .last_warning
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                    {
                        tracing::warn!("OTLP export to {} failed: {e}", self.uri);
                        self.last_warning = Some(Instant::now());
                    }
                }
                batch.clear();
            }
            if more.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_valid_traceparent() {
        let (t, p, f) = parse_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p), "00f067aa0ba902b7");
        assert_eq!(f, 1);
        // A future version may carry more fields after a dash.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(parse_traceparent(future.as_bytes()).is_some());
    }

    #[test]
    fn refuses_malformed_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn joins_or_starts_a_trace() {
        let c = Context::from_header(Some(VALID.as_bytes()));
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            c.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(!c.restarted && c.sampled());
        let child = new_span_id();
        let tp = c.traceparent(child);
        let tp = std::str::from_utf8(&tp).unwrap();
        assert_eq!(
            tp,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", hex(&child))
        );
        assert!(parse_traceparent(tp.as_bytes()).is_some());

        let fresh = Context::from_header(None);
        assert!(fresh.parent.is_none() && !fresh.restarted && fresh.sampled());
        let bad = Context::from_header(Some(b"garbage"));
        assert!(bad.parent.is_none() && bad.restarted);
        assert_ne!(bad.trace_id, fresh.trace_id);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint_uri("http://127.0.0.1:4318").unwrap().to_string(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            endpoint_uri("http://collector:4318/custom/path")
                .unwrap()
                .path(),
            "/custom/path"
        );
        assert!(endpoint_uri("https://collector").is_err());
        assert!(endpoint_uri("collector:4318").is_err());
    }

    #[test]
    fn encodes_otlp_json() {
        let s = SpanData {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            name: "POST /v1/chat/completions".into(),
            kind: SpanKind::Server,
            start_ns: 5,
            end_ns: 9,
            error: None,
            attrs: vec![("http.response.status_code", Attr::Int(200))],
        };
        let v = encode(&[s], "modelgate");
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01010101010101010101010101010101");
        assert_eq!(span["parentSpanId"], "0303030303030303");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["endTimeUnixNano"], "9");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "200");
    }
}
