//! A client connection: its buffers, reads with deadlines, and the
//! keep-alive loop that hands each request head to the proxy pipeline.

use crate::config::catalog::Protocol;
use crate::error::{Error, Kind};
use crate::http::head::{self, ParseError, RequestHead};
use crate::http::write;
use crate::snapshot::EdgeLimits;
use crate::worker::Worker;
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Sleep;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A new connection's read buffer: room for a typical LLM request head and
/// body; it grows (doubling) for larger ones.
const INITIAL_BUFFER: usize = 4 * 1024;
/// Idle connections keep at most this much buffer.
const MAX_IDLE_BUFFER: usize = 64 * 1024;
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

    /// Like `read_more`, but also gives up when the worker starts draining
    /// (reported as end of stream).
    async fn read_idle(&mut self, w: &Worker, deadline: Instant) -> io::Result<usize> {
        self.read_cancelable(deadline, Some(w)).await
    }

    async fn read_cancelable(
        &mut self,
        deadline: Instant,
        drain: Option<&Worker>,
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
        drain: Option<&Worker>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let fd = self.stream.as_raw_fd();
        let Client { stream, timer, .. } = self;
        timer.as_mut().reset(deadline.into());
        let read = stream.read(spare(buf));
        let mut read = std::pin::pin!(read);
        let draining = async {
            match drain {
                Some(w) => w.shutdown.wait().await,
                None => std::future::pending().await,
            }
        };
        let mut timed_out = false;
        let (res, buf) = monoio::select! {
            r = &mut read => r,
            _ = timer.as_mut() => {
                timed_out = true;
                shut_receive(fd);
                read.await
            }
            _ = draining => {
                shut_receive(fd);
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

    /// Drops the first `n` bytes of `inbuf` (a finished request).
    pub fn consume(&mut self, n: usize) {
        if n >= self.inbuf.len() {
            self.inbuf.clear();
        } else {
            self.inbuf.drain(..n);
        }
    }
}

enum HeadRead {
    Head(RequestHead),
    Closed,
    Refuse(Error),
}

/// Reads the next request head; the connection has been idle since
/// `idle_since`.
async fn read_head(
    w: &Worker,
    c: &mut Client,
    edge: &EdgeLimits,
    scratch: &mut Vec<head::HeaderPos>,
    idle_since: Instant,
) -> HeadRead {
    let mut deadline: Option<Instant> = None;
    loop {
        if !c.inbuf.is_empty() {
            match head::parse_request(&c.inbuf, &edge.head, scratch) {
                Ok(h) => return HeadRead::Head(h),
                Err(ParseError::Incomplete) => {}
                Err(e) => return HeadRead::Refuse(parse_error(e)),
            }
        }
        let slow = || {
            HeadRead::Refuse(Error::new(
                Kind::HeadTimeout,
                "request head not received in time",
            ))
        };
        let read = match deadline {
            // Waiting for a new request: idle timeout, and drain ends it.
            None if c.inbuf.is_empty() => c.read_idle(w, idle_since + edge.idle_timeout).await,
            _ => {
                // Part of a head is here: the rest must follow in time.
                let d = *deadline.get_or_insert_with(|| Instant::now() + edge.header_read_timeout);
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return slow();
                }
                match c.read_more(left).await {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => return slow(),
                    r => r,
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {
                deadline.get_or_insert_with(|| Instant::now() + edge.header_read_timeout);
            }
        }
    }
}

pub fn parse_error(e: ParseError) -> Error {
    match e {
        ParseError::HeadTooLarge => Error::new(Kind::HeadTooLarge, "request head too large"),
        ParseError::TooManyHeaders => Error::new(Kind::HeadTooLarge, "too many header fields"),
        ParseError::BodyTooLarge => Error::new(Kind::BodyTooLarge, "request body too large"),
        ParseError::Invalid(why) => {
            Error::new(Kind::BadRequest, format!("malformed request: {why}"))
        }
        ParseError::Incomplete => Error::new(Kind::BadRequest, "incomplete request"),
    }
}

/// Boxes the future `make` returns, letting it be built in the box rather
/// than built on the stack and copied in (the pipeline's is kilobytes).
fn boxed_in_place<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// Serves one client connection until it closes, errs, or the worker drains.
pub async fn serve(w: &Worker, stream: TcpStream, peer: SocketAddr, tls: bool) {
    let session = match (tls, &w.snapshot().tls) {
        (false, _) => None,
        (true, Some(config)) => match crate::tls::Session::new(config.clone()) {
            Ok(s) => Some(Box::new(s)),
            Err(_) => return,
        },
        (true, None) => return,
    };
    let mut idle_since = Instant::now();
    let mut c = Client {
        stream,
        inbuf: Vec::with_capacity(INITIAL_BUFFER),
        peer,
        peer_ip: PeerIp::new(peer.ip()),
        tls: session,
        timer: Box::pin(monoio::time::sleep_until(idle_since.into())),
    };
    let mut scratch = Vec::with_capacity(32);
    loop {
        let snap = w.snapshot();
        let head = match read_head(w, &mut c, &snap.edge, &mut scratch, idle_since).await {
            HeadRead::Head(h) => h,
            HeadRead::Closed => return,
            HeadRead::Refuse(e) => {
                // No Model API is known yet: OpenAI's shape, the common one.
                let id = w.new_request_id();
                let mut rec = crate::observe::Record::start(head::Method::Other, None);
                rec.status = e.status();
                rec.error = Some(e.code());
                let mut out = Vec::new();
                write::simple_response(
                    &mut out,
                    e.status(),
                    "application/json",
                    &id,
                    true,
                    &crate::protocol::error_body(Protocol::Openai, &e, &id),
                );
                let written = c.write(out).await.0.is_ok();
                w.observe.finish(&snap, &id, &mut rec);
                if written {
                    c.linger_close().await;
                }
                return;
            }
        };
        // Boxed: the pipeline's state lives only while a request is in
        // flight, so an idle keep-alive connection stays small (a few KiB).
        let ended = boxed_in_place(|| crate::proxy::handle(w, &mut c, &snap, &head)).await;
        head.recycle(&mut scratch);
        // A connection that once carried a large body goes back to a small
        // buffer: idle keep-alive connections should cost little memory.
        if c.inbuf.is_empty() && c.inbuf.capacity() > MAX_IDLE_BUFFER {
            c.inbuf = Vec::with_capacity(INITIAL_BUFFER);
        }
        let Some(ended) = ended else {
            c.linger_close().await;
            return;
        };
        // The keep-alive wait counts from the end of the answer.
        idle_since = ended;
        if w.shutdown.is_fired() {
            return;
        }
    }
}

/// A request body as the proxy holds it.
pub enum RequestBody {
    None,
    /// The whole body, held: `inbuf[start..start + len]` for Content-Length
    /// bodies (no copy), or decoded chunks.
    Whole(BodyBytes),
    /// Larger than `body_buffer_bytes`: the held prefix, the rest still on
    /// the client socket. Sent upstream in one pass; cannot be replayed.
    Streaming {
        prefix: BodyBytes,
        rest: Rest,
    },
}

pub enum BodyBytes {
    InBuf { start: usize, len: usize },
    Decoded(Vec<u8>),
}

pub enum Rest {
    Length(u64),
    Chunked(crate::http::body::ChunkedDecoder),
}

impl RequestBody {
    pub fn held<'a>(&'a self, inbuf: &'a [u8]) -> &'a [u8] {
        let b = match self {
            RequestBody::None => return &[],
            RequestBody::Whole(b) | RequestBody::Streaming { prefix: b, .. } => b,
        };
        match b {
            BodyBytes::InBuf { start, len } => &inbuf[*start..*start + *len],
            BodyBytes::Decoded(v) => v,
        }
    }

    pub fn is_whole(&self) -> bool {
        !matches!(self, RequestBody::Streaming { .. })
    }
}

impl Client {
    /// Reads the request body: whole when it fits `edge.body_buffer_bytes`,
    /// else its prefix. Returns the body and how many `inbuf` bytes the
    /// request (head and framing) occupies.
    pub async fn read_body(
        &mut self,
        head: &RequestHead,
        edge: &EdgeLimits,
    ) -> Result<(RequestBody, usize), Error> {
        use crate::http::body::ChunkedDecoder;
        use crate::http::head::Framing;
        let start = head.head_len;
        // The request is routed: a client waiting to be told (large
        // uploads, curl) may send its body now.
        if head.expect_continue && head.has_body() && self.inbuf.len() == start {
            let (res, _) = self.write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
            res.map_err(client_gone)?;
        }
        match head.framing {
            Framing::None | Framing::UntilClose => Ok((RequestBody::None, start)),
            Framing::Length(0) => Ok((RequestBody::None, start)),
            Framing::Length(n) => {
                let want = (n as usize).min(edge.body_buffer_bytes);
                while self.inbuf.len() < start + want {
                    if self
                        .read_more(edge.idle_timeout)
                        .await
                        .map_err(client_gone)?
                        == 0
                    {
                        return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                if n as usize <= edge.body_buffer_bytes {
                    let len = n as usize;
                    return Ok((
                        RequestBody::Whole(BodyBytes::InBuf { start, len }),
                        start + len,
                    ));
                }
                // (A pipelined next request may have come along: not body.)
                let held = (self.inbuf.len() - start).min(n as usize);
                let prefix = BodyBytes::InBuf { start, len: held };
                let rest = Rest::Length(n - held as u64);
                Ok((RequestBody::Streaming { prefix, rest }, start + held))
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(edge.head.max_body_bytes);
                let mut body = Vec::new();
                let mut pos = start;
                loop {
                    let progress = decoder
                        .decode(&self.inbuf[pos..], |d| body.extend_from_slice(d))
                        .map_err(|e| match e {
                            crate::http::body::ChunkError::TooLarge => {
                                Error::new(Kind::BodyTooLarge, "request body too large")
                            }
                            e => Error::new(
                                Kind::BadRequest,
                                format!("malformed chunked body: {e:?}"),
                            ),
                        })?;
                    pos += progress.consumed;
                    if progress.done {
                        return Ok((RequestBody::Whole(BodyBytes::Decoded(body)), pos));
                    }
                    if body.len() >= edge.body_buffer_bytes {
                        let rest = Rest::Chunked(decoder);
                        return Ok((
                            RequestBody::Streaming {
                                prefix: BodyBytes::Decoded(body),
                                rest,
                            },
                            pos,
                        ));
                    }
                    // Keep only undecoded bytes after the head.
                    self.inbuf.drain(start..pos);
                    pos = start;
                    if self
                        .read_more(edge.idle_timeout)
                        .await
                        .map_err(client_gone)?
                        == 0
                    {
                        return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
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

/// Shuts the socket's receive side, so a read pending on it completes with
/// what had arrived, or with end of stream. Writing still works.
pub(crate) fn shut_receive(fd: RawFd) {
    // socket2 wants an owned or `AsFd` socket; this one stays owned by its
    // monoio stream, so the borrowed descriptor goes straight to the call.
    // SAFETY: `shutdown` takes no memory from us; `fd` is the stream's open socket.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

#[cfg(test)]
mod tests {
    use crate::worker::Worker;

    fn size_of_return<F, A, B, C, D, R>(_: F) -> usize
    where
        F: Fn(A, B, C, D) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// An idle keep-alive connection holds this future: keep it small (the
    /// pipeline's own state is boxed per request).
    #[test]
    fn idle_connection_state_stays_small() {
        type Stream = monoio::net::TcpStream;
        let size = size_of_return::<_, &'static Worker, Stream, std::net::SocketAddr, bool, _>(
            super::serve,
        );
        assert!(size <= 4096, "connection future is {size} bytes");
    }
}
