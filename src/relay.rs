//! Writes answers to the client: upstream responses relayed as they
//! arrive (SSE event by event, never cut mid-event), gateway errors and
//! mock answers, each with `x-request-id` and `x-modelgate-fallback`.

use crate::config::catalog::Protocol;
use crate::config::Service;
use crate::conn::Client;
use crate::error::{Error, Kind};
use crate::http::body::{write_chunk_header, ChunkedDecoder, LAST_CHUNK};
use crate::http::head::{self, Framing};
use crate::http::sse::SseSplitter;
use crate::http::write::{BodyHeader, HeadWriter};
use crate::observe::usage::BodyTail;
use crate::observe::{Record, Usage};
use crate::protocol;
use crate::protocol::openai::is_usage_only_chunk;
use crate::protocol::translate::{self, stream::StreamTranslator, Direction};
use crate::provider::mock::MockAnswer;
use crate::upstream::exchange::Response;
use crate::worker::Worker;
use monoio::buf::IoBufMut;
use std::time::Duration;

/// How the answer to this request is written.
pub struct Reply {
    pub request_id: String,
    pub protocol: Protocol,
    pub fallbacks: usize,
    pub keep_alive: bool,
    pub http10: bool,
    pub head_only: bool,
    pub reshape: Reshape,
    /// The service that answered, told (`x-modelgate-service`) only to the
    /// admin's debug request.
    pub service: Option<String>,
}

/// What the relay does to the upstream's answer before the client sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reshape {
    /// Relayed as it comes, never parsed.
    #[default]
    None,
    /// An OpenAI stream the gateway asked usage of: the usage-only chunk
    /// is dropped (the client did not ask for it).
    HideUsageChunk,
    /// Translated into the client's protocol: whole answers and errors
    /// re-framed, streams event by event. `client_usage`: an OpenAI client
    /// asked for the usage chunk.
    Translate {
        direction: Direction,
        client_usage: bool,
    },
}

impl Reply {
    fn head<'a>(&self, out: &'a mut Vec<u8>, status: u16) -> HeadWriter<'a> {
        let mut h = HeadWriter::response(out, status);
        h.header(b"x-request-id", self.request_id.as_bytes());
        let mut n = itoa::Buffer::new();
        h.header(b"x-modelgate-fallback", n.format(self.fallbacks).as_bytes());
        if let Some(s) = &self.service {
            h.header(b"x-modelgate-service", s.as_bytes());
        }
        if !self.keep_alive {
            h.header(b"connection", b"close");
        } else if self.http10 {
            h.header(b"connection", b"keep-alive");
        }
        h
    }
}

/// A gateway error in the client's protocol shape.
pub async fn error(c: &mut Client, reply: &Reply, e: &Error, rec: &mut Record) -> bool {
    rec.status = e.status();
    rec.error = Some(e.code());
    let body = e.body(reply.protocol, &reply.request_id);
    let mut out = Vec::with_capacity(256 + body.len());
    let mut h = reply.head(&mut out, e.status());
    h.header(b"content-type", b"application/json");
    if e.kind == Kind::RateLimited {
        h.header(b"retry-after", b"60");
    }
    h.body(BodyHeader::Length(body.len() as u64));
    h.finish();
    if !reply.head_only {
        out.extend_from_slice(&body);
    }
    let (res, _) = c.write(out).await;
    res.is_ok() && reply.keep_alive
}

/// An in-process answer of the `mock` provider.
pub async fn mock(c: &mut Client, reply: &Reply, mut answer: MockAnswer, rec: &mut Record) -> bool {
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
pub async fn response(
    w: &Worker,
    c: &mut Client,
    reply: &Reply,
    svc: &Service,
    resp: Response,
    rec: &mut Record,
) -> bool {
    rec.status = resp.head.status;
    let Response {
        mut conn,
        head: rh,
        mut buf,
    } = resp;
    let pool_key = &svc.upstream.as_ref().expect("remote service").pool_key;
    let is_sse = rh
        .header(&buf, "content-type")
        .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
    // Translated answers that are not open-ended streams are read whole.
    if let Reshape::Translate {
        direction,
        client_usage,
    } = reply.reshape
    {
        let open_ended = matches!(rh.framing, Framing::Chunked | Framing::UntilClose);
        if rh.status >= 400 || !is_sse || !open_ended {
            let resp = Response {
                conn,
                head: rh,
                buf,
            };
            let events = is_sse.then_some(client_usage);
            return translated_whole(w, c, reply, svc, resp, direction, events, rec).await;
        }
    }
    // A JSON answer's usage is read from its last bytes.
    let json_answer = rh.status < 300
        && rh
            .header(&buf, "content-type")
            .is_some_and(|v| memchr::memmem::find(v, b"json").is_some());
    let mut reply_keep_alive = reply.keep_alive;
    let framing_out = match rh.framing {
        Framing::None => BodyHeader::Omit,
        Framing::Length(n) => BodyHeader::Length(n),
        // An HTTP/1.0 client gets the body delimited by close.
        Framing::Chunked | Framing::UntilClose if reply.http10 => {
            reply_keep_alive = false;
            BodyHeader::Omit
        }
        Framing::Chunked | Framing::UntilClose => BodyHeader::Chunked,
    };
    let reply = &Reply {
        keep_alive: reply_keep_alive,
        ..clone_reply(reply)
    };

    let mut out = Vec::with_capacity(1024 + buf.len());
    let mut h = reply.head(&mut out, rh.status);
    for hp in &rh.headers {
        let name = &buf[hp.name.clone()];
        if copied(name) && !head::connection_lists(&buf, &rh.headers, name) {
            h.header(name, &buf[hp.value.clone()]);
        }
    }
    h.body(framing_out);
    h.finish();
    buf.drain(..rh.head_len);

    match rh.framing {
        Framing::None => {
            let (res, _) = c.write(out).await;
            if rh.keep_alive && buf.is_empty() {
                w.pool.put(pool_key, conn);
            }
            res.is_ok() && reply.keep_alive
        }
        Framing::Length(n) => {
            let mut tail = json_answer.then(BodyTail::default);
            let mut left = n;
            let take = (left as usize).min(buf.len());
            out.extend_from_slice(&buf[..take]);
            if take > 0 {
                tail.iter_mut().for_each(|t| t.push(&buf[..take]));
                rec.relayed(&buf[..take]);
                rec.first_packet();
            }
            left -= take as u64;
            let extra = buf.len() > take;
            let (res, _) = c.write(out).await;
            if res.is_err() {
                rec.error = Some("client_closed");
                return false;
            }
            while left > 0 {
                buf.clear();
                let n = match read(&mut conn, buf, svc.timeout).await {
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
            if rh.keep_alive && !extra {
                w.pool.put(pool_key, conn);
            }
            if let Some(t) = tail {
                rec.usage = t.usage();
            }
            reply.keep_alive
        }
        Framing::Chunked | Framing::UntilClose => {
            let mut stream = Stream {
                decoder: (rh.framing == Framing::Chunked).then(|| ChunkedDecoder::new(u64::MAX)),
                events: is_sse.then(SseSplitter::default),
                map: EventMap::new(reply.reshape),
                chunked_out: !reply.http10,
                payload: Vec::with_capacity(16 * 1024),
                usage: Usage::default(),
                tail: (json_answer && !is_sse).then(BodyTail::default),
            };
            let outcome = stream.relay(c, &mut conn, buf, out, svc.timeout, rec).await;
            rec.usage = match &stream.tail {
                Some(t) => t.usage(),
                None => stream.usage,
            };
            match outcome {
                Outcome::Done { reusable } => {
                    if reusable && rh.keep_alive && rh.framing == Framing::Chunked {
                        w.pool.put(pool_key, conn);
                    }
                    reply.keep_alive
                }
                Outcome::ClientGone => {
                    rec.error = Some("client_closed");
                    false
                }
                Outcome::UpstreamFailed(e) if is_sse && !reply.http10 => {
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
    }
}

fn clone_reply(r: &Reply) -> Reply {
    Reply {
        request_id: r.request_id.clone(),
        protocol: r.protocol,
        fallbacks: r.fallbacks,
        keep_alive: r.keep_alive,
        http10: r.http10,
        head_only: r.head_only,
        reshape: r.reshape,
        service: r.service.clone(),
    }
}

/// Largest upstream answer read whole for translation.
const MAX_TRANSLATED_BODY: u64 = 16 * 1024 * 1024;

/// A whole answer or error translated into the client's protocol: read
/// whole, translated, re-framed with its new length. `events`: the body is
/// a complete SSE stream (sent with a length), translated event by event;
/// the flag says whether an OpenAI client asked for the usage chunk.
#[allow(clippy::too_many_arguments)]
async fn translated_whole(
    w: &Worker,
    c: &mut Client,
    reply: &Reply,
    svc: &Service,
    resp: Response,
    direction: Direction,
    events: Option<bool>,
    rec: &mut Record,
) -> bool {
    let Response {
        mut conn,
        head: rh,
        mut buf,
    } = resp;
    let pool_key = &svc.upstream.as_ref().expect("remote service").pool_key;
    if rh
        .header(&buf, "content-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"identity"))
    {
        let e = Error::new(
            Kind::UpstreamProtocol,
            format!(
                "service {} sent an encoded answer that cannot be translated",
                svc.name
            ),
        );
        return error(c, reply, &e, rec).await;
    }
    // `buf` keeps the head (header ranges point into it).
    let initial = buf.split_off(rh.head_len);
    let body = match read_whole(&mut conn, initial, rh.framing, svc.timeout).await {
        Ok((body, reusable)) => {
            if reusable && rh.keep_alive && rh.framing != Framing::UntilClose {
                w.pool.put(pool_key, conn);
            }
            body
        }
        Err(e) => return error(c, reply, &e, rec).await,
    };
    // Usage as the upstream reported it, before translation.
    if rh.status < 300 {
        match events {
            Some(_) => SseSplitter::new().push(&body, |e| rec.usage.scan_event(e)),
            None => rec.usage.scan_json(&body),
        }
    }
    let (status, body) = if rh.status >= 400 {
        translate::response::error(direction, rh.status, &body)
    } else if let Some(client_usage) = events {
        let mut map = EventMap::new(Reshape::Translate {
            direction,
            client_usage,
        });
        let mut splitter = SseSplitter::new();
        let mut out = Vec::with_capacity(body.len() + 256);
        splitter.push(&body, |e| map.event(e, &mut out));
        map.end(splitter.pending(), &mut out);
        (rh.status, out)
    } else {
        match translate::response::translate(direction, &body) {
            Ok(b) => (rh.status, b),
            Err(e) => {
                tracing::warn!(service = %svc.name, "{e}");
                return error(c, reply, &e, rec).await;
            }
        }
    };

    let mut out = Vec::with_capacity(1024 + body.len());
    let mut h = reply.head(&mut out, status);
    for hp in &rh.headers {
        let name = &buf[hp.name.clone()];
        if copied(name)
            && !name.eq_ignore_ascii_case(b"content-type")
            && !head::connection_lists(&buf, &rh.headers, name)
        {
            h.header(name, &buf[hp.value.clone()]);
        }
    }
    let content_type: &[u8] = if events.is_some() && rh.status < 400 {
        b"text/event-stream"
    } else {
        b"application/json"
    };
    h.header(b"content-type", content_type);
    h.body(BodyHeader::Length(body.len() as u64));
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

/// Reads a whole upstream body (bounded). Returns it and whether the
/// connection ended exactly at its end (reusable).
async fn read_whole(
    conn: &mut crate::upstream::Conn,
    initial: Vec<u8>,
    framing: Framing,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), Error> {
    let too_large = || {
        Error::new(
            Kind::UpstreamProtocol,
            "the service's answer is too large to translate",
        )
    };
    let cut = |why: String| Error::new(Kind::UpstreamProtocol, why);
    match framing {
        Framing::None => Ok((Vec::new(), initial.is_empty())),
        Framing::Length(n) => {
            if n > MAX_TRANSLATED_BODY {
                return Err(too_large());
            }
            let mut body = initial;
            while (body.len() as u64) < n {
                match read(conn, body, timeout).await {
                    (Ok(k), b) if k > 0 => body = b,
                    (Ok(_), _) => return Err(cut("the service's answer was cut short".into())),
                    (Err(e), _) => return Err(cut(format!("reading the service's answer: {e}"))),
                }
            }
            let exact = body.len() as u64 == n;
            body.truncate(n as usize);
            Ok((body, exact))
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::new(MAX_TRANSLATED_BODY);
            let mut body = Vec::new();
            let mut raw = initial;
            loop {
                let p = decoder
                    .decode(&raw, |s| body.extend_from_slice(s))
                    .map_err(|e| cut(format!("bad chunked framing: {e:?}")))?;
                if p.done {
                    return Ok((body, p.consumed == raw.len()));
                }
                raw.clear();
                match read(conn, raw, timeout).await {
                    (Ok(k), b) if k > 0 => raw = b,
                    (Ok(_), _) => return Err(cut("the service's answer was cut short".into())),
                    (Err(e), _) => return Err(cut(format!("reading the service's answer: {e}"))),
                }
            }
        }
        Framing::UntilClose => {
            let mut body = initial;
            loop {
                if body.len() as u64 > MAX_TRANSLATED_BODY {
                    return Err(too_large());
                }
                match read(conn, body, timeout).await {
                    (Ok(0), b) => return Ok((b, false)),
                    (Ok(_), b) => body = b,
                    (Err(e), _) => return Err(cut(format!("reading the service's answer: {e}"))),
                }
            }
        }
    }
}

async fn read(
    conn: &mut crate::upstream::Conn,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> (std::io::Result<usize>, Vec<u8>) {
    if buf.capacity() < 16 * 1024 {
        buf.reserve(16 * 1024);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    match monoio::time::timeout(timeout, conn.read(buf.slice_mut(len..cap))).await {
        Ok((res, slice)) => (res, slice.into_inner()),
        Err(_) => (
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "upstream stalled",
            )),
            Vec::new(),
        ),
    }
}

enum Outcome {
    Done { reusable: bool },
    ClientGone,
    UpstreamFailed(Error),
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
    decoder: Option<ChunkedDecoder>,
    events: Option<SseSplitter>,
    map: EventMap,
    chunked_out: bool,
    payload: Vec<u8>,
    /// Usage seen in the upstream's events so far (before `map`).
    usage: Usage,
    /// A chunked JSON answer's last bytes, for its usage.
    tail: Option<BodyTail>,
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
        timeout: Duration,
        rec: &mut Record,
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
            self.emit(&mut out, done, rec);
            if done {
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
            if done {
                return Outcome::Done {
                    reusable: leftover == 0,
                };
            }
            raw.clear();
            let Some(next) = c.unless_gone(read(conn, raw, timeout)).await else {
                return Outcome::ClientGone;
            };
            match next {
                (Ok(0), _) if self.decoder.is_none() => {
                    // Close-delimited body: the close is its end.
                    if let Some(events) = &self.events {
                        let mut last = Vec::new();
                        self.usage.scan_event(events.pending());
                        self.map.end(events.pending(), &mut last);
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
    /// reading each upstream event's usage before it is mapped.
    fn emit(&mut self, out: &mut Vec<u8>, done: bool, rec: &mut Record) {
        let payload = std::mem::take(&mut self.payload);
        match &mut self.events {
            Some(events) => {
                let mut whole = Vec::new();
                let map = &mut self.map;
                let usage = &mut self.usage;
                events.push(&payload, |e| {
                    usage.scan_event(e);
                    map.event(e, &mut whole)
                });
                if done {
                    usage.scan_event(events.pending());
                    map.end(events.pending(), &mut whole);
                }
                self.put(out, &whole, rec);
            }
            None => {
                if let Some(t) = &mut self.tail {
                    t.push(&payload);
                }
                self.put(out, &payload, rec)
            }
        }
        self.payload = payload;
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
        // The head may still be unsent when the very first read failed.
        if !head_sent && !out.is_empty() {
            let (res, _) = c.write(out).await;
            if res.is_err() {
                return Outcome::ClientGone;
            }
        }
        Outcome::UpstreamFailed(Error::new(Kind::UpstreamProtocol, why))
    }
}
