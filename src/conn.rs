//! A client connection: its buffers, reads with deadlines, and the
//! keep-alive loop that hands each request head to the proxy pipeline.

use crate::config::catalog::Protocol;
use crate::config::compile::EdgeLimits;
use crate::error::{Error, Kind};
use crate::http::head::{self, ParseError, RequestHead};
use crate::http::write;
use crate::worker::Worker;
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const READ_CHUNK: usize = 16 * 1024;

pub struct Client {
    pub stream: TcpStream,
    /// Bytes read from the client and not yet consumed: the current
    /// request's head and body prefix, then any pipelined requests.
    pub inbuf: Vec<u8>,
    pub peer: SocketAddr,
}

/// Gives `buf` room to read into and returns the slice to read into.
fn spare(mut buf: Vec<u8>) -> SliceMut<Vec<u8>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    buf.slice_mut(len..cap)
}

impl Client {
    /// Appends what the client sends next to `inbuf`, waiting at most
    /// `timeout`. Ok(0) is end of stream.
    pub async fn read_more(&mut self, timeout: Duration) -> io::Result<usize> {
        let buf = spare(std::mem::take(&mut self.inbuf));
        match monoio::time::timeout(timeout, self.stream.read(buf)).await {
            Ok((res, buf)) => {
                self.inbuf = buf.into_inner();
                res
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client read timed out",
            )),
        }
    }

    /// Like `read_more`, but also gives up (cleanly, keeping any bytes that
    /// raced in) when the worker starts draining.
    async fn read_idle(&mut self, w: &Worker, timeout: Duration) -> io::Result<usize> {
        let canceller = Canceller::new();
        let buf = spare(std::mem::take(&mut self.inbuf));
        let read = self.stream.cancelable_read(buf, canceller.handle());
        let mut read = std::pin::pin!(read);
        let (res, buf) = monoio::select! {
            r = &mut read => r,
            _ = monoio::time::sleep(timeout) => { canceller.cancel(); read.await }
            _ = w.shutdown.wait() => { canceller.cancel(); read.await }
        };
        self.inbuf = buf.into_inner();
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => Ok(0),
            other => other,
        }
    }

    pub async fn write(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = self.stream.write_all(buf).await;
        (res.map(|_| ()), buf)
    }

    /// Closes after a final answer without losing it to a reset: stop
    /// writing, then discard what the client still sends, briefly (as
    /// nginx's lingering close does).
    pub async fn linger_close(&mut self) {
        use monoio::io::AsyncWriteRent;
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

async fn read_head(
    w: &Worker,
    c: &mut Client,
    edge: &EdgeLimits,
    scratch: &mut Vec<head::HeaderPos>,
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
            None if c.inbuf.is_empty() => c.read_idle(w, edge.idle_timeout).await,
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

/// Serves one client connection until it closes, errs, or the worker drains.
pub async fn serve(w: &Worker, stream: TcpStream, peer: SocketAddr) {
    let mut c = Client {
        stream,
        inbuf: Vec::with_capacity(READ_CHUNK),
        peer,
    };
    let mut scratch = Vec::with_capacity(32);
    loop {
        let snap = w.snapshot();
        let head = match read_head(w, &mut c, &snap.edge, &mut scratch).await {
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
                    &e.body(Protocol::Openai, &id),
                );
                let written = c.write(out).await.0.is_ok();
                w.observe.finish(&snap, &id, &mut rec);
                if written {
                    c.linger_close().await;
                }
                return;
            }
        };
        let keep_alive = crate::proxy::handle(w, &mut c, &snap, head).await;
        if !keep_alive {
            c.linger_close().await;
            return;
        }
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
                let held = self.inbuf.len() - start;
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

fn client_gone(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::TimedOut {
        Error::new(Kind::HeadTimeout, "request body not received in time")
    } else {
        Error::new(Kind::BadRequest, format!("request body incomplete: {e}"))
    }
}
