//! A small HTTP/1.1 client for load: the target URL, keep-alive
//! connections (plain or TLS) that carry one request at a time, response
//! heads parsed with httparse, bodies de-framed (Content-Length, chunked,
//! or up to the close) and handed on piece by piece with the time each
//! piece arrived.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

use super::tls::Tls;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Spare room kept free in a connection's read buffer before each read.
const READ_SPARE: usize = 16 * 1024;

/// A parsed `http[s]://host:port/path` target; the address is resolved
/// once.
#[derive(Debug, Clone)]
pub struct Url {
    /// `https`.
    pub tls: bool,
    /// The host name or IP literal, for TLS server names.
    pub host: String,
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// Path and query.
    pub path: String,
    pub addr: SocketAddr,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!(
                "{s}: expected a full endpoint URL such as http://127.0.0.1:8080/v1/chat/completions"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{s}: no host in the URL"));
        }
        let default_port = if tls { 443 } else { 80 };
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:{default_port}")
        } else {
            authority.to_string()
        };
        let host = match authority.strip_prefix('[') {
            Some(r) => r.split(']').next().unwrap_or("").to_string(),
            None => authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .to_string(),
        };
        let host_port = with_port
            .strip_prefix('[')
            .map(|r| r.replacen(']', "", 1))
            .unwrap_or_else(|| with_port.clone());
        let addr = match host_port.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => with_port
                .to_socket_addrs()
                .map_err(|e| format!("{s}: cannot resolve {authority}: {e}"))?
                .next()
                .ok_or_else(|| format!("{s}: {authority} has no address"))?,
        };
        Ok(Url {
            tls,
            host,
            authority: authority.to_string(),
            path: path.to_string(),
            addr,
        })
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Up to the connection's close.
    Close,
}

/// What the load test needs from a response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    pub keep_alive: bool,
    /// `Content-Type: text/event-stream`.
    pub sse: bool,
    /// The content type, for messages.
    pub content_type: String,
}

/// Why reading a response failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed; `partial` when some of the response had come.
    Closed {
        partial: bool,
    },
    Io(io::Error),
    /// Not HTTP/1.x, or a head too large, or bad chunk framing.
    Malformed(String),
}

/// A TCP stream, plain or in TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
}

impl Stream {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => s.write_all(buf).await,
        }
    }
}

/// One keep-alive connection and its read buffer.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    /// When the last read completed.
    pub read_at: Instant,
    /// Requests answered on this connection.
    pub served: u64,
}

impl Conn {
    /// Connects, with a TLS handshake when `tls` is given.
    pub async fn connect(addr: SocketAddr, tls: Option<&Tls>) -> io::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(t) => {
                let s = monoio_rustls::TlsConnector::from(t.config.clone())
                    .connect(t.name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        // The wrapper's own message is bare ("io error"):
                        // name the rustls or I/O error inside.
                        let inner = match e {
                            monoio_rustls::TlsError::Io(e) => e.to_string(),
                            monoio_rustls::TlsError::Rustls(e) => e.to_string(),
                        };
                        io::Error::new(io::ErrorKind::ConnectionAborted, format!("TLS: {inner}"))
                    })?;
                Stream::Tls(Box::new(s))
            }
        };
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(READ_SPARE),
            pos: 0,
            read_at: Instant::now(),
            served: 0,
        })
    }

    /// Writes a whole request.
    pub async fn send(&mut self, req: Rc<Vec<u8>>) -> io::Result<()> {
        let (res, _) = self.stream.write_all(req).await;
        res.map(|_| ())
    }

    /// Reads more bytes after the unread ones; `Ok(0)` at the close.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_SPARE {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_SPARE {
            self.buf.reserve(READ_SPARE);
        }
        let len = self.buf.len();
        let cap = self.buf.capacity();
        let buf = std::mem::take(&mut self.buf).slice_mut(len..cap);
        let (res, buf) = self.stream.read(buf).await;
        self.buf = buf.into_inner();
        self.read_at = Instant::now();
        res
    }

    /// Reads the response head (skipping 1xx heads).
    pub async fn read_head(&mut self) -> Result<Head, ReadError> {
        let mut got_any = self.pos < self.buf.len();
        loop {
            if self.pos < self.buf.len() {
                if let Some((head, n)) = parse_head(&self.buf[self.pos..])? {
                    self.pos += n;
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    return Ok(head);
                }
                if self.buf.len() - self.pos > MAX_HEAD {
                    return Err(ReadError::Malformed("response head too large".into()));
                }
            }
            match self.fill().await {
                Ok(0) => return Err(ReadError::Closed { partial: got_any }),
                Ok(_) => got_any = true,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads the body, calling `on_data(piece, arrived_at)` with each
    /// de-framed piece.
    pub async fn read_body(
        &mut self,
        framing: Framing,
        on_data: &mut impl FnMut(&[u8], Instant),
    ) -> Result<(), ReadError> {
        let mut remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut chunked = ChunkedDecoder::default();
        loop {
            let at = self.read_at;
            let avail = &self.buf[self.pos..];
            let done = match framing {
                Framing::Length(_) => {
                    let take = (remaining.min(avail.len() as u64)) as usize;
                    if take > 0 {
                        on_data(&avail[..take], at);
                    }
                    self.pos += take;
                    remaining -= take as u64;
                    remaining == 0
                }
                Framing::Chunked => {
                    let (used, done) = chunked.decode(avail, &mut |d| on_data(d, at))?;
                    self.pos += used;
                    done
                }
                Framing::Close => {
                    if !avail.is_empty() {
                        on_data(avail, at);
                    }
                    self.pos = self.buf.len();
                    false
                }
            };
            if done {
                return Ok(());
            }
            match self.fill().await {
                Ok(0) if framing == Framing::Close => return Ok(()),
                Ok(0) => return Err(ReadError::Closed { partial: true }),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

fn header_has_token(v: &[u8], token: &str) -> bool {
    v.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a response head; `None` while incomplete.
fn parse_head(data: &[u8]) -> Result<Option<(Head, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Malformed(format!("bad response head: {e}"))),
    };
    let status = r.code.unwrap_or(0);
    let mut keep_alive = r.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    let mut content_type = String::new();
    for h in r.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok().map(str::trim);
            length = Some(
                v.and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| ReadError::Malformed("bad content-length".into()))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header_has_token(h.value, "chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if header_has_token(h.value, "close") {
                keep_alive = false;
            } else if header_has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = String::from_utf8_lossy(h.value).trim().to_string();
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::Close
    };
    let sse = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"));
    Ok(Some((
        Head {
            status,
            framing,
            keep_alive,
            sse,
            content_type,
        },
        n,
    )))
}

/// Incremental chunked-body decoder: hands on chunk data, keeps
/// incomplete size lines in the caller's buffer.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailer,
}

impl ChunkedDecoder {
    /// Decodes what it can of `data`; returns the bytes used and whether
    /// the body is complete.
    fn decode(
        &mut self,
        data: &[u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, bool), ReadError> {
        let mut i = 0;
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(nl) = memchr::memchr(b'\n', &data[i..]) else {
                        if data.len() - i > 1024 {
                            return Err(ReadError::Malformed("chunk size line too long".into()));
                        }
                        return Ok((i, false));
                    };
                    let line = &data[i..i + nl];
                    let hex = line
                        .split(|b| *b == b';')
                        .next()
                        .unwrap_or(b"")
                        .trim_ascii();
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .filter(|h| !h.is_empty() && h.len() <= 15)
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .ok_or_else(|| ReadError::Malformed("bad chunk size".into()))?;
                    i += nl + 1;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let take = left.min((data.len() - i) as u64) as usize;
                    if take == 0 {
                        return Ok((i, false));
                    }
                    on_data(&data[i..i + take]);
                    i += take;
                    self.state = if take as u64 == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take as u64)
                    };
                }
                ChunkState::DataEnd => {
                    let rest = &data[i..];
                    if rest.starts_with(b"\r\n") {
                        i += 2;
                    } else if rest.starts_with(b"\n") {
                        i += 1;
                    } else if rest.is_empty() || rest == b"\r" {
                        return Ok((i, false));
                    } else {
                        return Err(ReadError::Malformed("chunk not followed by CRLF".into()));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(nl) = memchr::memchr(b'\n', &data[i..]) else {
                        return Ok((i, false));
                    };
                    let empty = data[i..i + nl].trim_ascii().is_empty();
                    i += nl + 1;
                    if empty {
                        self.state = ChunkState::Size;
                        return Ok((i, true));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert!(!u.tls);
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path, "/v1/chat/completions");
        let u = Url::parse("http://[::1]:9/x?y=1").unwrap();
        assert_eq!(u.addr, "[::1]:9".parse().unwrap());
        assert_eq!(u.host, "::1");
        assert_eq!(u.path, "/x?y=1");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!(u.addr.port(), 80);
        assert_eq!(u.path, "/");
        let u = Url::parse("https://localhost/v1/messages").unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.addr.port()), ("localhost", 443));
        assert!(Url::parse("127.0.0.1:80/x").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn heads() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\nxx";
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive, h.sse),
            (200, Framing::Chunked, true, true)
        );
        assert_eq!(n, raw.len() - 2);
        let (h, _) =
            parse_head(b"HTTP/1.1 503 No\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive, h.sse),
            (503, Framing::Length(12), false, false)
        );
        let (h, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_head(b"\x00\x01 NOT HTTP\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
    }

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), String> {
        let mut d = ChunkedDecoder::default();
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let mut done = false;
        for p in pieces {
            pending.extend_from_slice(p);
            let (used, fin) = d
                .decode(&pending, &mut |b| out.extend_from_slice(b))
                .map_err(|e| format!("{e:?}"))?;
            pending.drain(..used);
            done = fin;
        }
        Ok((out, done))
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(
            decode_all(&[body]).unwrap(),
            (b"hello world".to_vec(), true)
        );
        let pieces: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(
            decode_all(&pieces).unwrap(),
            (b"hello world".to_vec(), true)
        );
        assert_eq!(
            decode_all(&[b"5\r\nhel"]).unwrap(),
            (b"hel".to_vec(), false)
        );
        assert!(decode_all(&[b"zz\r\n"]).is_err());
        assert!(decode_all(&[b"2\r\nabX"]).is_err());
    }
}
