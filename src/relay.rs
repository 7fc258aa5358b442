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
}

impl Reply {
    fn head<'a>(&self, out: &'a mut Vec<u8>, status: u16) -> HeadWriter<'a> {
        let mut h = HeadWriter::response(out, status);
        h.header(b"x-request-id", self.request_id.as_bytes());
        let mut n = itoa::Buffer::new();
        h.header(b"x-modelgate-fallback", n.format(self.fallbacks).as_bytes());
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
pub async fn mock(c: &mut Client, reply: &Reply, answer: MockAnswer, rec: &mut Record) -> bool {
    rec.status = answer.status;
    if answer.events.is_empty() {
        rec.usage.scan_json(&answer.body);
        rec.relayed(&answer.body);
    }
    for event in &answer.events {
        rec.usage.scan_event(event);
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
        || name.eq_ignore_ascii_case(b"x-modelgate-fallback"))
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
                    // with one error event in its protocol.
                    tracing::warn!(service = %svc.name, "stream failed: {e}");
                    let event = protocol::stream_error_event(reply.protocol, &e);
                    let mut out = Vec::with_capacity(event.len() + 16);
                    write_chunk_header(event.len(), &mut out);
                    out.extend_from_slice(&event);
                    out.extend_from_slice(b"\r\n");
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

/// A chunked or close-delimited body relayed piece by piece.
struct Stream {
    decoder: Option<ChunkedDecoder>,
    events: Option<SseSplitter>,
    chunked_out: bool,
    payload: Vec<u8>,
    /// Usage seen in the events so far.
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
            match read(conn, raw, timeout).await {
                (Ok(0), _) if self.decoder.is_none() => {
                    // Close-delimited body: the close is its end.
                    if let Some(pending) = self.events.as_ref().map(|e| e.pending().to_vec()) {
                        self.usage.scan_event(&pending);
                        self.put(&mut out, &pending, rec);
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
    /// reading each event's usage on the way.
    fn emit(&mut self, out: &mut Vec<u8>, done: bool, rec: &mut Record) {
        let payload = std::mem::take(&mut self.payload);
        match &mut self.events {
            Some(events) => {
                let mut whole = Vec::new();
                let usage = &mut self.usage;
                events.push(&payload, |e| {
                    usage.scan_event(e);
                    whole.extend_from_slice(e)
                });
                if done {
                    usage.scan_event(events.pending());
                    whole.extend_from_slice(events.pending());
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
