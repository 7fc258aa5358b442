//! `POST /model-apis/{name}/debug`: one request sent through a data-plane
//! listener over loopback, so it meets exactly what a client meets
//! (routing, fallback, moderation); only consumer auth is bypassed, by the
//! per-process marker in [`DEBUG_HEADER`].
//!
//! The marker must reach only the Model API named (docs/security.md): the
//! `domain` must be one of its own domains (or a host its wildcard
//! covers), and the host and path must route to it in the snapshot being
//! served (400 otherwise, naming no other Model API). Should routing change
//! between that check and the data plane reading the request, an answer
//! from a service the Model API does not name is withheld (409).
//!
//! The answer is one JSON object. A client that accepts
//! `text/event-stream` gets the same as it happens instead: `head` (status,
//! service, fallbacks), one `event` per upstream stream event, then
//! `result` (the JSON object).

use super::auth::Access;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::model_apis::{full_path, named_services};
use super::resources::find_visible;
use crate::config::catalog::{self, Body, Protocol, Scenario};
use crate::config::raw::ModelApiSpec;
use crate::control::Control;
use crate::http::body::ChunkedDecoder;
use crate::http::sse::{self, SseSplitter};
use crate::shared::DEBUG_HEADER;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use utoipa::ToSchema;

/// Longest a debug request may take, start to end.
const DEADLINE: Duration = Duration::from_secs(300);
/// Caps on what is kept of the answer.
const MAX_EVENTS: usize = 10_000;
const MAX_BODY: usize = 8 << 20;

/// One request to send through a Model API. Any other top-level field
/// (`prompt`, `input`, `max_tokens`, ...) goes into the body as it is.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct DebugRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    messages: Option<Value>,
    /// Merged into the top level of the body sent.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
    /// Merged into the top level of the body sent, after `parameters`.
    #[serde(default)]
    #[schema(value_type = Object)]
    custom_parameters: Map<String, Value>,
    /// Host to send as; default: the Model API's first domain.
    #[serde(default)]
    domain: Option<String>,
    /// Route path below the base path; default: the first JSON POST route.
    #[serde(default)]
    path: Option<String>,
    /// Any other top-level field (`prompt`, `input`, `max_tokens`, ...).
    #[serde(flatten)]
    #[schema(ignore)]
    extra: Map<String, Value>,
}

/// What one debug request met.
#[derive(Serialize, ToSchema)]
pub struct DebugAnswer {
    status: u16,
    /// The service that answered (or was tried last).
    service: Option<String>,
    /// Fallback attempts used.
    fallbacks: u64,
    /// Time to the first body byte (for a stream: the first event).
    first_packet_ms: Option<f64>,
    total_ms: f64,
    /// The JSON body; for a stream, `{"text": ...}` assembled from its deltas.
    #[schema(value_type = Object)]
    response: Value,
    /// Each stream event as received.
    stream_events: Vec<String>,
}

/// What happened, as it happens.
enum Progress {
    Head(Value),
    Event(String),
    Done(Result<DebugAnswer, ApiError>),
}

impl Progress {
    /// As one server-sent event to the admin client.
    fn frame(self) -> String {
        let (event, data) = match self {
            Progress::Head(v) => ("head", v.to_string()),
            Progress::Event(e) => ("event", Value::String(e).to_string()),
            Progress::Done(Ok(answer)) => (
                "result",
                serde_json::to_string(&answer).expect("serializes"),
            ),
            Progress::Done(Err(e)) => (
                "error",
                json!({"error": {"code": e.code, "message": e.message}}).to_string(),
            ),
        };
        format!("event: {event}\ndata: {data}\n\n")
    }
}

/// Sends one request through the Model API over a data-plane listener.
/// With `Accept: text/event-stream` the answer streams as events `head`,
/// `event`* and `result` (a `DebugAnswer`).
#[utoipa::path(post, path = "/admin/v1/model-apis/{name}/debug", tag = "model-apis",
    params(("name" = String, Path)), request_body = DebugRequest,
    responses((status = 200, content((DebugAnswer = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody), (status = 504, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn debug(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<DebugRequest>,
) -> Result<Response, ApiError> {
    let api = {
        let res = ctl.resources.lock().await;
        find_visible::<ModelApiSpec>(&res, &access, &name)?
            .spec()
            .clone()
    };
    let prepared = prepare(&api, req)?;
    stays_inside(&ctl, &api, &prepared)?;
    let wants_progress = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_progress {
        let answer = run(&ctl, &prepared, None).await?;
        return Ok(Json(answer).into_response());
    }
    let (tx, rx) = mpsc::channel::<Progress>(64);
    let ctl = ctl.clone();
    tokio::spawn(async move {
        let result = run(&ctl, &prepared, Some(tx.clone())).await;
        let _ = tx.send(Progress::Done(result)).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let p = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(p.frame()), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// The request to send, worked out from the Model API and the debug body.
struct Prepared {
    host: String,
    path: String,
    body: Vec<u8>,
    stream: bool,
    /// The services the Model API names: the only ones that may answer.
    services: Vec<String>,
    /// The Model API the debug marker is good for.
    api: String,
}

/// Host to use for a domain: `*` and `*.suffix` get a name no exact
/// domain is likely to claim.
fn host_for(domain: &str) -> String {
    if domain == "*" {
        "modelgate-debug.invalid".into()
    } else if let Some(suffix) = domain.strip_prefix('*') {
        format!("modelgate-debug{suffix}")
    } else {
        domain.to_string()
    }
}

/// The host without its port, in lower case.
fn bare_host(host: &str) -> String {
    let h = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        },
    };
    h.to_ascii_lowercase()
}

/// Whether the debug `domain` is one of the Model API's own: one of its
/// domains as written (any case, port ignored), or a host that one of its
/// wildcards covers.
fn own_domain(api: &ModelApiSpec, domain: &str) -> bool {
    let asked = bare_host(domain);
    let host = bare_host(&host_for(domain));
    api.domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        if d == asked || d == "*" {
            return true;
        }
        match d.strip_prefix('*') {
            Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            None => false,
        }
    })
}

/// The debug request must reach this Model API and no other: its host
/// and path route to it in the snapshot being served.
fn stays_inside(ctl: &Control, api: &ModelApiSpec, req: &Prepared) -> Result<(), ApiError> {
    let snap = ctl.shared.snapshot.load();
    let Some(index) = snap.apis.iter().position(|a| a.name == api.name) else {
        return Err(ApiError::internal(format!(
            "Model API {:?} is not in the running snapshot",
            api.name
        )));
    };
    if !snap.hosts.lookup(&req.host).contains(&index) {
        return Err(ApiError::invalid(
            "domain",
            format!(
                "requests to {:?} are not served by this Model API; use one of its domains",
                req.host
            ),
        ));
    }
    let path = req.path.split(['?', '#']).next().unwrap_or("");
    let routed = match crate::route::api::find(&snap, &req.host, "POST", path) {
        Ok(m) => Some(m.api),
        Err((api, _)) => api,
    };
    if routed != Some(index) {
        return Err(ApiError::invalid(
            "path",
            format!(
                "{path:?} on {:?} is not served by this Model API (a longer base path there takes it)",
                req.host
            ),
        ));
    }
    Ok(())
}

fn prepare(api: &ModelApiSpec, req: DebugRequest) -> Result<Prepared, ApiError> {
    let domain = req
        .domain
        .clone()
        .or_else(|| api.domains.first().cloned())
        .unwrap_or_else(|| "*".into());
    if domain.is_empty()
        || domain
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(ApiError::invalid("domain", "must be a host name"));
    }
    if !own_domain(api, &domain) {
        return Err(ApiError::invalid(
            "domain",
            format!(
                "must be one of the Model API's domains ({}) or a host its wildcard covers",
                api.domains.join(", ")
            ),
        ));
    }
    let routes = match (
        api.scenario.parse::<Scenario>(),
        api.protocol.parse::<Protocol>(),
    ) {
        (Ok(s), Ok(p)) => catalog::routes(s, p),
        _ => &[],
    };
    let route_path = match &req.path {
        Some(p) if p.starts_with('/') && !p.bytes().any(|b| b <= b' ' || b == 0x7f) => p.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "path",
                "must start with / and hold no spaces",
            ))
        }
        None => routes
            .iter()
            .find(|r| r.body == Body::Json && r.methods.contains("POST"))
            .map(|r| r.path.to_string())
            .ok_or_else(|| {
                ApiError::invalid(
                    "path",
                    format!(
                        "scenario {} with protocol {} has no JSON POST route; name one",
                        api.scenario, api.protocol
                    ),
                )
            })?,
    };
    let mut body = Map::new();
    if let Some(m) = req.model {
        body.insert("model".into(), Value::String(m));
    }
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    if let Some(m) = req.messages {
        body.insert("messages".into(), m);
    }
    body.extend(req.extra);
    body.extend(req.parameters);
    body.extend(req.custom_parameters);
    Ok(Prepared {
        host: host_for(&domain),
        path: full_path(&api.base_path, &route_path),
        body: Value::Object(body).to_string().into_bytes(),
        stream: req.stream,
        api: api.name.clone(),
        services: named_services(api)
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect(),
    })
}

async fn run(
    ctl: &Control,
    req: &Prepared,
    progress: Option<mpsc::Sender<Progress>>,
) -> Result<DebugAnswer, ApiError> {
    match tokio::time::timeout(DEADLINE, exchange(ctl, req, progress)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "debug_timeout",
            format!("no complete answer within {}s", DEADLINE.as_secs()),
        )),
    }
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "debug_failed",
        format!("debug request through the data plane failed: {e}"),
    )
}

/// The answer being read: what the debug response reports.
#[derive(Default)]
struct Answer {
    body: Vec<u8>,
    events: Vec<String>,
    text: String,
    first_packet: Option<Instant>,
}

impl Answer {
    fn data(&mut self, data: &[u8], sse: Option<&mut SseSplitter>) {
        if data.is_empty() {
            return;
        }
        match sse {
            Some(splitter) => {
                let mut events = Vec::new();
                splitter.push(data, |e| events.push(e.to_vec()));
                for e in events {
                    self.event(&e);
                }
            }
            None => {
                self.first_packet.get_or_insert_with(Instant::now);
                let room = MAX_BODY.saturating_sub(self.body.len());
                self.body.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }

    fn event(&mut self, event: &[u8]) {
        self.first_packet.get_or_insert_with(Instant::now);
        if self.events.len() >= MAX_EVENTS {
            return;
        }
        for d in sse::data_lines(event) {
            if let Ok(v) = serde_json::from_slice::<Value>(d) {
                let piece = v["choices"][0]["delta"]["content"]
                    .as_str()
                    .or_else(|| v["delta"]["text"].as_str());
                if let Some(p) = piece {
                    self.text.push_str(p);
                }
            }
        }
        self.events
            .push(String::from_utf8_lossy(event).trim_end().to_string());
    }
}

type ProgressTx = Option<mpsc::Sender<Progress>>;

/// Passes on the events not yet sent; a client that went away ends the
/// debug request.
async fn flush(tx: &ProgressTx, events: &[String], sent: &mut usize) -> Result<(), ApiError> {
    if let Some(tx) = tx {
        for e in &events[*sent..] {
            tx.send(Progress::Event(e.clone()))
                .await
                .map_err(|_| failed("the debug client went away"))?;
        }
    }
    *sent = events.len();
    Ok(())
}

async fn exchange(
    ctl: &Control,
    req: &Prepared,
    progress: ProgressTx,
) -> Result<DebugAnswer, ApiError> {
    let start = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(ctl.data_addr)
        .await
        .map_err(failed)?;
    let mut out = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{DEBUG_HEADER}: {}\r\nconnection: close\r\n",
        req.path,
        req.host,
        req.body.len(),
        ctl.shared.debug_marker(&req.api)
    )
    .into_bytes();
    if req.stream {
        out.extend_from_slice(b"accept: text/event-stream\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    conn.write_all(&out).await.map_err(failed)?;

    // Head.
    let mut buf = Vec::with_capacity(16 * 1024);
    let (status, head_len, headers) = loop {
        if conn.read_buf(&mut buf).await.map_err(failed)? == 0 {
            return Err(failed("connection closed before a response"));
        }
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf).map_err(failed)? {
            httparse::Status::Complete(n) => {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (resp.code.unwrap_or(0), n, headers);
            }
            httparse::Status::Partial if buf.len() > 64 * 1024 => {
                return Err(failed("response head too large"))
            }
            httparse::Status::Partial => {}
        }
    };
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let service = get("x-modelgate-service").map(str::to_string);
    let fallbacks: u64 = get("x-modelgate-fallback")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let is_sse = get("content-type").is_some_and(|v| v.starts_with("text/event-stream"));
    if service.as_ref().is_some_and(|s| !req.services.contains(s)) {
        // Routing changed after `stays_inside`: what answered is not this
        // Model API's, and nothing of it is passed on.
        return Err(ApiError::conflict(
            "conflict",
            "the Model API's routing changed while the debug request was sent; retry",
        ));
    }
    let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length: Option<u64> = get("content-length").and_then(|v| v.parse().ok());
    if let Some(tx) = &progress {
        let _ = tx
            .send(Progress::Head(
                json!({"status": status, "service": service, "fallbacks": fallbacks}),
            ))
            .await;
    }

    // Body, as it arrives.
    let mut answer = Answer::default();
    let mut splitter = is_sse.then(SseSplitter::default);
    let mut decoder = chunked.then(|| ChunkedDecoder::new(u64::MAX));
    let mut pending = buf.split_off(head_len);
    let mut received: u64 = 0;
    let mut sent = 0;
    loop {
        let done = if let Some(d) = decoder.as_mut() {
            let mut data = Vec::new();
            d.decode(&pending, |x| data.extend_from_slice(x))
                .map_err(failed)?;
            answer.data(&data, splitter.as_mut());
            d.is_done()
        } else {
            received += pending.len() as u64;
            answer.data(&pending, splitter.as_mut());
            length.is_some_and(|n| received >= n)
        };
        flush(&progress, &answer.events, &mut sent).await?;
        if done || status == 204 || status == 304 || (length == Some(0)) {
            break;
        }
        pending.clear();
        if conn.read_buf(&mut pending).await.map_err(failed)? == 0 {
            if decoder.is_some() || length.is_some() {
                return Err(failed("response cut short"));
            }
            break;
        }
    }
    if let Some(s) = splitter.as_mut() {
        let mut tail = Vec::new();
        s.finish(|e| tail.push(e.to_vec()));
        for e in tail {
            answer.event(&e);
        }
        flush(&progress, &answer.events, &mut sent).await?;
    }
    let total = start.elapsed();
    let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let response = if is_sse {
        json!({"text": answer.text})
    } else {
        serde_json::from_slice::<Value>(&answer.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer.body).into_owned()))
    };
    Ok(DebugAnswer {
        status,
        service,
        fallbacks,
        first_packet_ms: answer.first_packet.map(|t| ms(t - start)),
        total_ms: ms(total),
        response,
        stream_events: answer.events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_domain_is_one_of_the_model_apis_own() {
        let api: ModelApiSpec = serde_json::from_value(json!({
            "name": "a", "scenario": "text", "protocol": "openai",
            "domains": ["api.example.com", "*.corp.example.com"],
            "service": {"mode": "single", "target": {"service": "s"}}}))
        .unwrap();
        for ok in [
            "api.example.com",
            "API.Example.com:8443",
            "*.corp.example.com",
            "x.corp.example.com",
            "a.b.corp.example.com",
        ] {
            assert!(own_domain(&api, ok), "{ok}");
        }
        for no in [
            "corp.example.com",
            "b.example.com",
            "*",
            "*.example.com",
            "xcorp.example.com",
            "api.example.com.evil",
        ] {
            assert!(!own_domain(&api, no), "{no}");
        }
        let any: ModelApiSpec = serde_json::from_value(json!({
            "name": "b", "scenario": "text", "protocol": "openai", "domains": ["*"],
            "service": {"mode": "single", "target": {"service": "s"}}}))
        .unwrap();
        // Any host is a catch-all's own; routing decides whether it is served.
        assert!(own_domain(&any, "whatever.example.com") && own_domain(&any, "*"));
        assert_eq!(bare_host("[::1]:80"), "::1");
        assert_eq!(bare_host("Host.Example:8080"), "host.example");
    }
}
