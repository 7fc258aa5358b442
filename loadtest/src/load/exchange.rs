//! One request on a connection, measured: send it, read the head, read the
//! body; for a stream, note when each content event arrived and read the
//! usage numbers; for a whole answer, read its usage.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::http::{Conn, ReadError};
use super::sse::{self, SseParser};
use super::stats::ErrorKind;
use super::workload::Api;

/// Bytes of a non-streamed body kept for its usage numbers; past this the
/// usage is not read.
const MAX_KEPT_BODY: usize = 8 * 1024 * 1024;
/// Bytes of an error answer quoted in messages.
const DETAIL_BYTES: usize = 300;

/// Buffers reused from request to request (one set per in-flight slot).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Gaps between content events of the current stream.
    pub gaps: Vec<Duration>,
    sse: SseParser,
    body: Vec<u8>,
}

/// A successful answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// When its last byte arrived.
    pub done_at: Instant,
    pub first_content: Option<Instant>,
    pub last_content: Option<Instant>,
    pub content_events: u64,
    /// Usage numbers, when the answer reported them.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The connection can carry another request.
    pub keep_alive: bool,
}

/// A failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: ErrorKind,
    /// A short description (the start of an error body, say).
    pub detail: String,
    /// The connection can carry another request.
    pub conn_ok: bool,
    /// Nothing of an answer came: a reused connection the server had
    /// closed, worth one retry on a fresh one.
    pub before_response: bool,
    /// The run cannot measure anything useful (a stream that is not SSE).
    pub fatal: bool,
}

impl Failure {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
            conn_ok: false,
            before_response: false,
            fatal: false,
        }
    }

    fn from_read(e: ReadError, head_seen: bool) -> Failure {
        match e {
            ReadError::Closed { partial } => {
                let mut f = Failure::new(
                    ErrorKind::Io,
                    if partial || head_seen {
                        "connection closed in the middle of the answer"
                    } else {
                        "connection closed before the answer"
                    },
                );
                f.before_response = !partial && !head_seen;
                f
            }
            ReadError::Io(e) => {
                let mut f = Failure::new(ErrorKind::Io, e.to_string());
                f.before_response = !head_seen;
                f
            }
            ReadError::Malformed(m) => Failure::new(ErrorKind::Http, m),
        }
    }
}

fn quote(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(DETAIL_BYTES)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sends `req` on `conn` and reads the whole answer.
pub async fn exchange(
    conn: &mut Conn,
    req: Rc<Vec<u8>>,
    api: Api,
    stream: bool,
    s: &mut Scratch,
) -> Result<Answer, Failure> {
    if let Err(e) = conn.send(req).await {
        let mut f = Failure::new(ErrorKind::Io, e.to_string());
        f.before_response = true;
        return Err(f);
    }
    let head = conn
        .read_head()
        .await
        .map_err(|e| Failure::from_read(e, false))?;
    let mut a = Answer {
        done_at: conn.read_at,
        first_content: None,
        last_content: None,
        content_events: 0,
        input_tokens: None,
        output_tokens: None,
        keep_alive: head.keep_alive,
    };
    s.gaps.clear();
    s.body.clear();

    let is_stream = stream && (200..300).contains(&head.status) && head.sse;
    if !is_stream {
        let body = &mut s.body;
        conn.read_body(head.framing, &mut |piece, _| {
            if body.len() + piece.len() <= MAX_KEPT_BODY {
                body.extend_from_slice(piece);
            }
        })
        .await
        .map_err(|e| Failure::from_read(e, true))?;
        a.done_at = conn.read_at;
        if !(200..300).contains(&head.status) {
            let mut f = Failure::new(ErrorKind::Status(head.status), quote(&s.body));
            f.conn_ok = head.keep_alive;
            return Err(f);
        }
        if stream {
            let mut f = Failure::new(
                ErrorKind::NotSse,
                format!(
                    "a streaming request was answered with content-type {:?}, not \
                     text/event-stream: {}",
                    head.content_type,
                    quote(&s.body)
                ),
            );
            f.conn_ok = head.keep_alive;
            f.fatal = true;
            return Err(f);
        }
        let (i, o) = sse::body_usage(&s.body);
        a.input_tokens = i;
        a.output_tokens = o;
        return Ok(a);
    }

    // A stream: each content event is a token (or a few) arriving.
    let dialect = api.dialect();
    let mut error: Option<String> = None;
    s.sse.reset();
    {
        let Scratch { gaps, sse, .. } = s;
        let a = &mut a;
        let error = &mut error;
        conn.read_body(head.framing, &mut |piece, at| {
            sse.feed(piece, &mut |event, data| {
                let info = sse::classify(dialect, event, data);
                if info.content {
                    if let Some(last) = a.last_content {
                        gaps.push(at.saturating_duration_since(last));
                    } else {
                        a.first_content = Some(at);
                    }
                    a.last_content = Some(at);
                    a.content_events += 1;
                }
                if info.input_tokens.is_some() {
                    a.input_tokens = info.input_tokens;
                }
                if info.output_tokens.is_some() {
                    a.output_tokens = info.output_tokens;
                }
                if info.error && error.is_none() {
                    *error = Some(quote(data));
                }
            });
        })
        .await
        .map_err(|e| Failure::from_read(e, true))?;
    }
    a.done_at = conn.read_at;
    if let Some(detail) = error {
        let mut f = Failure::new(ErrorKind::StreamError, detail);
        f.conn_ok = head.keep_alive;
        return Err(f);
    }
    Ok(a)
}
