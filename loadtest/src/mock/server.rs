//! Connections: keep-alive request loop, `/_mock/*` inspection, the
//! per-request faults (status, delays, resets, stalls, garbage, close,
//! hang-up, interim responses, idle close) and token pacing (see
//! [`super::pacing`]).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, sleep_until, Instant};

use super::api::{self, Body, Reply};
use super::http::{self, HeadSeen, ReadError, Request};
use super::pacing::Pacing;
use super::{Record, State};

/// How long `x-mock-stall-after` holds a connection open at most.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);
/// Pause before a mid-stream reset, so the events before it get read.
const RESET_PAUSE: Duration = Duration::from_millis(50);
/// Bytes of a pipelined next request buffered while a response is sent.
const MAX_PIPELINE: usize = 1024 * 1024;

/// What `x-mock-garbage` sends: not an HTTP response.
pub const GARBAGE: &[u8] = b"\x00\x01\x02 THIS IS NOT HTTP \xff\xfe\r\n\r\n";

/// Binds a listening socket (SO_REUSEADDR, backlog 1024).
pub fn bind(addr: &str) -> io::Result<std::net::TcpListener> {
    let sa: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(sa),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&sa.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Serves `listener` forever on `threads` single-threaded runtimes that
/// share the state.
pub fn run(state: Arc<State>, listener: std::net::TcpListener, threads: usize) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut handles = Vec::new();
    for _ in 1..threads.max(1) {
        let l = listener.try_clone()?;
        let st = state.clone();
        handles.push(std::thread::spawn(move || serve_on(st, l)));
    }
    let r = serve_on(state, listener);
    for h in handles {
        let _ = h.join();
    }
    r
}

fn serve_on(state: Arc<State>, listener: std::net::TcpListener) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(handle_conn(state.clone(), s));
                }
                Err(_) => sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

/// Counts a connection as open while alive; `uncount` takes it out of the
/// counters (for connections used for `/_mock/*`).
struct ConnGuard {
    state: Arc<State>,
    counted: bool,
}

impl ConnGuard {
    fn new(state: Arc<State>) -> ConnGuard {
        state.connections_open.fetch_add(1, Ordering::SeqCst);
        state.connections_total.fetch_add(1, Ordering::SeqCst);
        ConnGuard {
            state,
            counted: true,
        }
    }

    fn uncount(&mut self) {
        if self.counted {
            self.counted = false;
            self.state.connections_open.fetch_sub(1, Ordering::SeqCst);
            self.state.connections_total.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.counted {
            self.state.connections_open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Per-request faults taken from `x-mock-*` headers.
#[derive(Debug, Default, Clone)]
pub struct Fault {
    pub status: Option<u16>,
    pub delay_ms: u64,
    pub first_byte_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    /// Token pacing overrides (`x-mock-ttft-ms`, `x-mock-itl-ms`).
    pub ttft_ms: Option<u64>,
    pub itl_ms: Option<u64>,
    pub reset_after: Option<usize>,
    pub stall_after: Option<usize>,
    pub close: bool,
    pub garbage: bool,
    /// `x-mock-hang-up`: read the whole request, then close the connection
    /// (FIN) without sending a byte.
    pub hang_up: bool,
    /// `x-mock-interim: 100,103`: interim heads sent in the same write as,
    /// and just before, the final head.
    pub interim: Vec<u16>,
    /// `x-mock-continue-every-ms: N`: `100 Continue` every N ms and never a
    /// final response (until the peer leaves, [`STALL_LIMIT`] at most).
    pub continue_every_ms: Option<u64>,
    /// `x-mock-idle-close-ms: N`: answer with keep-alive framing, then close
    /// the connection (FIN) if no next request starts within N ms.
    pub idle_close_ms: Option<u64>,
    /// `x-mock-endless-event: N`: a stream whose first event never ends:
    /// `data: aaaa…` for N bytes with no blank line, then close.
    pub endless_event: Option<u64>,
    /// `x-mock-transfer-coding: gzip`: a stream's Transfer-Encoding says
    /// `gzip, chunked` (the payload is left as it is).
    pub transfer_coding: Option<String>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

impl Fault {
    /// The faults that apply to this server (`x-mock-fault-target` may name
    /// one or more comma-separated servers; without it they always apply).
    pub fn of(req: &Request, name: &str) -> Fault {
        if let Some(t) = req.header("x-mock-fault-target") {
            if !t.split(',').any(|x| x.trim() == name) {
                return Fault::default();
            }
        }
        Fault {
            status: req
                .header_u64("x-mock-status")
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=999).contains(s)),
            delay_ms: req.header_u64("x-mock-delay-ms").unwrap_or(0),
            first_byte_ms: req.header_u64("x-mock-first-byte-ms"),
            chunk_delay_ms: req.header_u64("x-mock-chunk-delay-ms"),
            ttft_ms: req.header_u64("x-mock-ttft-ms"),
            itl_ms: req.header_u64("x-mock-itl-ms"),
            reset_after: req.header_u64("x-mock-reset-after").map(|k| k as usize),
            stall_after: req.header_u64("x-mock-stall-after").map(|k| k as usize),
            close: truthy(req.header("x-mock-close")),
            garbage: truthy(req.header("x-mock-garbage")),
            hang_up: truthy(req.header("x-mock-hang-up")),
            interim: req
                .header("x-mock-interim")
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .filter(|s| (100..200).contains(s) && *s != 101)
                .collect(),
            continue_every_ms: req
                .header_u64("x-mock-continue-every-ms")
                .filter(|ms| *ms > 0),
            idle_close_ms: req.header_u64("x-mock-idle-close-ms"),
            endless_event: req.header_u64("x-mock-endless-event"),
            transfer_coding: req
                .header("x-mock-transfer-coding")
                .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .map(str::to_string),
        }
    }

    /// The interim heads to send before the final head.
    fn interim_heads(&self) -> Vec<u8> {
        self.interim
            .iter()
            .flat_map(|s| http::interim_head(*s))
            .collect()
    }

    /// The timings for this response: the per-request pacing overrides,
    /// else the server's `--ttft-ms` / `--itl-ms`.
    pub fn pacing(&self, state: &State) -> Pacing {
        Pacing {
            ttft_ms: self.ttft_ms.unwrap_or(state.cfg.ttft_ms),
            itl_ms: self.itl_ms.unwrap_or(state.cfg.itl_ms),
            first_byte_ms: self.first_byte_ms.unwrap_or(0),
            chunk_delay_ms: self.chunk_delay_ms.unwrap_or(state.cfg.chunk_delay_ms),
        }
    }
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent whole; the connection may serve another request.
    Done,
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST).
    Reset,
}

async fn handle_conn(state: Arc<State>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut guard = ConnGuard::new(state.clone());
    let conn = state.next_conn();
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    // Set by `x-mock-idle-close-ms` on the last response.
    let mut idle_close: Option<Duration> = None;
    loop {
        if let Some(d) = idle_close.take().filter(|_| buf.is_empty()) {
            if tokio::time::timeout(d, stream.readable()).await.is_err() {
                let _ = stream.shutdown().await;
                return;
            }
        }
        // The request id and head length of a request whose head was read.
        let mut seen: Option<(Option<String>, usize)> = None;
        let on_head = |h: &HeadSeen<'_>| {
            if !h.target.starts_with("/_mock") {
                let rid = h.header("x-request-id");
                let length = h
                    .header("content-length")
                    .and_then(|v| v.trim().parse().ok());
                state.event("head", conn, rid, length);
                seen = Some((rid.map(str::to_string), h.len));
            }
        };
        let req = match http::read_request_observed(&mut stream, &mut buf, conn, on_head).await {
            Ok(r) => r,
            Err(ReadError::Closed) => {
                if let Some((rid, len)) = seen {
                    let got = buf.len().saturating_sub(len) as u64;
                    state.event("cut", conn, rid.as_deref(), Some(got));
                }
                return;
            }
            Err(e) => {
                let proto = api::Proto::OpenAi;
                let reply = api::error_reply(&state, proto, e.status(), e.message());
                let _ = write_full(&mut stream, &state, reply, true).await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        if super::ws::is_upgrade(&req) {
            state.requests_total.fetch_add(1, Ordering::SeqCst);
            state.record(Record::of(&req));
            super::ws::serve(stream, std::mem::take(&mut buf), &req, &state).await;
            return;
        }
        let is_inspect = req.path == "/_mock" || req.path.starts_with("/_mock/");
        if first && is_inspect {
            guard.uncount();
        }
        first = false;
        let mut close = !req.keep_alive();
        if is_inspect {
            let reply = inspect(&state, &req);
            if write_full(&mut stream, &state, reply, close).await.is_err() || close {
                let _ = stream.shutdown().await;
                return;
            }
            continue;
        }

        state.requests_total.fetch_add(1, Ordering::SeqCst);
        let record = Record::of(&req);
        state.record(record.clone());
        let fault = Fault::of(&req, &state.cfg.name);
        let rid = req.header("x-request-id").map(str::to_string);
        let read_at = Instant::now();
        if fault.hang_up {
            state.event("hung_up", conn, rid.as_deref(), None);
            let _ = stream.shutdown().await;
            return;
        }
        close |= fault.close;
        let proto = api::proto_of(&req.path);
        let reply = if let Some(s) = fault.status.filter(|s| *s >= 400) {
            api::error_reply(
                &state,
                proto,
                s,
                &format!("mock-llm {}: injected status {s}", state.cfg.name),
            )
        } else {
            let mut r = if truthy(req.header("x-mock-echo")) {
                Reply::json(200, &serde_json::to_value(&record).unwrap_or_default())
            } else {
                api::handle(&state, &req)
            };
            if let Some(s) = fault.status {
                r.status = s;
            }
            r
        };

        let outcome = {
            let (mut rd, mut wr) = stream.split();
            let fut = respond(&mut wr, &state, reply, &fault, close);
            tokio::pin!(fut);
            let mut watching = true;
            let mut tmp = [0u8; 8192];
            loop {
                tokio::select! {
                    biased;
                    r = &mut fut => break r.unwrap_or(Outcome::Close),
                    r = rd.read(&mut tmp), if watching => match r {
                        // The peer went away: stop sending and close.
                        Ok(0) | Err(_) => {
                            let ms = read_at.elapsed().as_millis() as u64;
                            state.event("peer_closed", conn, rid.as_deref(), Some(ms));
                            break Outcome::Close;
                        }
                        Ok(n) => {
                            buf.extend_from_slice(&tmp[..n]);
                            watching = buf.len() < MAX_PIPELINE;
                        }
                    },
                }
            }
        };
        match outcome {
            Outcome::Done if !close => {
                idle_close = fault.idle_close_ms.map(Duration::from_millis);
                continue;
            }
            Outcome::Done | Outcome::Close => {
                let _ = stream.shutdown().await;
                return;
            }
            Outcome::Reset => {
                reset(stream);
                return;
            }
        }
    }
}

/// Closes with SO_LINGER 0 so the peer sees a TCP RST.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn extra_headers(state: &State, reply: &Reply) -> Vec<(String, String)> {
    let mut h = reply.headers.clone();
    h.push(("x-mock-name".to_string(), state.cfg.name.clone()));
    h
}

/// Writes a whole (Content-Length) reply at once.
async fn write_full<W: AsyncWrite + Unpin>(
    wr: &mut W,
    state: &State,
    reply: Reply,
    close: bool,
) -> io::Result<()> {
    let extra = extra_headers(state, &reply);
    let body = match reply.body {
        Body::Full(b) => b,
        Body::Stream(parts) => parts.concat(),
    };
    let mut out = http::response_head(
        reply.status,
        reply.content_type,
        Some(body.len()),
        &extra,
        close,
    );
    out.extend_from_slice(&body);
    wr.write_all(&out).await?;
    wr.flush().await
}

/// Sleeps until `t`; no timer at all when `t` has passed (most events of
/// an unpaced response).
async fn wait_until(t: Instant) {
    if t > Instant::now() {
        sleep_until(t).await;
    }
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        sleep(Duration::from_millis(ms)).await;
    }
}

/// Sends `reply` with the faults and timings applied.
async fn respond<W: AsyncWrite + Unpin>(
    wr: &mut W,
    state: &State,
    reply: Reply,
    fault: &Fault,
    close: bool,
) -> io::Result<Outcome> {
    sleep_ms(fault.delay_ms).await;
    if fault.garbage {
        wr.write_all(GARBAGE).await?;
        wr.flush().await?;
        return Ok(Outcome::Close);
    }
    if let Some(ms) = fault.continue_every_ms {
        let end = Instant::now() + STALL_LIMIT;
        while Instant::now() < end {
            wr.write_all(&http::interim_head(100)).await?;
            wr.flush().await?;
            sleep_ms(ms).await;
        }
        return Ok(Outcome::Close);
    }
    // A generation holds one of the server's slots (`--max-concurrency`)
    // while it is paced and sent; beyond that, requests queue.
    let _slot = match (&state.slots, reply.tokens) {
        (Some(slots), Some(_)) => slots.acquire().await.ok(),
        _ => None,
    };
    let start = Instant::now();
    let pacing = fault.pacing(state);
    let extra = extra_headers(state, &reply);
    match reply.body {
        Body::Full(body) => {
            if fault.reset_after == Some(0) {
                return Ok(Outcome::Reset);
            }
            if fault.stall_after == Some(0) {
                sleep(STALL_LIMIT).await;
                return Ok(Outcome::Close);
            }
            wait_until(start + pacing.whole_due(reply.tokens)).await;
            let mut out = fault.interim_heads();
            out.extend_from_slice(&http::response_head(
                reply.status,
                reply.content_type,
                Some(body.len()),
                &extra,
                close,
            ));
            match fault.first_byte_ms.filter(|ms| *ms > 0) {
                Some(ms) if !body.is_empty() => {
                    wr.write_all(&out).await?;
                    wr.flush().await?;
                    sleep_ms(ms).await;
                    wr.write_all(&body).await?;
                }
                _ => {
                    out.extend_from_slice(&body);
                    wr.write_all(&out).await?;
                }
            }
            wr.flush().await?;
            Ok(if close { Outcome::Close } else { Outcome::Done })
        }
        Body::Stream(events) => {
            let mut head = fault.interim_heads();
            let mut stream_head =
                http::response_head(reply.status, reply.content_type, None, &extra, close);
            if let Some(coding) = &fault.transfer_coding {
                let text = String::from_utf8_lossy(&stream_head).replace(
                    "transfer-encoding: chunked",
                    &format!("transfer-encoding: {coding}, chunked"),
                );
                stream_head = text.into_bytes();
            }
            head.extend_from_slice(&stream_head);
            wr.write_all(&head).await?;
            wr.flush().await?;
            if let Some(total) = fault.endless_event {
                wr.write_all(&http::chunk(b"data: ")).await?;
                let block = http::chunk(&[b'a'; 64 * 1024]);
                let mut sent = 0;
                while sent < total {
                    wr.write_all(&block).await?;
                    sent += 64 * 1024;
                }
                wr.flush().await?;
                return Ok(Outcome::Close);
            }
            let n = events.len();
            for (i, ev) in events.iter().enumerate() {
                // Due times from one start, so sleeps do not add up drift.
                wait_until(start + pacing.event_due(reply.tokens, i)).await;
                if fault.reset_after == Some(i) {
                    if i > 0 {
                        sleep(RESET_PAUSE).await;
                    }
                    return Ok(Outcome::Reset);
                }
                if fault.stall_after == Some(i) {
                    sleep(STALL_LIMIT).await;
                    return Ok(Outcome::Close);
                }
                wr.write_all(&http::chunk(ev)).await?;
                wr.flush().await?;
            }
            // A fault at or past the end cuts the body before its last chunk.
            if fault.reset_after.is_some_and(|k| k >= n) {
                sleep(RESET_PAUSE).await;
                return Ok(Outcome::Reset);
            }
            if fault.stall_after.is_some_and(|k| k >= n) {
                sleep(STALL_LIMIT).await;
                return Ok(Outcome::Close);
            }
            wr.write_all(http::LAST_CHUNK).await?;
            wr.flush().await?;
            Ok(if close { Outcome::Close } else { Outcome::Done })
        }
    }
}

/// `/_mock/*`: recorded requests and counters.
fn inspect(state: &State, req: &Request) -> Reply {
    let json_bytes = |status: u16, body: Vec<u8>| Reply {
        status,
        content_type: api::JSON,
        headers: Vec::new(),
        body: Body::Full(body),
        tokens: None,
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_mock/requests") => json_bytes(200, state.records_json()),
        ("DELETE", "/_mock/requests") => {
            state.clear_records();
            json_bytes(200, b"{\"cleared\":true}".to_vec())
        }
        ("GET", "/_mock/stats") => json_bytes(200, state.stats_json()),
        ("GET", "/_mock/events") => json_bytes(200, state.events_json()),
        ("DELETE", "/_mock/events") => {
            state.clear_events();
            json_bytes(200, b"{\"cleared\":true}".to_vec())
        }
        _ => api::error_reply(
            state,
            api::Proto::OpenAi,
            404,
            &format!("mock-llm: no inspection route {} {}", req.method, req.path),
        ),
    }
}
