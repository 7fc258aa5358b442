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
use crate::protocol;
use crate::provider::mock::MockAnswer;
use crate::upstream::exchange::Response;
use crate::watch::Watch;
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
pub async fn error(c: &mut Client, reply: &Reply, e: &Error) -> bool {
    let body = e.body(reply.protocol, &reply.request_id);
    let mut out = Vec::with_capacity(256 + body.len());
    let mut h = reply.head(&mut out, e.status());
    h.header(b"content-type", b"application/json");
    if e.kind == Kind::RateLimited {
        let mut n = itoa::Buffer::new();
        h.header(
            b"retry-after",
            n.format(e.retry_after.unwrap_or(60)).as_bytes(),
        );
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
pub async fn mock(
    c: &mut Client,
    reply: &Reply,
    mut answer: MockAnswer,
    watch: &mut Watch,
) -> bool {
    if answer.events.is_empty() {
        watch.usage_whole(&answer.body);
        if !watch.allows_whole(&answer.body) {
            return error(c, reply, &watch.blocked_error()).await;
        }
    } else if let Some(cut) = answer.events.iter().position(|e| {
        watch.usage_event(e);
        !watch.allows_event(e)
    }) {
        answer.events.truncate(cut);
        answer.events.push(protocol::stream_error_event(
            reply.protocol,
            &watch.blocked_error(),
        ));
    }
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
    watch: &mut Watch,
) -> bool {
    let content_type = resp.head.header(&resp.buf, "content-type");
    if watch.holds_whole(content_type) && !reply.head_only {
        return held(w, c, reply, svc, resp, watch).await;
    }
    let Response {
        mut conn,
        head: rh,
        mut buf,
    } = resp;
    let pool_key = &svc.upstream.as_ref().expect("remote service").pool_key;
    let is_sse = rh
        .header(&buf, "content-type")
        .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
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
            let mut left = n;
            let take = (left as usize).min(buf.len());
            watch.usage_piece(&buf[..take]);
            out.extend_from_slice(&buf[..take]);
            left -= take as u64;
            let extra = buf.len() > take;
            let (res, _) = c.write(out).await;
            if res.is_err() {
                return false;
            }
            while left > 0 {
                buf.clear();
                let n = match read(&mut conn, buf, svc.timeout).await {
                    (Ok(n), b) if n > 0 => {
                        buf = b;
                        n
                    }
                    // The body was cut: the client can only tell by a close.
                    _ => return false,
                };
                if n as u64 > left {
                    return false;
                }
                left -= n as u64;
                watch.usage_piece(&buf);
                let (res, b) = c.write(buf).await;
                buf = b;
                if res.is_err() {
                    return false;
                }
            }
            if rh.keep_alive && !extra {
                w.pool.put(pool_key, conn);
            }
            reply.keep_alive
        }
        Framing::Chunked | Framing::UntilClose => {
            let mut stream = Stream {
                protocol: reply.protocol,
                decoder: (rh.framing == Framing::Chunked).then(|| ChunkedDecoder::new(u64::MAX)),
                events: is_sse.then(SseSplitter::default),
                chunked_out: !reply.http10,
                payload: Vec::with_capacity(16 * 1024),
            };
            let outcome = stream
                .relay(c, &mut conn, buf, out, svc.timeout, watch)
                .await;
            match outcome {
                Outcome::Done { reusable } => {
                    if reusable && rh.keep_alive && rh.framing == Framing::Chunked {
                        w.pool.put(pool_key, conn);
                    }
                    reply.keep_alive
                }
                Outcome::ClientGone => false,
                // Ended with a moderation error event; the upstream
                // connection is dropped, cancelling the rest.
                Outcome::Blocked => reply.keep_alive,
                Outcome::UpstreamFailed(e) if is_sse && !reply.http10 => {
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
                    tracing::warn!(service = %svc.name, "response body failed: {e}");
                    false
                }
            }
        }
    }
}

/// A non-streamed answer that moderation must see whole: read it all,
/// then send it, or the moderation error in its place.
async fn held(
    w: &Worker,
    c: &mut Client,
    reply: &Reply,
    svc: &Service,
    resp: Response,
    watch: &mut Watch,
) -> bool {
    let up = svc.upstream.as_ref().expect("remote service");
    let cap = 32 * 1024 * 1024;
    let answer = match crate::upstream::whole::read_whole(resp, &svc.name, svc.timeout, cap).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(service = %svc.name, "response body failed: {e}");
            return error(c, reply, &e).await;
        }
    };
    if answer.reusable {
        w.pool.put(&up.pool_key, answer.conn);
    }
    watch.usage_whole(&answer.body);
    if !watch.allows_whole(&answer.body) {
        return error(c, reply, &watch.blocked_error()).await;
    }
    let (rh, head_bytes) = (&answer.head, &answer.head_bytes);
    let mut out = Vec::with_capacity(1024 + answer.body.len());
    let mut h = reply.head(&mut out, rh.status);
    for hp in &rh.headers {
        let name = &head_bytes[hp.name.clone()];
        if copied(name) && !head::connection_lists(head_bytes, &rh.headers, name) {
            h.header(name, &head_bytes[hp.value.clone()]);
        }
    }
    h.body(if rh.framing == Framing::None {
        BodyHeader::Omit
    } else {
        BodyHeader::Length(answer.body.len() as u64)
    });
    h.finish();
    out.extend_from_slice(&answer.body);
    let (res, _) = c.write(out).await;
    res.is_ok() && reply.keep_alive
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
    Blocked,
    ClientGone,
    UpstreamFailed(Error),
}

/// A chunked or close-delimited body relayed piece by piece.
struct Stream {
    protocol: crate::config::catalog::Protocol,
    decoder: Option<ChunkedDecoder>,
    events: Option<SseSplitter>,
    chunked_out: bool,
    payload: Vec<u8>,
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
            let blocked = !self.emit(&mut out, done, watch);
            if blocked {
                // Whole events only were sent: end with one error event.
                let event = protocol::stream_error_event(self.protocol, &watch.blocked_error());
                self.put(&mut out, &event);
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
            match read(conn, raw, timeout).await {
                (Ok(0), _) if self.decoder.is_none() => {
                    // Close-delimited body: the close is its end.
                    if let Some(pending) = self.events.as_ref().map(|e| e.pending().to_vec()) {
                        watch.usage_event(&pending);
                        if watch.allows_event(&pending) {
                            self.put(&mut out, &pending);
                        } else {
                            let event =
                                protocol::stream_error_event(self.protocol, &watch.blocked_error());
                            self.put(&mut out, &event);
                        }
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

    /// Moves complete events (or any payload, for non-SSE bodies) to `out`.
    /// False when `watch` refused an event: it and all after it are held.
    fn emit(&mut self, out: &mut Vec<u8>, done: bool, watch: &mut Watch) -> bool {
        let payload = std::mem::take(&mut self.payload);
        let mut allowed = true;
        match &mut self.events {
            Some(events) => {
                let mut whole = Vec::new();
                events.push(&payload, |e| {
                    watch.usage_event(e);
                    if allowed && watch.allows_event(e) {
                        whole.extend_from_slice(e);
                    } else {
                        allowed = false;
                    }
                });
                if done && allowed && !events.pending().is_empty() {
                    watch.usage_event(events.pending());
                    if watch.allows_event(events.pending()) {
                        whole.extend_from_slice(events.pending());
                    } else {
                        allowed = false;
                    }
                }
                self.put(out, &whole);
            }
            None => {
                watch.usage_piece(&payload);
                self.put(out, &payload);
            }
        }
        self.payload = payload;
        allowed
    }

    fn put(&self, out: &mut Vec<u8>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
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
