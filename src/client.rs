//! A client connection as the request pipeline sees it: its buffers,
//! reads with deadlines, writes, and the request body — read whole when it
//! fits the body buffer, else its prefix, with the rest handed upstream as
//! a [`BodySource`].

use crate::error::{Error, Kind};
use crate::http::body::{write_chunk_header, ChunkError, ChunkedDecoder, LAST_CHUNK};
use crate::http::head::{Framing, RequestHead};
use crate::shared::Shared;
use crate::snapshot::EdgeLimits;
use crate::upstream::exchange::BodySource;
use crate::worker::Shutdown;
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Sleep;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// A new connection's read buffer: room for a typical LLM request head and
/// body; it grows (doubling) for larger ones.
pub const INITIAL_BUFFER: usize = 4 * 1024;
/// Idle connections keep at most this much buffer.
pub const MAX_IDLE_BUFFER: usize = 64 * 1024;
/// The least room a read is given.
const MIN_READ: usize = 1024;

pub struct Client {
    pub stream: TcpStream,
    /// Bytes read from the client and not yet consumed: the current
    /// request's head and body prefix, then any pipelined requests.
    pub inbuf: Vec<u8>,
    pub peer: SocketAddr,
    /// `peer`'s address as text, made once per connection.
    pub peer_ip: PeerIp,
    /// Set on connections accepted by a TLS listener.
    pub tls: Option<Box<crate::tls::Session>>,
    /// Bounds each read; one per connection, moved to each read's
    /// deadline (a later one costs no timer-wheel work) rather than a new
    /// timer per read. Only this connection's task ever polls it (monoio
    /// keeps waking the first task that polled a timer).
    timer: Pin<Box<Sleep>>,
}

impl Client {
    /// A client connection accepted at `now`.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<Box<crate::tls::Session>>,
        now: Instant,
    ) -> Client {
        Client {
            stream,
            inbuf: Vec::with_capacity(INITIAL_BUFFER),
            peer,
            peer_ip: PeerIp::new(peer.ip()),
            tls,
            timer: Box::pin(monoio::time::sleep_until(now.into())),
        }
    }
}

/// An IP address as text, held inline (IPv6 text is at most 45 bytes).
pub struct PeerIp {
    text: [u8; 46],
    len: u8,
}

impl PeerIp {
    pub fn new(ip: std::net::IpAddr) -> PeerIp {
        use std::io::Write;
        let mut text = [0u8; 46];
        let mut rest = &mut text[..];
        let _ = write!(rest, "{ip}");
        let len = (46 - rest.len()) as u8;
        PeerIp { text, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len as usize]
    }
}

/// Gives `buf` room to read into and returns the slice to read into.
fn spare(mut buf: Vec<u8>) -> SliceMut<Vec<u8>> {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(buf.capacity().max(INITIAL_BUFFER));
    }
    let (len, cap) = (buf.len(), buf.capacity());
    buf.slice_mut(len..cap)
}

impl Client {
    /// Appends what the client sends next to `inbuf`, waiting at most
    /// `timeout`. Ok(0) is end of stream. The read is cancelled cleanly on
    /// timeout, so bytes that raced in are kept, never lost with the buffer.
    pub async fn read_more(&mut self, timeout: Duration) -> io::Result<usize> {
        self.read_cancelable(Instant::now() + timeout, None).await
    }

    /// Like `read_more`, waiting until `deadline`.
    pub async fn read_until(&mut self, deadline: Instant) -> io::Result<usize> {
        self.read_cancelable(deadline, None).await
    }

    /// Like `read_until`, but also gives up when the worker starts draining
    /// (reported as end of stream).
    pub async fn read_idle(&mut self, drain: &Shutdown, deadline: Instant) -> io::Result<usize> {
        self.read_cancelable(deadline, Some(drain)).await
    }

    async fn read_cancelable(
        &mut self,
        deadline: Instant,
        drain: Option<&Shutdown>,
    ) -> io::Result<usize> {
        if self.tls.is_none() {
            let buf = std::mem::take(&mut self.inbuf);
            let (res, buf) = self.read_socket(buf, deadline, drain).await;
            self.inbuf = buf;
            return res;
        }
        // TLS: read ciphertext until rustls has plaintext for `inbuf`.
        loop {
            let tls = self.tls.as_mut().expect("tls session");
            if let Some(n) = tls.plaintext_into(&mut self.inbuf)? {
                return Ok(n);
            }
            if tls.cipher_in.is_empty() {
                let cipher = std::mem::take(&mut tls.cipher_in);
                let (res, cipher) = self.read_socket(cipher, deadline, drain).await;
                self.tls.as_mut().expect("tls session").cipher_in = cipher;
                if res? == 0 {
                    return Ok(0);
                }
            }
            self.tls.as_mut().expect("tls session").feed()?;
            self.flush_tls().await?;
        }
    }

    /// One read from the socket into `buf`, ended cleanly on timeout (an
    /// error) or drain (end of stream).
    ///
    /// The read is ended by shutting the socket's receive side, which
    /// completes it with what had arrived, or with end of stream: the
    /// buffer comes back and bytes that raced the deadline are not lost.
    /// (monoio's `Canceller` would do the same at the price of a hash-map
    /// insert and remove on every read.)
    async fn read_socket(
        &mut self,
        buf: Vec<u8>,
        deadline: Instant,
        drain: Option<&Shutdown>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let fd = self.stream.as_raw_fd();
        let Client { stream, timer, .. } = self;
        timer.as_mut().reset(deadline.into());
        let read = stream.read(spare(buf));
        let mut read = std::pin::pin!(read);
        let draining = async {
            match drain {
                Some(s) => s.wait().await,
                None => std::future::pending().await,
            }
        };
        let mut timed_out = false;
        let (res, buf) = monoio::select! {
            r = &mut read => r,
            _ = timer.as_mut() => {
                timed_out = true;
                crate::sys::shut_receive(fd);
                read.await
            }
            _ = draining => {
                crate::sys::shut_receive(fd);
                read.await
            }
        };
        let res = match res {
            Ok(0) if timed_out => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client read timed out",
            )),
            other => other,
        };
        (res, buf.into_inner())
    }

    /// Writes what the TLS session has to send (handshake, sealed data).
    async fn flush_tls(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        if let Some(tls) = self.tls.as_mut() {
            tls.output(&mut out)?;
        }
        if out.is_empty() {
            return Ok(());
        }
        let (res, _) = self.stream.write_all(out).await;
        res.map(|_| ())
    }

    pub async fn write(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        if self.tls.is_none() {
            let (res, buf) = self.stream.write_all(buf).await;
            return (res.map(|_| ()), buf);
        }
        let mut sent = 0;
        while sent < buf.len() {
            let sealed = self.tls.as_mut().expect("tls session").seal(&buf[sent..]);
            match sealed {
                Ok(n) => sent += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush_tls().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    /// Closes after a final answer without losing it to a reset: stop
    /// writing, then discard what the client still sends, briefly (as
    /// nginx's lingering close does).
    pub async fn linger_close(&mut self) {
        use monoio::io::AsyncWriteRent;
        if let Some(tls) = self.tls.as_mut() {
            tls.close_notify();
            let _ = self.flush_tls().await;
        }
        let _ = self.stream.shutdown().await;
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut discarded = 0;
        while discarded < 1 << 20 {
            let left = deadline.saturating_duration_since(Instant::now());
            self.inbuf.clear();
            match self.read_more(left).await {
                Ok(n) if n > 0 && !left.is_zero() => discarded += n,
                _ => return,
            }
        }
    }

    /// Awaits `upstream` (a read from the service) while watching this
    /// client: `None` when the client hangs up first, so the caller drops
    /// the upstream connection at once instead of at its next write. Bytes
    /// the client sends meanwhile (a pipelined request) stay in `inbuf`.
    pub async fn unless_gone<F: std::future::Future>(&mut self, upstream: F) -> Option<F::Output> {
        const WATCH_LIMIT: usize = 64 * 1024;
        let mut upstream = std::pin::pin!(upstream);
        while self.inbuf.len() < WATCH_LIMIT {
            let woke = monoio::select! {
                r = &mut upstream => Ok(r),
                _ = self.stream.readable(false) => Err(()),
            };
            match woke {
                Ok(r) => return Some(r),
                Err(()) => match self.read_more(Duration::from_millis(100)).await {
                    Ok(0) => return None,
                    Err(e) if e.kind() != io::ErrorKind::TimedOut => return None,
                    _ => {}
                },
            }
        }
        Some(upstream.await)
    }

    /// Like [`Client::unless_gone`], but the client is watched only once
    /// `grace` has passed: a quick answer costs no watch at all.
    /// (`upstream` is pinned by the caller: a large future is not moved.)
    pub async fn unless_gone_after<F: std::future::Future>(
        &mut self,
        grace: Duration,
        mut upstream: Pin<&mut F>,
    ) -> Option<F::Output> {
        // An answer already there needs no timer (nor the clock read that
        // makes one).
        let first = std::future::poll_fn(|cx| Poll::Ready(upstream.as_mut().poll(cx))).await;
        if let Poll::Ready(r) = first {
            return Some(r);
        }
        monoio::select! {
            r = &mut upstream => return Some(r),
            _ = monoio::time::sleep(grace) => {}
        }
        self.unless_gone(upstream).await
    }

    /// Drops the first `n` bytes of `inbuf` (a finished request).
    pub fn consume(&mut self, n: usize) {
        if n >= self.inbuf.len() {
            self.inbuf.clear();
        } else {
            self.inbuf.drain(..n);
        }
    }
}

/// A request body as the pipeline holds it, and its fate: how much of
/// `inbuf` the request occupies, and whether its rest went upstream.
pub struct Body {
    held: Held,
    /// Larger than `body_buffer_bytes`: what is still on the client socket.
    rest: Option<Rest>,
    /// `inbuf` bytes the request occupies (head, held body, framing).
    end: usize,
    /// The rest began to flow upstream: the body can never be sent again.
    rest_sent: bool,
    /// The whole body must have arrived by then (set for a body with a
    /// rest).
    deadline: Option<Instant>,
    /// And each read of it within this (the connection's idle timeout).
    idle: Duration,
    /// Body memory reserved for a JSON body held past the buffer.
    _reserved: Option<Reservation>,
}

/// Bytes of the process-wide body memory one body holds; given back when
/// the body is dropped.
struct Reservation {
    pool: Arc<Shared>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` more of `limit`, or refuses (503, retry soon).
    fn grow(
        this: &mut Option<Reservation>,
        pool: &Arc<Shared>,
        bytes: usize,
        limit: usize,
    ) -> Result<(), Error> {
        let before = pool.body_memory.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > limit {
            pool.body_memory.fetch_sub(bytes, Ordering::AcqRel);
            let mut e = Error::new(
                Kind::Overloaded,
                "too many large request bodies in flight (server.limits.body_memory_bytes): retry shortly",
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        match this {
            Some(r) => r.bytes += bytes,
            None => {
                *this = Some(Reservation {
                    pool: pool.clone(),
                    bytes,
                })
            }
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool
            .body_memory
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

enum Held {
    None,
    /// `inbuf[start..start + len]` (Content-Length bodies: no copy).
    InBuf {
        start: usize,
        len: usize,
    },
    /// Decoded chunks.
    Decoded(Vec<u8>),
}

/// What of a large body is still on the client socket.
pub enum Rest {
    Length(u64),
    Chunked(ChunkedDecoder),
    Done,
}

impl Body {
    /// The request has no body: `head_len` bytes of `inbuf`.
    pub fn none(head_len: usize) -> Body {
        Body {
            held: Held::None,
            rest: None,
            end: head_len,
            rest_sent: false,
            deadline: None,
            idle: Duration::ZERO,
            _reserved: None,
        }
    }

    /// The body bytes held: the whole body, or the prefix of a large one.
    pub fn held<'a>(&'a self, inbuf: &'a [u8]) -> &'a [u8] {
        match &self.held {
            Held::None => &[],
            Held::InBuf { start, len } => &inbuf[*start..*start + *len],
            Held::Decoded(v) => v,
        }
    }

    /// Held whole: it can be read anywhere and sent again.
    pub fn is_whole(&self) -> bool {
        self.rest.is_none()
    }

    /// No part of it has left for an upstream yet beyond what is held: a
    /// next attempt may send it.
    pub fn replayable(&self) -> bool {
        !self.rest_sent
    }

    /// For a large body: the length still to come (`None` when chunked).
    pub fn rest_len(&self) -> Option<Option<u64>> {
        match &self.rest {
            None => None,
            Some(Rest::Length(n)) => Some(Some(*n)),
            Some(_) => Some(None),
        }
    }

    /// How many `inbuf` bytes to drop when the request ends, or `None`
    /// when the connection must close: part of the body is still unread.
    pub fn settled(&self) -> Option<usize> {
        match &self.rest {
            None => Some(self.end),
            Some(Rest::Done | Rest::Length(0)) if self.rest_sent => Some(self.end),
            Some(_) => None,
        }
    }

    /// The rest of a large body, read from `c` as the upstream takes it.
    pub fn rest<'c>(&'c mut self, c: &'c mut Client) -> RestOfBody<'c> {
        RestOfBody {
            body: self,
            client: c,
            decoded: Vec::new(),
        }
    }
}

/// The rest of a large body as a [`BodySource`]: read from the client
/// within the body's deadline, framed for the upstream hop.
pub struct RestOfBody<'c> {
    body: &'c mut Body,
    client: &'c mut Client,
    decoded: Vec<u8>,
}

impl BodySource for RestOfBody<'_> {
    async fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, Error> {
        let (body, c) = (&mut *self.body, &mut *self.client);
        if !body.rest_sent {
            // The held prefix went with the head: from here on `inbuf`
            // holds only the rest.
            c.consume(body.end);
            body.end = 0;
            body.held = Held::None;
            body.rest_sent = true;
        }
        let rest = match &mut body.rest {
            None | Some(Rest::Done | Rest::Length(0)) => return Ok(true),
            Some(r) => r,
        };
        let deadline = *body.deadline.get_or_insert_with(Instant::now);
        if c.inbuf.is_empty() && c.read_body_bytes(deadline, body.idle).await? == 0 {
            return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
        }
        match rest {
            Rest::Length(left) => {
                let take = (*left as usize).min(c.inbuf.len());
                out.extend_from_slice(&c.inbuf[..take]);
                c.consume(take);
                *left -= take as u64;
                Ok(*left == 0)
            }
            Rest::Chunked(decoder) => {
                let data = &mut self.decoded;
                data.clear();
                let p = decoder
                    .decode(&c.inbuf, |d| data.extend_from_slice(d))
                    .map_err(chunk_error)?;
                c.consume(p.consumed);
                if !data.is_empty() {
                    write_chunk_header(data.len(), out);
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                if p.done {
                    out.extend_from_slice(LAST_CHUNK);
                    *rest = Rest::Done;
                }
                Ok(p.done)
            }
            Rest::Done => Ok(true),
        }
    }
}

fn chunk_error(e: ChunkError) -> Error {
    match e {
        ChunkError::TooLarge => Error::new(Kind::BodyTooLarge, "request body too large"),
        e => Error::new(Kind::BadRequest, format!("malformed chunked body: {e:?}")),
    }
}

impl Client {
    /// Reads the request body: whole when it fits `edge.body_buffer_bytes`,
    /// else its prefix. All of it must arrive within
    /// `edge.body_read_timeout`, counted from the first read it waits for.
    /// `hold`: a JSON body, held whole up to `max_body_bytes` (its model
    /// may come anywhere), within the process's body memory.
    pub async fn read_body(
        &mut self,
        head: &RequestHead,
        edge: &EdgeLimits,
        hold: Option<&Arc<Shared>>,
    ) -> Result<Body, Error> {
        let mut reserved = None;
        let start = head.head_len;
        // The clock is read only when a read must wait (most bodies come
        // with their head).
        let timeout = edge.body_read_timeout;
        let mut deadline = None;
        let idle = edge.idle_timeout;
        // The request is routed: a client waiting to be told (large
        // uploads, curl) may send its body now.
        if head.expect_continue && head.has_body() && self.inbuf.len() == start {
            started(&mut deadline, timeout);
            let (res, _) = self.write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
            res.map_err(client_gone)?;
        }
        let (held, rest, end) = match head.framing {
            Framing::None | Framing::UntilClose | Framing::Length(0) => {
                return Ok(Body::none(start))
            }
            Framing::Length(n) => {
                let whole = hold.filter(|_| n as usize > edge.body_buffer_bytes);
                if let Some(pool) = whole {
                    Reservation::grow(&mut reserved, pool, n as usize, edge.body_memory_bytes)?;
                }
                let cap = match whole {
                    Some(_) => usize::MAX,
                    None => edge.body_buffer_bytes,
                };
                let want = (n as usize).min(cap);
                while self.inbuf.len() < start + want {
                    let by = started(&mut deadline, timeout);
                    if self.read_body_bytes(by, idle).await? == 0 {
                        return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                if n as usize <= cap {
                    let len = n as usize;
                    (Held::InBuf { start, len }, None, start + len)
                } else {
                    // (A pipelined next request may have come along: not body.)
                    let len = (self.inbuf.len() - start).min(n as usize);
                    let rest = Rest::Length(n - len as u64);
                    (Held::InBuf { start, len }, Some(rest), start + len)
                }
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(edge.head.max_body_bytes);
                let mut held = Vec::new();
                let mut pos = start;
                loop {
                    let progress = decoder
                        .decode(&self.inbuf[pos..], |d| held.extend_from_slice(d))
                        .map_err(chunk_error)?;
                    pos += progress.consumed;
                    if progress.done {
                        break (Held::Decoded(held), None, pos);
                    }
                    if held.len() >= edge.body_buffer_bytes {
                        let Some(pool) = hold else {
                            break (Held::Decoded(held), Some(Rest::Chunked(decoder)), pos);
                        };
                        // Held whole: reserved in steps as it grows.
                        let have = reserved.as_ref().map_or(0, |r: &Reservation| r.bytes);
                        if held.len() > have {
                            let step = edge.body_buffer_bytes.max(held.len() - have);
                            Reservation::grow(&mut reserved, pool, step, edge.body_memory_bytes)?;
                        }
                    }
                    // Keep only undecoded bytes after the head.
                    self.inbuf.drain(start..pos);
                    pos = start;
                    let by = started(&mut deadline, timeout);
                    if self.read_body_bytes(by, idle).await? == 0 {
                        return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        };
        // A rest still to come must arrive by the same deadline.
        if rest.is_some() {
            started(&mut deadline, timeout);
        }
        Ok(Body {
            held,
            rest,
            end,
            rest_sent: false,
            deadline,
            idle,
            _reserved: reserved,
        })
    }
}

/// The body deadline, set when first needed.
fn started(deadline: &mut Option<Instant>, timeout: Duration) -> Instant {
    *deadline.get_or_insert_with(|| Instant::now() + timeout)
}

impl Client {
    /// Reads more of a body: by `deadline`, and within `idle` of now.
    async fn read_body_bytes(&mut self, deadline: Instant, idle: Duration) -> Result<usize, Error> {
        let until = deadline.min(Instant::now() + idle);
        self.read_until(until).await.map_err(client_gone)
    }
}

/// The client stopped sending its body: too slow, or gone.
pub(crate) fn client_gone(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::TimedOut {
        Error::new(Kind::HeadTimeout, "request body not received in time")
    } else {
        Error::new(Kind::BadRequest, format!("request body incomplete: {e}"))
    }
}
