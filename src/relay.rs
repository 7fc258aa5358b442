//! Writes answers to the client: upstream responses relayed as they
//! arrive (SSE event by event, never cut mid-event), gateway errors and
//! mock answers, each with `x-request-id` and `x-modelgate-fallback`.

use crate::client::Client;
use crate::config::catalog::Protocol;
use crate::error::{Error, Kind};
use crate::http::body::{write_chunk_header, ChunkedDecoder, LAST_CHUNK};
use crate::http::head::{self, Framing};
use crate::http::sse::SseSplitter;
use crate::http::write::BodyHeader;
use crate::observe::usage::BodyTail;
use crate::observe::{Record, Usage};
use crate::protocol;
use crate::protocol::openai::is_usage_only_chunk;
use crate::protocol::translate::{self, stream::StreamTranslator, Direction};
use crate::provider::mock::MockAnswer;
use crate::request::{write_error, Request, Reshape};
use crate::snapshot::Service;
use crate::upstream::exchange::Response;
use crate::upstream::whole::read_whole;
use crate::upstream::Lease;
use crate::watch::Watch;
use std::time::Duration;

/// An in-process answer of the `mock` provider.
pub async fn mock(rq: &mut Request<'_>, mut answer: MockAnswer) -> bool {
    let (c, reply, rec, watch) = (&mut *rq.c, &rq.reply, &mut rq.rec, &mut rq.watch);
    rec.status = answer.status;
    // Usage is read before the hidden usage chunk is dropped.
    if answer.events.is_empty() {
        rec.usage.scan_json(&answer.body);
    }
    for event in &answer.events {
        rec.usage.scan_event(event);
    }
    if reply.reshape == Reshape::HideUsageChunk {
        answer.events.retain(|e| !is_usage_only_chunk(e));
    }
    // Moderation sees what the client would get.
    if answer.events.is_empty() {
        if !watch.allows_whole(&answer.body) {
            return write_error(c, reply, &watch.blocked_error(), rec).await;
        }
    } else if let Some(cut) = answer.events.iter().position(|e| !watch.allows_event(e)) {
        let e = watch.blocked_error();
        rec.error = Some(e.code());
        answer.events.truncate(cut);
        answer
            .events
            .push(protocol::stream_error_event(reply.protocol, &e));
    }
    rec.relayed(&answer.body);
    for event in &answer.events {
        rec.relayed(event);
    }
    rec.first_packet();
    let mut out = Vec::with_capacity(
        512 + answer.body.len() + answer.events.iter().map(Vec::len).sum::<usize>(),
    );
    let streamed = !answer.events.is_empty() && !reply.http10;
    let mut h = reply.head(&mut out, answer.status);
    h.header(b"content-type", answer.content_type.as_bytes());
    if answer.events.is_empty() {
        h.body(BodyHeader::Length(answer.body.len() as u64));
    } else if streamed {
        h.header(b"cache-control", b"no-cache");
        h.body(BodyHeader::Chunked);
    } else {
        let len: usize = answer.events.iter().map(Vec::len).sum();
        h.body(BodyHeader::Length(len as u64));
    }
    h.finish();
    if !reply.head_only {
        out.extend_from_slice(&answer.body);
        for event in &answer.events {
            if streamed {
                write_chunk_header(event.len(), &mut out);
            }
            out.extend_from_slice(event);
            if streamed {
                out.extend_from_slice(b"\r\n");
            }
        }
        if streamed {
            out.extend_from_slice(LAST_CHUNK);
        }
    }
    let (res, _) = c.write(out).await;
    res.is_ok() && reply.keep_alive
}

/// Whether an upstream response header is copied to the client.
fn copied(name: &[u8]) -> bool {
    !(head::is_hop_by_hop(name)
        || name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"x-request-id")
        || name.eq_ignore_ascii_case(b"x-modelgate-fallback")
        || name.eq_ignore_ascii_case(b"x-modelgate-service"))
}

/// Relays an upstream response: head, then body as it arrives.
pub async fn response(rq: &mut Request<'_>, svc: &Service, resp: Response<'_>) -> bool {
    rq.rec.status = resp.head.status;
    let rh = &resp.head;
    let content_type = rh.header(&resp.buf, "content-type");
    // Transfer-codings under (or instead of) chunked stay on the body
    // (RFC 9112 §6.1): it is relayed as opaque bytes, and the client is
    // told the codings.
    let codings = transfer_codings(rh, &resp.buf);
    // (Translation needs the bytes; a hidden usage chunk stays in view.)
    let translated = matches!(rq.reply.reshape, Reshape::Translate { .. });
    if codings.is_some() && (rq.reply.http10 || translated) {
        let e = Error::new(
            Kind::UpstreamProtocol,
            format!(
                "service {} sent a transfer-coded answer this request cannot take",
                svc.name
            ),
        );
        return write_error(rq.c, &rq.reply, &e, &mut rq.rec).await;
    }
    let is_sse = codings.is_none()
        && content_type
            .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
    // Translated answers that are not open-ended streams are read whole,
    // and so are JSON answers that response moderation must see whole.
    let translate = match rq.reply.reshape {
        Reshape::Translate {
            direction,
            client_usage,
        } => {
            let open_ended = matches!(rh.framing, Framing::Chunked | Framing::UntilClose);
            (rh.status >= 400 || !is_sse || !open_ended)
                .then_some((direction, is_sse.then_some(client_usage)))
        }
        _ => None,
    };
    let held = !rq.reply.head_only && codings.is_none() && rq.watch.holds_whole(content_type);
    if translate.is_some() || held {
        return whole_answer(rq, svc, resp, translate).await;
    }
    // A JSON answer's usage is read from its last bytes.
    let json_answer = rh.status < 300
        && codings.is_none()
        && content_type.is_some_and(|v| memchr::memmem::find(v, b"json").is_some());
    let framing_out = match rh.framing {
        Framing::None => BodyHeader::Omit,
        Framing::Length(n) => BodyHeader::Length(n),
        // An HTTP/1.0 client gets the body delimited by close.
        Framing::Chunked | Framing::UntilClose if rq.reply.http10 => {
            rq.reply.keep_alive = false;
            BodyHeader::Omit
        }
        Framing::Chunked | Framing::UntilClose => BodyHeader::Chunked,
    };
    let mut out = rq.w.buffer();
    let mut h = rq.reply.head(&mut out, rh.status);
    for hp in &rh.headers {
        let name = &resp.buf[hp.name.clone()];
        if copied(name) && !rh.connection_lists(&resp.buf, name) {
            h.header(name, &resp.buf[hp.value.clone()]);
        }
    }
    match (&codings, framing_out) {
        (Some(te), BodyHeader::Chunked) => {
            h.header(b"transfer-encoding", te);
            h.body(BodyHeader::Omit);
        }
        _ => {
            h.body(framing_out);
        }
    }
    h.finish();
    let Response {
        mut lease,
        head: rh,
        mut buf,
    } = resp;
    buf.drain(..rh.head_len);
    let answer = Answer {
        keep_alive: rh.keep_alive,
        buf,
    };
    match rh.framing {
        Framing::None => {
            let (res, _) = rq.c.write(out).await;
            if answer.keep_alive && answer.buf.is_empty() {
                lease.reusable();
            }
            res.is_ok() && rq.reply.keep_alive
        }
        Framing::Length(n) => {
            let body = LengthBody {
                len: n,
                json_answer,
            };
            relay_length(rq, svc, &mut lease, answer, body, out).await
        }
        Framing::Chunked | Framing::UntilClose => {
            let stream = Stream {
                protocol: rq.reply.protocol,
                decoder: (rh.framing == Framing::Chunked).then(|| ChunkedDecoder::new(u64::MAX)),
                events: is_sse.then(SseSplitter::default),
                map: EventMap::new(rq.reply.reshape),
                chunked_out: !rq.reply.http10,
                payload: Vec::with_capacity(16 * 1024),
                usage: Usage::default(),
                tail: (json_answer && !is_sse).then(BodyTail::default),
                timeout: svc.timeout,
                max_event: rq.snap.edge.max_event_bytes,
            };
            // Boxed: a stream lives long and its relay state is large; a
            // whole answer should not carry it in its future.
            let chunked = rh.framing == Framing::Chunked;
            Box::pin(relay_stream(
                rq, svc, &mut lease, answer, stream, out, chunked,
            ))
            .await
        }
    }
}

/// The Transfer-Encoding to relay an answer with when its body carries
/// codings other than chunked (`gzip, chunked`; or `gzip` alone, which the
/// relay then chunks): `None` for a plain body.
fn transfer_codings(rh: &crate::http::head::ResponseHead, buf: &[u8]) -> Option<Vec<u8>> {
    // Most answers are plain: decided from the framing, no header lookup.
    match rh.framing {
        Framing::Chunked if rh.transfer_coded => {
            Some(rh.header(buf, "transfer-encoding")?.to_vec())
        }
        Framing::UntilClose => Some([rh.header(buf, "transfer-encoding")?, b", chunked"].concat()),
        _ => None,
    }
}

/// An upstream answer's body as it came with the head.
struct Answer {
    /// The service keeps the connection after this answer.
    keep_alive: bool,
    /// Body bytes read with the head.
    buf: Vec<u8>,
}

/// A Content-Length body.
struct LengthBody {
    len: u64,
    /// 2xx JSON: its usage is read.
    json_answer: bool,
}

/// Relays a Content-Length body after the head in `out`.
async fn relay_length(
    rq: &mut Request<'_>,
    svc: &Service,
    lease: &mut Lease<'_>,
    answer: Answer,
    body: LengthBody,
    mut out: Vec<u8>,
) -> bool {
    let (w, c, rec) = (rq.w, &mut *rq.c, &mut rq.rec);
    let Answer {
        keep_alive,
        mut buf,
    } = answer;
    let (n, json_answer) = (body.len, body.json_answer);
    let mut left = n;
    let take = (left as usize).min(buf.len());
    // Usually the whole body came with the head: its usage is read
    // in place, else from the tail kept while relaying.
    let whole = take as u64 == n;
    let usage = (json_answer && whole).then(|| {
        let mut u = Usage::default();
        u.scan_json(&buf[..take]);
        u
    });
    let mut tail = (json_answer && !whole).then(BodyTail::default);
    out.extend_from_slice(&buf[..take]);
    if take > 0 {
        tail.iter_mut().for_each(|t| t.push(&buf[..take]));
        rec.relayed(&buf[..take]);
        rec.first_packet();
    }
    left -= take as u64;
    let extra = buf.len() > take;
    let (res, out) = c.write(out).await;
    w.recycle(out);
    if res.is_err() {
        rec.error = Some("client_closed");
        return false;
    }
    while left > 0 {
        buf.clear();
        let n = match read(lease.conn(), buf, svc.timeout).await {
            (Ok(n), b) if n > 0 && n as u64 <= left => {
                buf = b;
                n
            }
            // The body was cut (or overran): the client can only
            // tell by a close.
            _ => {
                rec.stream_failed(&Error::new(Kind::UpstreamProtocol, "body cut"));
                return false;
            }
        };
        left -= n as u64;
        tail.iter_mut().for_each(|t| t.push(&buf[..n]));
        rec.relayed(&buf[..n]);
        rec.first_packet();
        let (res, b) = c.write(buf).await;
        buf = b;
        if res.is_err() {
            rec.error = Some("client_closed");
            return false;
        }
    }
    if keep_alive && !extra {
        lease.reusable();
    }
    w.recycle(buf);
    if let Some(u) = usage.or_else(|| tail.map(|t| t.usage())) {
        rec.usage = u;
    }
    rq.reply.keep_alive
}

/// Relays a chunked or close-delimited body after the head in `out`.
async fn relay_stream(
    rq: &mut Request<'_>,
    svc: &Service,
    lease: &mut Lease<'_>,
    answer: Answer,
    mut stream: Stream,
    out: Vec<u8>,
    chunked: bool,
) -> bool {
    let (c, reply, rec) = (&mut *rq.c, &rq.reply, &mut rq.rec);
    let outcome = stream
        .relay(c, lease.conn(), answer.buf, out, rec, &mut rq.watch)
        .await;
    rec.usage = match &stream.tail {
        Some(t) => t.usage(),
        None => stream.usage,
    };
    match outcome {
        Outcome::Done { reusable } => {
            if reusable && answer.keep_alive && chunked {
                lease.reusable();
            }
            reply.keep_alive
        }
        Outcome::ClientGone => {
            rec.error = Some("client_closed");
            false
        }
        // Ended with a moderation error event; the upstream
        // connection is dropped, cancelling the rest.
        Outcome::Blocked => reply.keep_alive,
        Outcome::UpstreamFailed(e) if stream.events.is_some() && !reply.http10 => {
            rec.stream_failed(&e);
            // Whole events only reached the client: end the stream
            // with one error event in its protocol (unless a
            // translated stream was already complete).
            tracing::warn!(service = %svc.name, "stream failed: {e}");
            let mut out = Vec::with_capacity(256);
            if !stream.map.client_done() {
                let event = protocol::stream_error_event(reply.protocol, &e);
                write_chunk_header(event.len(), &mut out);
                out.extend_from_slice(&event);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(LAST_CHUNK);
            let (res, _) = c.write(out).await;
            res.is_ok() && reply.keep_alive
        }
        Outcome::UpstreamFailed(e) => {
            rec.stream_failed(&e);
            tracing::warn!(service = %svc.name, "response body failed: {e}");
            false
        }
    }
}

/// Largest upstream answer read whole for translation.
const MAX_TRANSLATED_BODY: usize = 16 * 1024 * 1024;
/// Largest upstream answer held whole for response moderation.
const MAX_HELD_BODY: usize = 32 * 1024 * 1024;

/// An answer read whole before the client gets any of it: translated into
/// the client's protocol (`translate`: the direction, and for a complete
/// SSE body whether an OpenAI client asked for the usage chunk), then
/// seen whole by response moderation (`watch`), and re-framed with its
/// length — or the moderation error in its place.
async fn whole_answer(
    rq: &mut Request<'_>,
    svc: &Service,
    resp: Response<'_>,
    translate: Option<(Direction, Option<bool>)>,
) -> bool {
    let (c, reply, rec, watch) = (&mut *rq.c, &rq.reply, &mut rq.rec, &mut rq.watch);
    if translate.is_some()
        && resp
            .head
            .header(&resp.buf, "content-encoding")
            .is_some_and(|v| !v.eq_ignore_ascii_case(b"identity"))
    {
        let e = Error::new(
            Kind::UpstreamProtocol,
            format!(
                "service {} sent an encoded answer that cannot be translated",
                svc.name
            ),
        );
        return write_error(c, reply, &e, rec).await;
    }
    let cap = match translate {
        Some(_) => MAX_TRANSLATED_BODY,
        None => MAX_HELD_BODY,
    };
    let answer = match read_whole(resp, &svc.name, svc.timeout, cap).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(service = %svc.name, "response body failed: {e}");
            return write_error(c, reply, &e, rec).await;
        }
    };
    let (rh, buf, body) = (&answer.head, &answer.head_bytes, answer.body);
    let events = translate.and_then(|(_, events)| events);
    // Usage as the upstream reported it, before translation.
    if rh.status < 300 {
        match events {
            Some(_) => SseSplitter::new().push(&body, |e| rec.usage.scan_event(e)),
            None => rec.usage.scan_json(&body),
        }
    }
    let (status, body) = match translate {
        None => (rh.status, body),
        Some((direction, _)) if rh.status >= 400 => {
            translate::response::error(direction, rh.status, &body)
        }
        Some((direction, Some(client_usage))) => {
            let mut map = EventMap::new(Reshape::Translate {
                direction,
                client_usage,
            });
            let mut splitter = SseSplitter::new();
            let mut out = Vec::with_capacity(body.len() + 256);
            splitter.push(&body, |e| map.event(e, &mut out));
            map.end(splitter.pending(), &mut out);
            (rh.status, out)
        }
        Some((direction, None)) => match translate::response::translate(direction, &body) {
            Ok(b) => (rh.status, b),
            Err(e) => {
                tracing::warn!(service = %svc.name, "{e}");
                return write_error(c, reply, &e, rec).await;
            }
        },
    };
    // Moderation sees what the client would get.
    let allowed = match events {
        Some(_) => watch.allows_event(&body),
        None => watch.allows_whole(&body),
    };
    if !allowed {
        return write_error(c, reply, &watch.blocked_error(), rec).await;
    }

    let translated = translate.is_some();
    let mut out = Vec::with_capacity(1024 + body.len());
    let mut h = reply.head(&mut out, status);
    for hp in &rh.headers {
        let name = &buf[hp.name.clone()];
        if copied(name)
            && !(translated && name.eq_ignore_ascii_case(b"content-type"))
            && !rh.connection_lists(buf, name)
        {
            h.header(name, &buf[hp.value.clone()]);
        }
    }
    if translated {
        let content_type: &[u8] = if events.is_some() && rh.status < 400 {
            b"text/event-stream"
        } else {
            b"application/json"
        };
        h.header(b"content-type", content_type);
    }
    h.body(if rh.framing == Framing::None && !translated {
        BodyHeader::Omit
    } else {
        BodyHeader::Length(body.len() as u64)
    });
    h.finish();
    rec.status = status;
    if !reply.head_only {
        out.extend_from_slice(&body);
        rec.relayed(&body);
        rec.first_packet();
    }
    let (res, _) = c.write(out).await;
    if res.is_err() {
        rec.error = Some("client_closed");
    }
    res.is_ok() && reply.keep_alive
}

async fn read(
    conn: &mut crate::upstream::Conn,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> (std::io::Result<usize>, Vec<u8>) {
    let res = conn
        .read_append(&mut buf, timeout)
        .await
        .map_err(Into::into);
    (res, buf)
}

enum Outcome {
    Done {
        reusable: bool,
    },
    /// Response moderation refused an event; the stream ended with an
    /// error event.
    Blocked,
    ClientGone,
    UpstreamFailed(Error),
}

/// What one pass of [`Stream::emit`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emitted {
    Sent,
    /// Moderation refused an event.
    Blocked,
    /// An incomplete event grew past `max_event_bytes`.
    TooLarge,
}

/// What happens to each whole SSE event on its way to the client.
enum EventMap {
    Pass,
    HideUsageChunk,
    Translate(Box<StreamTranslator>),
}

impl EventMap {
    fn new(reshape: Reshape) -> Self {
        match reshape {
            Reshape::None => EventMap::Pass,
            Reshape::HideUsageChunk => EventMap::HideUsageChunk,
            Reshape::Translate {
                direction,
                client_usage,
            } => EventMap::Translate(Box::new(StreamTranslator::new(direction, client_usage))),
        }
    }

    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        match self {
            EventMap::Pass => out.extend_from_slice(event),
            EventMap::HideUsageChunk => {
                if !is_usage_only_chunk(event) {
                    out.extend_from_slice(event)
                }
            }
            EventMap::Translate(t) => t.event(event, out),
        }
    }

    /// The upstream stream ended cleanly; `pending` holds bytes of an event
    /// that never got its blank line.
    fn end(&mut self, pending: &[u8], out: &mut Vec<u8>) {
        match self {
            EventMap::Translate(t) => {
                if !pending.is_empty() {
                    t.event(pending, out);
                }
                t.finish(out);
            }
            _ => out.extend_from_slice(pending),
        }
    }

    /// A translated stream already wrote its last event.
    fn client_done(&self) -> bool {
        matches!(self, EventMap::Translate(t) if t.is_done())
    }
}

/// A chunked or close-delimited body relayed piece by piece.
struct Stream {
    protocol: Protocol,
    decoder: Option<ChunkedDecoder>,
    events: Option<SseSplitter>,
    map: EventMap,
    chunked_out: bool,
    payload: Vec<u8>,
    /// Usage seen in the upstream's events so far (before `map`).
    usage: Usage,
    /// A chunked JSON answer's last bytes, for its usage.
    tail: Option<BodyTail>,
    /// The longest wait for the next upstream bytes.
    timeout: Duration,
    /// The largest event held while it is incomplete.
    max_event: usize,
}

impl Stream {
    /// Relays until the body ends. `raw` holds body bytes already read;
    /// `out` holds the response head not yet written.
    async fn relay(
        &mut self,
        c: &mut Client,
        conn: &mut crate::upstream::Conn,
        mut raw: Vec<u8>,
        mut out: Vec<u8>,
        rec: &mut Record,
        watch: &mut Watch,
    ) -> Outcome {
        let mut head_sent = false;
        loop {
            self.payload.clear();
            let (done, leftover) = match &mut self.decoder {
                Some(d) => {
                    let payload = &mut self.payload;
                    match d.decode(&raw, |s| payload.extend_from_slice(s)) {
                        Ok(p) => (p.done, raw.len() - p.consumed),
                        Err(e) => {
                            return self
                                .fail(c, out, head_sent, format!("bad chunked framing: {e:?}"))
                                .await
                        }
                    }
                }
                None => {
                    self.payload.extend_from_slice(&raw);
                    (false, 0)
                }
            };
            let emitted = self.emit(&mut out, done, rec, watch);
            if emitted == Emitted::TooLarge {
                let why = format!(
                    "an event exceeded server.limits.max_event_bytes ({} bytes)",
                    self.max_event
                );
                // What is in `out` (whole events, maybe the head) goes first.
                return self.fail(c, out, false, why).await;
            }
            let blocked = emitted == Emitted::Blocked;
            if blocked {
                // Whole events only were sent: end with one error event.
                let e = watch.blocked_error();
                rec.error = Some(e.code());
                let event = protocol::stream_error_event(self.protocol, &e);
                self.put(&mut out, &event, rec);
            }
            if done || blocked {
                self.finish(&mut out);
            }
            if !out.is_empty() {
                let (res, b) = c.write(out).await;
                out = b;
                out.clear();
                head_sent = true;
                if res.is_err() {
                    return Outcome::ClientGone;
                }
            }
            if blocked {
                return Outcome::Blocked;
            }
            if done {
                return Outcome::Done {
                    reusable: leftover == 0,
                };
            }
            raw.clear();
            let Some(next) = c.unless_gone(read(conn, raw, self.timeout)).await else {
                return Outcome::ClientGone;
            };
            match next {
                (Ok(0), _) if self.decoder.is_none() => {
                    // Close-delimited body: the close is its end.
                    if let Some(events) = &self.events {
                        let mut last = Vec::new();
                        self.usage.scan_event(events.pending());
                        self.map.end(events.pending(), &mut last);
                        if !watch.allows_event(&last) {
                            let e = watch.blocked_error();
                            rec.error = Some(e.code());
                            last = protocol::stream_error_event(self.protocol, &e);
                        }
                        self.put(&mut out, &last, rec);
                    }
                    self.finish(&mut out);
                    let (res, _) = c.write(out).await;
                    return if res.is_ok() {
                        Outcome::Done { reusable: false }
                    } else {
                        Outcome::ClientGone
                    };
                }
                (Ok(0), _) => {
                    return self
                        .fail(c, out, head_sent, "upstream closed mid-stream".into())
                        .await
                }
                (Ok(_), b) => raw = b,
                (Err(e), _) => return self.fail(c, out, head_sent, format!("upstream: {e}")).await,
            }
        }
    }

    /// Moves complete events (or any payload, for non-SSE bodies) to `out`,
    /// reading each upstream event's usage before it is mapped, and letting
    /// moderation see each mapped event as the client would get it. When
    /// moderation refuses one, it and all after it are held back.
    fn emit(
        &mut self,
        out: &mut Vec<u8>,
        done: bool,
        rec: &mut Record,
        watch: &mut Watch,
    ) -> Emitted {
        let payload = std::mem::take(&mut self.payload);
        let mut allowed = true;
        match &mut self.events {
            Some(events) => {
                let mut whole = Vec::new();
                let map = &mut self.map;
                let usage = &mut self.usage;
                events.push(&payload, |e| {
                    usage.scan_event(e);
                    if allowed {
                        let start = whole.len();
                        map.event(e, &mut whole);
                        allowed = checked(watch, &mut whole, start);
                    }
                });
                if done {
                    usage.scan_event(events.pending());
                    if allowed {
                        let start = whole.len();
                        map.end(events.pending(), &mut whole);
                        allowed = checked(watch, &mut whole, start);
                    }
                }
                let too_large = events.pending().len() > self.max_event;
                self.put(out, &whole, rec);
                if too_large {
                    self.payload = payload;
                    return Emitted::TooLarge;
                }
            }
            None => {
                if let Some(t) = &mut self.tail {
                    t.push(&payload);
                }
                self.put(out, &payload, rec)
            }
        }
        self.payload = payload;
        if allowed {
            Emitted::Sent
        } else {
            Emitted::Blocked
        }
    }

    fn put(&self, out: &mut Vec<u8>, data: &[u8], rec: &mut Record) {
        if data.is_empty() {
            return;
        }
        rec.first_packet();
        rec.relayed(data);
        if self.chunked_out {
            write_chunk_header(data.len(), out);
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    fn finish(&self, out: &mut Vec<u8>) {
        if self.chunked_out {
            out.extend_from_slice(LAST_CHUNK);
        }
    }

    async fn fail(
        &mut self,
        c: &mut Client,
        out: Vec<u8>,
        head_sent: bool,
        why: String,
    ) -> Outcome {
        // The head may still be unsent when the very first read failed;
        // `unsent`: `out` holds bytes the client has not had yet.
        if !head_sent && !out.is_empty() {
            let (res, _) = c.write(out).await;
            if res.is_err() {
                return Outcome::ClientGone;
            }
        }
        Outcome::UpstreamFailed(Error::new(Kind::UpstreamProtocol, why))
    }
}

/// Whether moderation allows what was mapped into `out` from `start` (whole
/// events); if not, it is taken back out.
fn checked(watch: &mut Watch, out: &mut Vec<u8>, start: usize) -> bool {
    if watch.allows_event(&out[start..]) {
        return true;
    }
    out.truncate(start);
    false
}
