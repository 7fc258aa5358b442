//! Observability: what each request leaves behind.
//!
//! The pipeline fills one [`Record`] per request where the facts become
//! known (route, model, attempts, first packet, usage, status) and hands
//! it to its worker's [`Shard`] once, at the end: a metrics delta, an
//! access log line and spans, all kept in the worker's own memory. Every
//! `FLUSH_EVERY` the worker sends them on: metric deltas to the control
//! thread (merged for `GET /metrics`), log lines to the writer thread,
//! spans to the control thread's OTLP exporter. Nothing on the request
//! path waits for another thread.

pub mod access_log;
pub mod metrics;
pub mod redact;
pub mod trace;
pub mod usage;

pub use usage::Usage;

use crate::config::catalog::RouteDef;
use crate::config::raw::RawConfig;
use crate::config::Problems;
use crate::error::{Error, Kind, Side};
use crate::http::head::Method;
use access_log::{Destination, Line, Msg};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use metrics::{series_key, Delta};
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use trace::{Attr, SpanData, SpanId, SpanKind};

/// How often a worker sends what it recorded.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Span batches in flight to the exporter.
const SPAN_QUEUE: usize = 256;
/// Spans a worker keeps between flushes before dropping.
const MAX_PENDING_SPANS: usize = 8192;

/// One upstream attempt (the in-process mock counts as one).
#[derive(Debug)]
pub struct Attempt {
    pub service: usize,
    /// The model the target rewrote the request to, if it does.
    pub model: Option<String>,
    pub span: SpanId,
    pub start: Instant,
    pub end: Option<Instant>,
    /// The upstream's response status, when it answered.
    pub status: Option<u16>,
    /// Why it failed (`upstream_errors_total{kind}`).
    pub error: Option<&'static str>,
}

/// What one request did, filled in as the pipeline learns it.
#[derive(Debug)]
pub struct Record {
    pub start: Instant,
    /// The wall clock at `start`, set by `finish` (for log lines and spans).
    pub wall: SystemTime,
    pub method: Method,
    pub api: Option<usize>,
    pub route: Option<&'static RouteDef>,
    /// The model the client asked for.
    pub model: Option<String>,
    pub consumer: Option<String>,
    pub stream: bool,
    /// The status the client got (0: nothing was written).
    pub status: u16,
    /// The error code, when the gateway answered with an error or a
    /// stream ended with one.
    pub error: Option<&'static str>,
    /// Inline: nearly every request makes exactly one attempt.
    pub attempts: SmallVec<[Attempt; 1]>,
    pub first_packet: Option<Instant>,
    pub usage: Usage,
    pub trace: trace::Context,
    pub request_body: Option<Vec<u8>>,
    /// `Some` when the Model API logs response bodies: what was relayed,
    /// up to `body_cap` bytes.
    pub response_body: Option<Vec<u8>>,
    pub body_cap: usize,
}

/// The kind label of a failed attempt.
pub fn error_kind(e: &Error) -> &'static str {
    match e.kind {
        Kind::UpstreamConnect => "connect",
        Kind::UpstreamTimeout => "timeout",
        Kind::FirstPacketTimeout => "first_packet_timeout",
        Kind::UpstreamProtocol => "protocol",
        _ => "status",
    }
}

impl Record {
    /// Starts the record of a request whose head just arrived.
    pub fn start(method: Method, traceparent: Option<&[u8]>) -> Record {
        Record {
            start: Instant::now(),
            // Set by `finish`, and only when a log line or span needs it.
            wall: UNIX_EPOCH,
            method,
            api: None,
            route: None,
            model: None,
            consumer: None,
            stream: false,
            status: 0,
            error: None,
            attempts: SmallVec::new(),
            first_packet: None,
            usage: Usage::default(),
            trace: trace::Context::from_header(traceparent),
            request_body: None,
            response_body: None,
            body_cap: 0,
        }
    }

    /// Applies the Model API's `monitoring` body settings.
    pub fn log_bodies(&mut self, request: Option<&[u8]>, response: bool, cap: usize) {
        self.body_cap = cap;
        if let Some(body) = request {
            let mut out = Vec::with_capacity(body.len().min(cap));
            redact::redact_into(body, cap, &mut out);
            self.request_body = Some(out);
        }
        if response {
            self.response_body = Some(Vec::new());
        }
    }

    /// Starts an attempt; returns its span id (the upstream's parent).
    pub fn attempt(&mut self, service: usize, model: Option<&str>) -> SpanId {
        let span = trace::new_span_id();
        self.attempts.push(Attempt {
            service,
            model: model.map(str::to_string),
            span,
            start: Instant::now(),
            end: None,
            status: None,
            error: None,
        });
        span
    }

    /// The current attempt failed before an answer (connect, timeout...).
    pub fn attempt_failed(&mut self, e: &Error) {
        if let Some(a) = self.attempts.last_mut() {
            a.end = Some(Instant::now());
            if e.side == Side::Upstream {
                a.error = Some(error_kind(e));
            }
        }
    }

    /// The current attempt's upstream answered with `status`; `done`
    /// when the answer is dropped for a fallback.
    pub fn attempt_answered(&mut self, status: u16, done: bool) {
        if let Some(a) = self.attempts.last_mut() {
            a.status = Some(status);
            if status == 429 {
                a.error = Some("http_429");
            } else if status >= 500 {
                a.error = Some("http_5xx");
            }
            if done {
                a.end = Some(Instant::now());
            }
        }
    }

    /// The upstream failed after the answer started: the stream ended
    /// with an error for the client.
    pub fn stream_failed(&mut self, e: &Error) {
        self.error = Some(e.code());
        if let Some(a) = self.attempts.last_mut() {
            a.error = Some("stream");
        }
    }

    /// The first response body bytes are going to the client now.
    #[inline]
    pub fn first_packet(&mut self) {
        if self.first_packet.is_none() {
            self.first_packet = Some(Instant::now());
        }
    }

    /// Keeps what was relayed when the Model API logs response bodies.
    #[inline]
    pub fn relayed(&mut self, data: &[u8]) {
        if let Some(b) = &mut self.response_body {
            let room = self.body_cap.saturating_sub(b.len());
            b.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn wall_ns(&self, t: Instant) -> u64 {
        let start = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        (start + t.saturating_duration_since(self.start)).as_nanos() as u64
    }
}

fn method_str(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Connect => "CONNECT",
        Method::Trace => "TRACE",
        Method::Other => "_OTHER",
    }
}

/// `[log]` and `[trace]` settings, read once at start.
pub struct Settings {
    pub access: Destination,
    pub body_max_bytes: usize,
    pub otlp: Option<hyper::Uri>,
    pub service_name: String,
}

impl Settings {
    pub fn from_raw(raw: &RawConfig) -> Result<Settings, String> {
        let otlp = match raw.trace.otlp_endpoint.as_deref() {
            Some(url) => {
                Some(trace::endpoint_uri(url).map_err(|e| format!("trace.otlp_endpoint: {e}"))?)
            }
            None => None,
        };
        Ok(Settings {
            access: Destination::parse(&raw.log.access),
            body_max_bytes: raw.log.body_max_bytes,
            otlp,
            service_name: raw.trace.service_name.clone(),
        })
    }
}

/// Checks `[log]` and `[trace]` for `modelgate check` and reloads.
pub fn check(raw: &RawConfig, p: &mut Problems) {
    if let Some(url) = raw.trace.otlp_endpoint.as_deref() {
        if let Err(e) = trace::endpoint_uri(url) {
            p.error("trace.otlp_endpoint", e);
        }
    }
    if raw.trace.service_name.is_empty() {
        p.error("trace.service_name", "must not be empty");
    }
    if raw.log.body_max_bytes == 0 {
        p.error("log.body_max_bytes", "must be at least 1");
    }
}

/// The control-thread side, held in `Shared`.
pub struct Observe {
    pub metrics: metrics::Metrics,
    metrics_tx: Sender<Delta>,
    log_tx: Option<Sender<Msg>>,
    log_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    spans_tx: Option<Sender<Vec<SpanData>>>,
    spans_rx: Receiver<Vec<SpanData>>,
    otlp: Option<(hyper::Uri, String)>,
    body_max_bytes: usize,
}

impl Observe {
    /// Opens the access log and prepares the channels workers send on.
    pub fn start(settings: Settings) -> Result<Observe, String> {
        let (metrics_tx, metrics_rx) = crossbeam_channel::unbounded();
        let (log_tx, log_thread) = match access_log::start(&settings.access) {
            Ok(Some((tx, t))) => (Some(tx), Some(t)),
            Ok(None) => (None, None),
            Err(e) => return Err(format!("log.access: {e}")),
        };
        let (spans_tx, spans_rx) = crossbeam_channel::bounded(SPAN_QUEUE);
        Ok(Observe {
            metrics: metrics::Metrics {
                rx: metrics_rx,
                registry: Default::default(),
            },
            metrics_tx,
            log_tx,
            log_thread: Mutex::new(log_thread),
            spans_tx: settings.otlp.is_some().then_some(spans_tx),
            spans_rx,
            otlp: settings.otlp.map(|u| (u, settings.service_name)),
            body_max_bytes: settings.body_max_bytes,
        })
    }

    /// A new worker's shard.
    pub fn shard(&self) -> Shard {
        Shard {
            delta: RefCell::new(Delta::default()),
            key: RefCell::new(String::with_capacity(128)),
            log: RefCell::new(access_log::Buffer::default()),
            spans: RefCell::new(Vec::new()),
            metrics_tx: self.metrics_tx.clone(),
            log_tx: self.log_tx.clone(),
            spans_tx: self.spans_tx.clone(),
            last_flush: Cell::new(Instant::now()),
            body_max_bytes: self.body_max_bytes,
        }
    }

    /// Exports whatever spans are queued (control thread).
    async fn export(&self, exporter: &mut Option<trace::Exporter>) {
        if let Some(e) = exporter {
            e.drain(&self.spans_rx).await;
        }
    }

    fn exporter(&self) -> Option<trace::Exporter> {
        self.otlp
            .as_ref()
            .map(|(uri, name)| trace::Exporter::new(uri.clone(), name.clone()))
    }

    /// After the workers stopped: last spans out, access log written.
    pub async fn shutdown(&self) {
        let mut exporter = self.exporter();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.export(&mut exporter)).await;
        if let Some(tx) = &self.log_tx {
            let _ = tx.send_timeout(Msg::Stop, Duration::from_secs(2));
        }
        let thread = self
            .log_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The control thread's part: merge metric deltas so memory stays
/// bounded between scrapes, export spans, and reopen the access log file
/// on SIGHUP (as nginx does for logrotate).
pub async fn control_loop(observe: Arc<Observe>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut exporter = observe.exporter();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                observe.metrics.collect();
                observe.export(&mut exporter).await;
            }
            Some(()) = async { hup.as_mut()?.recv().await } => {
                if let Some(tx) = &observe.log_tx {
                    let _ = tx.try_send(Msg::Reopen);
                }
            }
        }
    }
}

/// What [`Shard::finish`] reads of the snapshot a request was served
/// under: what the indexes of its [`Record`] stand for. The snapshot
/// implements it; it sits a floor above observe (its compile runs
/// [`check`]), so observe does not name it.
pub trait Labels {
    fn model_api(&self, index: usize) -> Option<ApiLabels<'_>>;
    fn service_name(&self, index: usize) -> Option<&str>;
}

/// A Model API as metrics, the access log and spans name it.
#[derive(Clone, Copy)]
pub struct ApiLabels<'a> {
    pub name: &'a str,
    pub resource_group: &'a str,
    /// `monitoring.enabled`: whether the request is logged and traced.
    pub monitored: bool,
}

/// Through `Rc`, `Arc` and references, as workers hold the snapshot.
impl<T: std::ops::Deref> Labels for T
where
    T::Target: Labels,
{
    fn model_api(&self, index: usize) -> Option<ApiLabels<'_>> {
        (**self).model_api(index)
    }

    fn service_name(&self, index: usize) -> Option<&str> {
        (**self).service_name(index)
    }
}

/// A worker's own recording state. Only its thread touches it.
pub struct Shard {
    delta: RefCell<Delta>,
    /// Scratch for series keys.
    key: RefCell<String>,
    log: RefCell<access_log::Buffer>,
    spans: RefCell<Vec<SpanData>>,
    metrics_tx: Sender<Delta>,
    log_tx: Option<Sender<Msg>>,
    spans_tx: Option<Sender<Vec<SpanData>>>,
    last_flush: Cell<Instant>,
    pub body_max_bytes: usize,
}

impl Shard {
    /// Records a finished request: metrics, access log line, spans.
    /// Returns the instant it ended.
    pub fn finish<S: Labels + ?Sized>(
        &self,
        snap: &S,
        request_id: &str,
        rec: &mut Record,
    ) -> Instant {
        let end = Instant::now();
        if rec.status == 0 {
            // Nothing reached the client: nginx's "client closed request".
            rec.status = 499;
        }
        if let Some(a) = rec.attempts.last_mut() {
            a.end.get_or_insert(end);
        }
        let api = rec.api.and_then(|i| snap.model_api(i));
        let api_name = api.map(|a| a.name);
        let last = rec.attempts.last();
        let service = last.and_then(|a| snap.service_name(a.service));
        let model = last
            .and_then(|a| a.model.as_deref())
            .or(rec.model.as_deref());
        let route = rec.route.map(|r| r.name);
        let duration = end.saturating_duration_since(rec.start);
        let first_packet = rec
            .first_packet
            .map(|t| t.saturating_duration_since(rec.start));

        {
            let mut key = self.key.borrow_mut();
            let mut delta = self.delta.borrow_mut();
            series_key(
                &mut key,
                &[
                    api_name.unwrap_or(""),
                    route.unwrap_or(""),
                    service.unwrap_or(""),
                    model.unwrap_or(""),
                    rec.consumer.as_deref().unwrap_or(""),
                    api.map(|a| a.resource_group).unwrap_or(""),
                ],
            );
            let s = delta.series(&key);
            s.count_status(rec.status, 1);
            s.input_tokens += rec.usage.input.unwrap_or(0);
            s.output_tokens += rec.usage.output.unwrap_or(0);
            s.duration.observe(duration.as_secs_f64());
            if let (true, Some(fp)) = (rec.stream, first_packet) {
                s.first_packet.observe(fp.as_secs_f64());
            }
            for (n, a) in rec.attempts.iter().enumerate() {
                let svc = snap.service_name(a.service).unwrap_or("");
                if let Some(kind) = a.error {
                    series_key(&mut key, &[svc, kind]);
                    Delta::count(&mut delta.upstream_errors, &key);
                }
                if n > 0 {
                    series_key(&mut key, &[api_name.unwrap_or(""), svc]);
                    Delta::count(&mut delta.fallbacks, &key);
                }
            }
        }

        if !api.is_none_or(|a| a.monitored) {
            return end;
        }
        // The wall clock when the request started: read once, at the end.
        rec.wall = SystemTime::now()
            .checked_sub(duration)
            .unwrap_or(UNIX_EPOCH);
        let trace_hex = trace::trace_hex(&rec.trace.trace_id);
        let trace_id = std::str::from_utf8(&trace_hex).expect("hex is ASCII");
        if let Some(tx) = &self.log_tx {
            let line = Line {
                ts: rec.wall,
                request_id,
                model_api: api_name,
                route,
                consumer: rec.consumer.as_deref(),
                service,
                model,
                status: rec.status,
                duration,
                first_packet,
                input_tokens: rec.usage.input,
                output_tokens: rec.usage.output,
                fallbacks: rec.attempts.len().saturating_sub(1),
                stream: rec.stream,
                error: rec.error,
                trace_id,
                request_body: rec.request_body.as_deref(),
                response_body: rec.response_body.as_deref(),
            };
            let mut log = self.log.borrow_mut();
            let mut redacted = Vec::new();
            let line = match line.response_body {
                Some(body) => {
                    redact::redact_into(body, self.body_max_bytes, &mut redacted);
                    Line {
                        response_body: Some(&redacted),
                        ..line
                    }
                }
                None => line,
            };
            line.write(&mut log.bytes);
            log.lines += 1;
            if log.bytes.len() >= access_log::FLUSH_BYTES {
                let dropped = log.send(tx);
                self.delta.borrow_mut().access_log_dropped += dropped;
            }
        }
        if self.spans_tx.is_some() && rec.trace.sampled() {
            let mut spans = self.spans.borrow_mut();
            if spans.len() >= MAX_PENDING_SPANS {
                self.delta.borrow_mut().spans_dropped += 2 + rec.attempts.len() as u64;
            } else {
                push_spans(&mut spans, snap, request_id, rec, end, service, model);
            }
        }
        end
    }

    /// Sends what was recorded since the last flush, at most every
    /// `FLUSH_EVERY` unless `now`.
    pub fn flush(&self, now: bool) {
        if !now && self.last_flush.get().elapsed() < FLUSH_EVERY {
            return;
        }
        self.last_flush.set(Instant::now());
        if let Some(tx) = &self.log_tx {
            let dropped = self.log.borrow_mut().send(tx);
            self.delta.borrow_mut().access_log_dropped += dropped;
        }
        if let Some(tx) = &self.spans_tx {
            let mut spans = self.spans.borrow_mut();
            if !spans.is_empty() {
                let batch = std::mem::take(&mut *spans);
                if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) =
                    tx.try_send(batch)
                {
                    self.delta.borrow_mut().spans_dropped += b.len() as u64;
                }
            }
        }
        let mut delta = self.delta.borrow_mut();
        if !delta.is_empty() {
            let _ = self.metrics_tx.send(std::mem::take(&mut *delta));
        }
    }
}

/// The request's spans: the request (server), each attempt (client),
/// and the wait for the first packet.
fn push_spans<S: Labels + ?Sized>(
    out: &mut Vec<SpanData>,
    snap: &S,
    request_id: &str,
    rec: &Record,
    end: Instant,
    service: Option<&str>,
    model: Option<&str>,
) {
    let t = &rec.trace;
    let mut attrs = vec![
        (
            "http.request.method",
            Attr::Str(method_str(rec.method).into()),
        ),
        ("http.response.status_code", Attr::Int(rec.status as i64)),
        ("modelgate.request_id", Attr::Str(request_id.into())),
        (
            "modelgate.fallbacks",
            Attr::Int(rec.attempts.len().saturating_sub(1) as i64),
        ),
    ];
    let api = rec.api.and_then(|i| snap.model_api(i));
    if let Some(a) = api {
        attrs.push(("modelgate.model_api", Attr::Str(a.name.into())));
    }
    if let Some(r) = rec.route {
        attrs.push(("http.route", Attr::Str(r.path.into())));
        attrs.push(("modelgate.route", Attr::Str(r.name.into())));
    }
    if let Some(s) = service {
        attrs.push(("modelgate.service", Attr::Str(s.into())));
    }
    if let Some(m) = model {
        attrs.push(("gen_ai.request.model", Attr::Str(m.into())));
    }
    if let Some(c) = &rec.consumer {
        attrs.push(("modelgate.consumer", Attr::Str(c.clone())));
    }
    if let Some(n) = rec.usage.input {
        attrs.push(("gen_ai.usage.input_tokens", Attr::Int(n as i64)));
    }
    if let Some(n) = rec.usage.output {
        attrs.push(("gen_ai.usage.output_tokens", Attr::Int(n as i64)));
    }
    let name = match (rec.route, api) {
        (Some(r), _) => format!("{} {}", method_str(rec.method), r.path),
        (None, Some(a)) => format!("{} {}", method_str(rec.method), a.name),
        _ => method_str(rec.method).to_string(),
    };
    out.push(SpanData {
        trace_id: t.trace_id,
        span_id: t.span,
        parent: t.parent,
        name,
        kind: SpanKind::Server,
        start_ns: rec.wall_ns(rec.start),
        end_ns: rec.wall_ns(end),
        error: (rec.status >= 500 || rec.error.is_some())
            .then(|| rec.error.unwrap_or("error").to_string()),
        attrs,
    });
    for (n, a) in rec.attempts.iter().enumerate() {
        let svc = snap.service_name(a.service).unwrap_or("");
        let mut attrs = vec![
            ("modelgate.service", Attr::Str(svc.into())),
            ("modelgate.attempt", Attr::Int(n as i64)),
        ];
        if let Some(s) = a.status {
            attrs.push(("http.response.status_code", Attr::Int(s as i64)));
        }
        if let Some(e) = a.error {
            attrs.push(("error.type", Attr::Str(e.into())));
        }
        out.push(SpanData {
            trace_id: t.trace_id,
            span_id: a.span,
            parent: Some(t.span),
            name: format!("upstream {svc}"),
            kind: SpanKind::Client,
            start_ns: rec.wall_ns(a.start),
            end_ns: rec.wall_ns(a.end.unwrap_or(end)),
            error: a.error.map(str::to_string),
            attrs,
        });
    }
    if let Some(fp) = rec.first_packet {
        let (parent, start) = match rec.attempts.last() {
            Some(a) => (a.span, a.start),
            None => (t.span, rec.start),
        };
        out.push(SpanData {
            trace_id: t.trace_id,
            span_id: trace::new_span_id(),
            parent: Some(parent),
            name: "first packet".into(),
            kind: SpanKind::Internal,
            start_ns: rec.wall_ns(start),
            end_ns: rec.wall_ns(fp),
            error: None,
            attrs: Vec::new(),
        });
    }
}
