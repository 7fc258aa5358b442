//! Minimal HTTP/1.1 request parsing and response framing on raw bytes.
//!
//! Requests are read into a per-connection buffer that may hold the start of
//! the next (pipelined) request; bodies are de-framed from Content-Length or
//! chunked transfer-encoding.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted (431 beyond).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_HEADERS: usize = 128;

/// One parsed request, with its body de-framed.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The path without the query.
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP minor version (0 or 1).
    pub minor_version: u8,
    /// The connection's sequence number (1-based).
    pub conn: u64,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header parsed as an unsigned number.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.trim().parse().ok())
    }

    /// Whether the client allows the connection to stay open.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| conn.split(',').any(|x| x.trim() == t);
        if self.minor_version == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

/// Why a request could not be read; each maps to a status.
#[derive(Debug)]
pub enum ReadError {
    /// The peer went away (clean EOF between requests, or an I/O error).
    Closed,
    /// Malformed request: 400.
    Bad(&'static str),
    /// Head too large: 431.
    HeadTooLarge,
    /// Body too large: 413.
    BodyTooLarge,
}

impl ReadError {
    pub fn status(&self) -> u16 {
        match self {
            ReadError::Closed => 0,
            ReadError::Bad(_) => 400,
            ReadError::HeadTooLarge => 431,
            ReadError::BodyTooLarge => 413,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            ReadError::Closed => "closed",
            ReadError::Bad(m) => m,
            ReadError::HeadTooLarge => "request head too large",
            ReadError::BodyTooLarge => "request body too large",
        }
    }
}

/// Reads more bytes into `buf`; EOF or error → `Closed`.
async fn fill<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    let mut tmp = [0u8; 16 * 1024];
    match rd.read(&mut tmp).await {
        Ok(0) | Err(_) => Err(ReadError::Closed),
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            Ok(())
        }
    }
}

struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, String)>,
    len: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hdrs);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                Err(ReadError::HeadTooLarge)
            } else {
                Ok(None)
            }
        }
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Ok(Some(Head {
                method: req.method.unwrap_or("").to_string(),
                target: req.path.unwrap_or("/").to_string(),
                minor_version: req.version.unwrap_or(1),
                headers,
                len,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(ReadError::HeadTooLarge),
        Err(_) => Err(ReadError::Bad("malformed request head")),
    }
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn framing(headers: &[(String, String)]) -> Result<Framing, ReadError> {
    let mut te_chunked = false;
    let mut has_te = false;
    let mut length: Option<usize> = None;
    for (n, v) in headers {
        if n == "transfer-encoding" {
            has_te = true;
            let last = v.rsplit(',').next().unwrap_or("").trim();
            te_chunked = last.eq_ignore_ascii_case("chunked");
        } else if n == "content-length" {
            let l: usize = v
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad("invalid content-length"))?;
            if length.is_some_and(|old| old != l) {
                return Err(ReadError::Bad("conflicting content-length"));
            }
            length = Some(l);
        }
    }
    match (has_te, length) {
        (true, Some(_)) => Err(ReadError::Bad("both content-length and transfer-encoding")),
        (true, None) if te_chunked => Ok(Framing::Chunked),
        (true, None) => Err(ReadError::Bad("unsupported transfer-encoding")),
        (false, Some(l)) if l > MAX_BODY => Err(ReadError::BodyTooLarge),
        (false, Some(l)) => Ok(Framing::Length(l)),
        (false, None) => Ok(Framing::None),
    }
}

/// Incremental chunked-body decoder: consumes whole chunks from `buf`
/// starting at `pos`, so a retry after more bytes arrive does not rescan
/// data already decoded.
#[derive(Default)]
pub struct ChunkedDecoder {
    pos: usize,
    out: Vec<u8>,
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

impl ChunkedDecoder {
    pub fn new(start: usize) -> Self {
        ChunkedDecoder {
            pos: start,
            out: Vec::new(),
        }
    }

    /// `Ok(Some(end))` when the body is complete (`end` = offset just past
    /// it), `Ok(None)` when more bytes are needed.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, ReadError> {
        loop {
            let Some(eol) = find_crlf(buf, self.pos) else {
                if buf.len() - self.pos > 1024 {
                    return Err(ReadError::Bad("chunk size line too long"));
                }
                return Ok(None);
            };
            let line = &buf[self.pos..eol];
            let size_part = match line.iter().position(|&b| b == b';') {
                Some(p) => &line[..p],
                None => line,
            };
            let size_str = std::str::from_utf8(size_part)
                .map_err(|_| ReadError::Bad("invalid chunk size"))?
                .trim_end_matches([' ', '\t']);
            if size_str.is_empty() || !size_str.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ReadError::Bad("invalid chunk size"));
            }
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| ReadError::Bad("invalid chunk size"))?;
            if size == 0 {
                // Trailers: lines until an empty one.
                let mut p = eol + 2;
                loop {
                    let Some(e) = find_crlf(buf, p) else {
                        if buf.len() - p > MAX_HEAD {
                            return Err(ReadError::HeadTooLarge);
                        }
                        return Ok(None);
                    };
                    if e == p {
                        return Ok(Some(e + 2));
                    }
                    p = e + 2;
                }
            }
            if self.out.len() + size > MAX_BODY {
                return Err(ReadError::BodyTooLarge);
            }
            let data = eol + 2;
            if buf.len() < data + size + 2 {
                return Ok(None);
            }
            if &buf[data + size..data + size + 2] != b"\r\n" {
                return Err(ReadError::Bad("chunk not followed by CRLF"));
            }
            self.out.extend_from_slice(&buf[data..data + size]);
            self.pos = data + size + 2;
        }
    }

    pub fn into_body(self) -> Vec<u8> {
        self.out
    }
}

/// Reads one whole request (head and body) from `io`, using and leaving
/// leftover bytes in `buf`. `100 Continue` is written once when the client
/// sent `Expect: 100-continue` and the body has not arrived yet.
pub async fn read_request<S>(io: &mut S, buf: &mut Vec<u8>, conn: u64) -> Result<Request, ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_request_observed(io, buf, conn, |_| {}).await
}

/// A request head as soon as it is parsed, before its body is read.
pub struct HeadSeen<'a> {
    /// The request target as sent (path and query).
    pub target: &'a str,
    /// Header names lower-cased, in arrival order.
    pub headers: &'a [(String, String)],
    /// Bytes of the head at the start of the buffer.
    pub len: usize,
}

impl HeadSeen<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`read_request`], calling `on_head` once the head is parsed (before the
/// body is read); when the read then fails, `buf` still holds the head and
/// the body bytes received so far.
pub async fn read_request_observed<S, F>(
    io: &mut S,
    buf: &mut Vec<u8>,
    conn: u64,
    on_head: F,
) -> Result<Request, ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&HeadSeen<'_>),
{
    let head = loop {
        if !buf.is_empty() {
            if let Some(h) = parse_head(buf)? {
                break h;
            }
        }
        fill(io, buf).await?;
    };
    on_head(&HeadSeen {
        target: &head.target,
        headers: &head.headers,
        len: head.len,
    });
    let fr = framing(&head.headers)?;
    let expects_continue = head
        .headers
        .iter()
        .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"));
    let mut sent_continue = false;
    let start = head.len;
    let (body, end) = match fr {
        Framing::None => (Vec::new(), start),
        Framing::Length(l) => {
            while buf.len() < start + l {
                if expects_continue && !sent_continue {
                    sent_continue = true;
                    let _ = io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                fill(io, buf).await?;
            }
            (buf[start..start + l].to_vec(), start + l)
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new(start);
            let end = loop {
                if let Some(end) = dec.advance(buf)? {
                    break end;
                }
                if expects_continue && !sent_continue {
                    sent_continue = true;
                    let _ = io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                fill(io, buf).await?;
            };
            (dec.into_body(), end)
        }
    };
    buf.drain(..end);
    let path = head
        .target
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .to_string();
    Ok(Request {
        method: head.method,
        target: head.target,
        path,
        headers: head.headers,
        body,
        minor_version: head.minor_version,
        conn,
    })
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// Serialises a response head. `length` = `Some(n)` writes Content-Length,
/// `None` writes `Transfer-Encoding: chunked`.
pub fn response_head(
    status: u16,
    content_type: &str,
    length: Option<usize>,
    extra: &[(String, String)],
    close: bool,
) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
    h.push_str("content-type: ");
    h.push_str(content_type);
    h.push_str("\r\n");
    match length {
        Some(n) => h.push_str(&format!("content-length: {n}\r\n")),
        None => h.push_str("transfer-encoding: chunked\r\n"),
    }
    for (n, v) in extra {
        h.push_str(n);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str(if close {
        "connection: close\r\n"
    } else {
        "connection: keep-alive\r\n"
    });
    h.push_str("\r\n");
    h.into_bytes()
}

/// An interim (1xx) response head; `103 Early Hints` carries a `link`.
pub fn interim_head(status: u16) -> Vec<u8> {
    let link = if status == 103 {
        "link: </hint.css>; rel=preload\r\n"
    } else {
        ""
    };
    format!("HTTP/1.1 {status} {}\r\n{link}\r\n", reason(status)).into_bytes()
}

/// Frames `data` as one chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoder_incremental() {
        let full = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut dec = ChunkedDecoder::new(0);
        for cut in 0..full.len() - 4 {
            let mut d = ChunkedDecoder::new(0);
            assert!(d.advance(&full[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let end = dec.advance(full).unwrap().unwrap();
        assert_eq!(&full[end..], b"NEXT");
        assert_eq!(dec.into_body(), b"Wikipedia");
    }

    /// A chunked body far past any one read (2 MiB, odd chunk sizes,
    /// written in small pieces) is read whole, and the next pipelined
    /// request stays in the buffer.
    #[test]
    fn read_request_reads_a_2mib_chunked_body_whole() {
        let body: Vec<u8> = (0..2 * 1024 * 1024 + 3)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let mut wire =
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec();
        for part in body.chunks(65_543) {
            wire.extend_from_slice(&chunk(part));
        }
        wire.extend_from_slice(LAST_CHUNK);
        wire.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(4096);
            let writer = tokio::spawn(async move {
                for piece in wire.chunks(1000) {
                    client.write_all(piece).await.unwrap();
                }
                client
            });
            let mut buf = Vec::new();
            let req = read_request(&mut server, &mut buf, 1).await.unwrap();
            assert_eq!(req.body.len(), body.len());
            assert!(req.body == body);
            let _client = writer.await.unwrap();
            let next = read_request(&mut server, &mut buf, 1).await.unwrap();
            assert_eq!(next.path, "/next");
        });
    }

    #[test]
    fn chunked_decoder_rejects_bad_size() {
        let mut dec = ChunkedDecoder::new(0);
        assert!(matches!(
            dec.advance(b"zz\r\nab\r\n0\r\n\r\n"),
            Err(ReadError::Bad(_))
        ));
    }

    #[test]
    fn framing_rules() {
        let h = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(matches!(
            framing(&h(&[
                ("content-length", "3"),
                ("transfer-encoding", "chunked")
            ])),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            framing(&h(&[("content-length", "3"), ("content-length", "4")])),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            framing(&h(&[("content-length", "3"), ("content-length", "3")])),
            Ok(Framing::Length(3))
        ));
        assert!(matches!(
            framing(&h(&[("transfer-encoding", "gzip, chunked")])),
            Ok(Framing::Chunked)
        ));
    }
}
