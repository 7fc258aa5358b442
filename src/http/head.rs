//! HTTP/1.1 message heads: strict request parsing (RFC 9112) and upstream
//! response parsing, over a borrowed buffer, with no I/O.
//!
//! Header positions are kept as byte ranges into the caller's buffer, so a
//! parsed head borrows nothing and the buffer can be handed on. `httparse`
//! does the byte-level work (SIMD); this module adds what it leaves out:
//! bare-LF line endings, non-ASCII request-targets, the method registry, the
//! framing rules of RFC 9112 §6 (Content-Length / Transfer-Encoding), Host,
//! Connection, Upgrade and Expect, and the size limits.
//!
//! Reusing the header vector: `parse_request(buf, limits, &mut scratch)` takes
//! the vector out of `scratch` on success (no allocation once it has grown);
//! give it back with [`RequestHead::recycle`] when the request is done. On
//! error `scratch` is left in place.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Size limits for a request head and body (PRODUCT.md §2 `[server.limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head accepted, leading empty lines and the final CRLFCRLF
    /// included. Larger: [`ParseError::HeadTooLarge`] (431).
    pub max_header_bytes: usize,
    /// Most header fields accepted. More: [`ParseError::TooManyHeaders`] (431).
    /// Up to 128 are parsed without allocating.
    pub max_headers: usize,
    /// Largest declared Content-Length accepted. Larger:
    /// [`ParseError::BodyTooLarge`] (413). Chunked bodies are bounded by the
    /// caller through `ChunkedDecoder::new(max_body_bytes)`.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The request method. Methods outside this list but in the IANA registry
/// (plus a few widespread extensions: PURGE, M-SEARCH, …) are `Other`;
/// anything else is refused at parse time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
    Other,
}

/// How the message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes (may be 0).
    Length(u64),
    /// Chunked transfer coding: use `body::ChunkedDecoder`.
    Chunked,
    /// Responses only: the body runs until the server closes the connection.
    UntilClose,
}

/// A header field as ranges into the parsed buffer. `value` is trimmed of
/// leading and trailing OWS (SP / HTAB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderPos {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

impl HeaderPos {
    /// The field name as received (case preserved).
    #[inline]
    pub fn name_in<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name.clone()]
    }
    /// The trimmed field value.
    #[inline]
    pub fn value_in<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value.clone()]
    }
    /// Case-insensitive name comparison.
    #[inline]
    pub fn is(&self, buf: &[u8], name: &str) -> bool {
        self.name.len() == name.len()
            && buf[self.name.clone()].eq_ignore_ascii_case(name.as_bytes())
    }
}

/// Why a head could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The head is not complete yet: read more bytes and parse again.
    Incomplete,
    /// The head is larger than `max_header_bytes` (431).
    HeadTooLarge,
    /// More than `max_headers` header fields (431).
    TooManyHeaders,
    /// Declared Content-Length larger than `max_body_bytes` (413).
    BodyTooLarge,
    /// Malformed or ambiguous message (400, then close the connection;
    /// never forward). The string says why.
    Invalid(&'static str),
}

impl ParseError {
    /// The status to answer a client with. `Incomplete` is not an answer
    /// (read more); if the peer closes mid-head, 400 is what it maps to.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Incomplete | ParseError::Invalid(_) => 400,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::BodyTooLarge => 413,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete => f.write_str("incomplete message head"),
            ParseError::HeadTooLarge => f.write_str("message head too large"),
            ParseError::TooManyHeaders => f.write_str("too many header fields"),
            ParseError::BodyTooLarge => f.write_str("declared body too large"),
            ParseError::Invalid(why) => write!(f, "invalid message: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A parsed request head. All ranges index the buffer given to
/// [`parse_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub method_range: Range<usize>,
    /// The request-target as received, query (and any fragment) included.
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<HeaderPos>,
    /// Bytes of the head, leading empty lines and the final CRLFCRLF
    /// included: the body (or the next pipelined request) starts here.
    pub head_len: usize,
    pub framing: Framing,
    /// The authority to route on: the authority of an absolute-form target
    /// (`http://host:port/…`, userinfo dropped; RFC 9112 §3.2.2), the target
    /// of a CONNECT, or else the Host header value. `None` only for HTTP/1.0
    /// requests without Host.
    pub host: Option<Range<usize>>,
    /// HTTP/1.1: true unless `Connection: close`. HTTP/1.0: only with
    /// `Connection: keep-alive` (and no `close`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (ignored for 1.0,
    /// RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// HTTP/1.1 with an Upgrade header and `upgrade` in Connection, or a
    /// CONNECT request. Whether to honour it is the caller's policy.
    pub upgrade: bool,
    /// Transfer-Encoding lists codings below the final `chunked` (e.g.
    /// `gzip, chunked`): the de-chunked body is still coded with them.
    pub transfer_coded: bool,
    /// Which tokens its Connection headers list.
    pub conn_tokens: ConnTokens,
}

impl RequestHead {
    /// The first header named `name` (case-insensitive), trimmed value.
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        find_header(buf, &self.headers, name)
    }

    /// Every value of the headers named `name`, in order.
    pub fn headers_named<'a, 's>(
        &'s self,
        buf: &'a [u8],
        name: &'s str,
    ) -> impl Iterator<Item = &'a [u8]> + 's
    where
        'a: 's,
    {
        self.headers
            .iter()
            .filter(move |h| h.is(buf, name))
            .map(move |h| h.value_in(buf))
    }

    /// The method as received (e.g. `b"M-SEARCH"` for `Method::Other`).
    pub fn method_bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.method_range.clone()]
    }

    /// The request-target as received (visible ASCII only: checked).
    pub fn target_str<'a>(&self, buf: &'a [u8]) -> &'a str {
        std::str::from_utf8(&buf[self.target.clone()]).unwrap_or_default()
    }

    /// The path, without query or fragment. For an absolute-form target
    /// this is the path part of the URI (`/` when it has none); for `*` it
    /// is `*`; for a CONNECT (authority-form) target it is empty.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a str {
        let t = self.target_str(buf);
        let from_path = match t.as_bytes().first() {
            Some(b'/') | Some(b'*') => t,
            _ if self.method == Method::Connect => return "",
            _ => match absolute_authority(t.as_bytes()) {
                Some(auth) => {
                    let rest = &t[auth.end..];
                    if rest.is_empty() || rest.starts_with('?') || rest.starts_with('#') {
                        return "/";
                    }
                    rest
                }
                None => t,
            },
        };
        let end = from_path.find(['?', '#']).unwrap_or(from_path.len());
        &from_path[..end]
    }

    /// The query (without `?`, without any fragment), if the target has one.
    pub fn query<'a>(&self, buf: &'a [u8]) -> Option<&'a str> {
        let t = self.target_str(buf);
        let t = &t[..t.find('#').unwrap_or(t.len())];
        t.find('?').map(|q| &t[q + 1..])
    }

    /// The routing authority (see [`RequestHead::host`]).
    pub fn host_bytes<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.host.clone().map(|r| &buf[r])
    }

    /// Whether a body follows the head.
    pub fn has_body(&self) -> bool {
        match self.framing {
            Framing::None | Framing::Length(0) => false,
            Framing::Length(_) | Framing::Chunked | Framing::UntilClose => true,
        }
    }

    /// Whether header `name` is listed in this request's Connection header
    /// (and so hop-by-hop for this message).
    pub fn connection_lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.conn_tokens
            .lists(name, || connection_lists(buf, &self.headers, name))
    }

    /// Hands the header vector back for the next parse (no allocation).
    pub fn recycle(self, scratch: &mut Vec<HeaderPos>) {
        *scratch = self.headers;
    }
}

/// A parsed response head. All ranges index the buffer given to
/// [`parse_response`].
///
/// Interim responses: a `1xx` other than `101` ([`ResponseHead::is_interim`])
/// is not the answer. The caller drops (or relays) its `head_len` bytes and
/// parses again from there until a final response arrives. `101 Switching
/// Protocols` is final: the connection becomes a tunnel after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub minor_version: u8,
    pub headers: Vec<HeaderPos>,
    pub head_len: usize,
    pub framing: Framing,
    /// Whether the upstream connection can be reused after this response.
    pub keep_alive: bool,
    /// Transfer-Encoding lists codings below the final `chunked`.
    pub transfer_coded: bool,
    /// Which tokens its Connection headers list.
    pub conn_tokens: ConnTokens,
}

impl ResponseHead {
    /// The first header named `name` (case-insensitive), trimmed value.
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        find_header(buf, &self.headers, name)
    }

    /// A 1xx response that precedes the final one (100 Continue, 103 Early
    /// Hints, …). 101 is not interim.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Whether header `name` is listed in this response's Connection header.
    pub fn connection_lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.conn_tokens
            .lists(name, || connection_lists(buf, &self.headers, name))
    }

    /// Hands the header vector back for the next parse (no allocation).
    pub fn recycle(self, scratch: &mut Vec<HeaderPos>) {
        *scratch = self.headers;
    }
}

/// The tokens a message's Connection headers list, as far as the parse
/// knows them: enough to answer [`connection_lists`] without a scan unless
/// an unusual token is listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnTokens(u8);

impl ConnTokens {
    const CLOSE: u8 = 1;
    const KEEP_ALIVE: u8 = 2;
    const UPGRADE: u8 = 4;
    const OTHER: u8 = 8;

    fn has(self, token: u8) -> bool {
        self.0 & token != 0
    }

    /// Whether `name` is listed; `scan` answers when other tokens are.
    #[inline]
    fn lists(self, name: &[u8], scan: impl FnOnce() -> bool) -> bool {
        if self.has(Self::OTHER) {
            return scan();
        }
        (self.has(Self::CLOSE) && name.eq_ignore_ascii_case(b"close"))
            || (self.has(Self::KEEP_ALIVE) && name.eq_ignore_ascii_case(b"keep-alive"))
            || (self.has(Self::UPGRADE) && name.eq_ignore_ascii_case(b"upgrade"))
    }
}

/// Hop-by-hop header names (RFC 9110 §7.6.1), case-insensitive. Headers
/// named in a message's Connection header are hop-by-hop too: see
/// [`connection_lists`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    #[rustfmt::skip]
    const HOP: [&[u8]; 9] = [
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
    ];
    HOP.iter()
        .any(|h| h.len() == name.len() && h.eq_ignore_ascii_case(name))
}

/// Whether `name` is one of the comma-separated tokens of any Connection
/// header among `headers` (case-insensitive).
pub fn connection_lists(buf: &[u8], headers: &[HeaderPos], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.is(buf, "connection"))
        .any(|h| list_elements(h.value_in(buf)).any(|t| t.eq_ignore_ascii_case(name)))
}

/// Header vectors kept on the stack up to this many fields.
const STACK_HEADERS: usize = 128;
/// Most header fields accepted in an upstream response.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// Parses a request head at the start of `buf`.
///
/// `buf` may hold more than the head (body bytes, pipelined requests): the
/// head ends at `head_len`. Leading empty lines (CRLF) are skipped
/// (RFC 9112 §2.2). On success the header vector is taken out of `scratch`
/// (cleared, then filled); see [`RequestHead::recycle`].
///
/// Refused with `Invalid` (400, close): bare CR or bare LF line endings,
/// obs-fold, whitespace before a colon, non-token method or field name,
/// methods outside the registry, control bytes in values (HTAB allowed),
/// an empty or non-ASCII request-target or one of a form the method does
/// not allow, versions other than HTTP/1.0 and HTTP/1.1, Content-Length
/// that is not digits (or a list of one repeated value) or overflows,
/// differing Content-Lengths, Content-Length with Transfer-Encoding,
/// Transfer-Encoding whose last coding is not `chunked`, with `chunked`
/// twice, with unknown codings, or on HTTP/1.0, CONNECT with content, an
/// HTTP/1.1 request without Host, more than one Host, or an invalid Host.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    scratch: &mut Vec<HeaderPos>,
) -> Result<RequestHead, ParseError> {
    parse_request_impl(buf, limits, scratch, true)
}

/// [`parse_request`] without the "HTTP/1.1 needs a Host" rule: used by the
/// corpus tests, whose framing cases mostly omit Host.
#[cfg(test)]
pub(crate) fn parse_request_any_host(
    buf: &[u8],
    limits: &Limits,
    scratch: &mut Vec<HeaderPos>,
) -> Result<RequestHead, ParseError> {
    parse_request_impl(buf, limits, scratch, false)
}

/// The `Invalid` reason given for an HTTP/1.1 request without Host.
pub const MISSING_HOST: &str = "HTTP/1.1 request without Host";

fn parse_request_impl(
    buf: &[u8],
    limits: &Limits,
    scratch: &mut Vec<HeaderPos>,
    require_host: bool,
) -> Result<RequestHead, ParseError> {
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let mut stack: [MaybeUninit<httparse::Header<'_>>; STACK_HEADERS] =
        [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(window, slots);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // What has arrived is well-formed as far as httparse goes; refuse
            // early what it lets through.
            check_line_endings(window)?;
            match req.method {
                Some(m) => {
                    classify_method(m.as_bytes())?;
                }
                None => check_method_prefix(window)?,
            }
            if let Some(p) = req.path {
                if !p.is_ascii() {
                    return Err(ParseError::Invalid("non-ASCII byte in request-target"));
                }
            }
            return Err(if window.len() >= limits.max_header_bytes {
                ParseError::HeadTooLarge
            } else {
                ParseError::Incomplete
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(e) => return Err(refine(e, window)),
    };

    // httparse has set these on Complete.
    let (Some(method_str), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Invalid("malformed request line"));
    };
    let method = classify_method(method_str.as_bytes())?;
    let method_range = offset_of(buf, method_str.as_bytes());
    let target = offset_of(buf, path.as_bytes());
    let target_bytes = path.as_bytes();
    if !target_bytes.is_ascii() {
        return Err(ParseError::Invalid("non-ASCII byte in request-target"));
    }
    let target_authority = check_target_form(method, target_bytes)?;

    let (headers, f) = collect_headers(buf, req.headers, scratch)?;
    let checked = check_complete_line_endings(&buf[..head_len], method_range.start, &headers)
        .and_then(|()| request_framing(&f, limits, require_host, method, version));
    match checked {
        Ok(framing) => Ok(RequestHead {
            method,
            method_range,
            host: match target_authority {
                Some(a) => Some(target.start + a.start..target.start + a.end),
                None => f.host.clone(),
            },
            target,
            minor_version: version,
            headers,
            head_len,
            framing,
            keep_alive: f.keep_alive(version),
            expect_continue: version == 1 && f.expect_continue,
            upgrade: method == Method::Connect
                || (version == 1 && f.conn_tokens.has(ConnTokens::UPGRADE) && f.upgrade_present),
            transfer_coded: f.te.other,
            conn_tokens: f.conn_tokens,
        }),
        Err(e) => {
            *scratch = headers;
            Err(e)
        }
    }
}

/// Records the header positions (in the vector taken from `scratch`) and
/// the framing-relevant fields. On error `scratch` keeps its vector.
fn collect_headers(
    buf: &[u8],
    parsed: &[httparse::Header<'_>],
    scratch: &mut Vec<HeaderPos>,
) -> Result<(Vec<HeaderPos>, Fields), ParseError> {
    scratch.clear();
    let mut f = Fields::default();
    for h in parsed {
        let pos = HeaderPos {
            name: offset_of(buf, h.name.as_bytes()),
            value: offset_of(buf, h.value),
        };
        f.note(h.name.as_bytes(), h.value, &pos)?;
        scratch.push(pos);
    }
    Ok((std::mem::take(scratch), f))
}

/// The framing rules of RFC 9112 §6 for a request, strictly.
fn request_framing(
    f: &Fields,
    limits: &Limits,
    require_host: bool,
    method: Method,
    version: u8,
) -> Result<Framing, ParseError> {
    let invalid = |why| Err(ParseError::Invalid(why));
    if f.host_count > 1 {
        return invalid("more than one Host header");
    }
    if version == 1 && f.host_count == 0 && require_host {
        return invalid(MISSING_HOST);
    }
    if method == Method::Connect && (f.te.present || f.content_length.is_some()) {
        return invalid("CONNECT request with content");
    }
    if f.te.present {
        return if version == 0 {
            // RFC 9112 §6.1: the framing of such a message is faulty.
            invalid("Transfer-Encoding in an HTTP/1.0 request")
        } else if f.content_length.is_some() {
            invalid("both Content-Length and Transfer-Encoding")
        } else if f.te.unknown {
            invalid("unknown transfer-coding")
        } else if f.te.chunked_count > 1 {
            invalid("chunked applied more than once")
        } else if !f.te.last_chunked {
            invalid("chunked is not the final transfer-coding")
        } else {
            Ok(Framing::Chunked)
        };
    }
    match f.content_length {
        Some(n) if n > limits.max_body_bytes => Err(ParseError::BodyTooLarge),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::None),
    }
}

/// Parses an upstream response head at the start of `buf`, for a request
/// made with `request_method` (a HEAD request's response has no body; a 2xx
/// to CONNECT starts a tunnel). At most [`MAX_RESPONSE_HEADERS`] fields.
///
/// Framing (RFC 9112 §6.3): HEAD, 1xx, 204, 304 and 2xx-to-CONNECT → `None`;
/// Transfer-Encoding ending in `chunked` → `Chunked` (with a Content-Length
/// too: `Chunked` and `keep_alive = false`); Transfer-Encoding not ending in
/// `chunked` → `UntilClose`; Content-Length → `Length`; else `UntilClose`.
/// `UntilClose` always means `keep_alive = false`. Differing or malformed
/// Content-Length, `chunked` twice, bare CR/LF, obs-fold and control bytes
/// are `Invalid` (a 502 for the client, the connection dropped).
pub fn parse_response(
    buf: &[u8],
    request_method: Method,
    max_header_bytes: usize,
    scratch: &mut Vec<HeaderPos>,
) -> Result<ResponseHead, ParseError> {
    let window = &buf[..buf.len().min(max_header_bytes)];
    let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_RESPONSE_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, window, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_line_endings(window)?;
            return Err(if window.len() >= max_header_bytes {
                ParseError::HeadTooLarge
            } else {
                ParseError::Incomplete
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(e) => return Err(refine(e, window)),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(ParseError::Invalid("malformed status line"));
    };
    if !(100..=599).contains(&status) {
        return Err(ParseError::Invalid("invalid status code"));
    }

    let (headers, f) = collect_headers(buf, resp.headers, scratch)?;
    let first_line = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let checked = check_complete_line_endings(&buf[..head_len], first_line, &headers);
    let checked = if checked.is_ok() && f.te.present && f.te.chunked_count > 1 {
        Err(ParseError::Invalid("chunked applied more than once"))
    } else {
        checked
    };
    if let Err(e) = checked {
        *scratch = headers;
        return Err(e);
    }

    let mut keep_alive = f.keep_alive(version);
    let no_body = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == Method::Connect && (200..300).contains(&status));
    let framing = if no_body {
        Framing::None
    } else if f.te.present {
        if f.content_length.is_some() {
            // RFC 9112 §6.3 (3): Transfer-Encoding wins; never reuse.
            keep_alive = false;
        }
        if f.te.last_chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = f.content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(ResponseHead {
        status,
        minor_version: version,
        headers,
        head_len,
        framing,
        keep_alive,
        transfer_coded: f.te.other && f.te.last_chunked,
        conn_tokens: f.conn_tokens,
    })
}

// ---------------------------------------------------------------------------
// Header semantics

#[derive(Default)]
struct TeState {
    present: bool,
    last_chunked: bool,
    chunked_count: u32,
    /// Known codings other than chunked (gzip, deflate, …) were listed.
    other: bool,
    /// Unknown codings were listed (refused in requests).
    unknown: bool,
}

#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    te: TeState,
    host_count: u32,
    host: Option<Range<usize>>,
    /// Which tokens the Connection headers list.
    conn_tokens: ConnTokens,
    upgrade_present: bool,
    expect_continue: bool,
}

impl Fields {
    /// HTTP/1.1: unless `close`; HTTP/1.0: only with `keep-alive`.
    fn keep_alive(&self, version: u8) -> bool {
        let t = self.conn_tokens;
        !t.has(ConnTokens::CLOSE) && (version == 1 || t.has(ConnTokens::KEEP_ALIVE))
    }

    /// Records the framing- and connection-relevant meaning of one field.
    #[inline]
    fn note(&mut self, name: &[u8], value: &[u8], pos: &HeaderPos) -> Result<(), ParseError> {
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count += 1;
                if !value.iter().all(|&b| is_host_char(b)) {
                    return Err(ParseError::Invalid("invalid Host header"));
                }
                self.host = Some(pos.value.clone());
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => self.upgrade_present = true,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in list_elements(value) {
                    self.conn_tokens.0 |= if token.eq_ignore_ascii_case(b"close") {
                        ConnTokens::CLOSE
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        ConnTokens::KEEP_ALIVE
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        ConnTokens::UPGRADE
                    } else {
                        ConnTokens::OTHER
                    };
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_content_length(value)?;
                match self.content_length {
                    Some(prev) if prev != n => {
                        return Err(ParseError::Invalid("differing Content-Length values"));
                    }
                    _ => self.content_length = Some(n),
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => self.note_te(value)?,
            _ => {}
        }
        Ok(())
    }

    fn note_te(&mut self, value: &[u8]) -> Result<(), ParseError> {
        self.te.present = true;
        if value.is_empty() {
            return Err(ParseError::Invalid("empty Transfer-Encoding"));
        }
        for coding in value.split(|&b| b == b',') {
            let coding = trim_ows(coding);
            if coding.is_empty() {
                return Err(ParseError::Invalid("empty element in Transfer-Encoding"));
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.te.chunked_count += 1;
                self.te.last_chunked = true;
            } else {
                self.te.last_chunked = false;
                const KNOWN: [&[u8]; 6] = [
                    b"gzip",
                    b"deflate",
                    b"compress",
                    b"x-gzip",
                    b"x-compress",
                    b"br",
                ];
                if KNOWN.iter().any(|k| k.eq_ignore_ascii_case(coding)) {
                    self.te.other = true;
                } else {
                    self.te.unknown = true;
                }
            }
        }
        Ok(())
    }
}

/// `1*DIGIT`, or a comma-separated list of one repeated value (RFC 9110
/// §8.6). Overflow, empty elements and anything else are refused.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let mut result: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() {
            return Err(ParseError::Invalid("invalid Content-Length"));
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return Err(ParseError::Invalid("invalid Content-Length"));
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(ParseError::Invalid("Content-Length overflow"))?;
        }
        match result {
            Some(prev) if prev != n => {
                return Err(ParseError::Invalid("differing Content-Length values"));
            }
            _ => result = Some(n),
        }
    }
    result.ok_or(ParseError::Invalid("invalid Content-Length"))
}

/// Non-empty comma-separated list elements, OWS trimmed.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

#[inline]
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn find_header<'a>(buf: &'a [u8], headers: &[HeaderPos], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.is(buf, name))
        .map(|h| h.value_in(buf))
}

/// uri-host [ ":" port ]: reg-name / IPv4 / IP-literal characters.
#[inline]
fn is_host_char(b: u8) -> bool {
    HOST_CHARS[usize::from(b)]
}

static HOST_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            );
        i += 1;
    }
    t
};

// ---------------------------------------------------------------------------
// Request line

/// Registered methods beyond the enum's (IANA HTTP Method Registry, plus
/// PURGE, M-SEARCH, NOTIFY, SUBSCRIBE, UNSUBSCRIBE, LINK, UNLINK, SOURCE).
#[rustfmt::skip]
const OTHER_METHODS: [&[u8]; 36] = [
    b"ACL", b"BASELINE-CONTROL", b"BIND", b"CHECKIN", b"CHECKOUT", b"COPY",
    b"LABEL", b"LINK", b"LOCK", b"MERGE", b"MKACTIVITY", b"MKCALENDAR",
    b"MKCOL", b"MKREDIRECTREF", b"MKWORKSPACE", b"MOVE", b"ORDERPATCH", b"PROPFIND",
    b"PROPPATCH", b"QUERY", b"REBIND", b"REPORT", b"SEARCH", b"UNBIND",
    b"UNCHECKOUT", b"UNLINK", b"UNLOCK", b"UPDATE", b"UPDATEREDIRECTREF", b"VERSION-CONTROL",
    b"PURGE", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE", b"UNSUBSCRIBE", b"SOURCE",
];

/// Methods are case-sensitive (RFC 9110 §9.1).
#[inline]
fn classify_method(m: &[u8]) -> Result<Method, ParseError> {
    Ok(match m {
        b"GET" => Method::Get,
        b"POST" => Method::Post,
        b"HEAD" => Method::Head,
        b"PUT" => Method::Put,
        b"PATCH" => Method::Patch,
        b"DELETE" => Method::Delete,
        b"OPTIONS" => Method::Options,
        b"CONNECT" => Method::Connect,
        b"TRACE" => Method::Trace,
        b"PRI" => {
            return Err(ParseError::Invalid(
                "HTTP/2 connection preface (PRI) on HTTP/1.1",
            ))
        }
        _ if OTHER_METHODS.contains(&m) => Method::Other,
        _ => return Err(ParseError::Invalid("unknown method")),
    })
}

/// While the method is still arriving: refuses early when no known method
/// starts with the bytes so far (e.g. a TLS handshake on a plaintext port).
fn check_method_prefix(window: &[u8]) -> Result<(), ParseError> {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let so_far = &window[start..];
    const MAIN: [&[u8]; 10] = [
        b"GET", b"POST", b"HEAD", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE",
        b"PRI",
    ];
    if so_far.is_empty()
        || MAIN
            .iter()
            .chain(OTHER_METHODS.iter())
            .any(|m| m.starts_with(so_far))
    {
        Ok(())
    } else {
        Err(ParseError::Invalid("unknown method"))
    }
}

/// Checks the request-target form against the method (RFC 9112 §3.2) and
/// returns the authority range (relative to the target) for absolute-form
/// and authority-form targets.
fn check_target_form(method: Method, t: &[u8]) -> Result<Option<Range<usize>>, ParseError> {
    if method == Method::Connect {
        // authority-form: uri-host ":" port
        let colon = t.iter().rposition(|&b| b == b':');
        return match colon {
            Some(c)
                if c > 0
                    && c + 1 < t.len()
                    && t[c + 1..].iter().all(u8::is_ascii_digit)
                    && t[..c].iter().all(|&b| is_host_char(b)) =>
            {
                Ok(Some(0..t.len()))
            }
            _ => Err(ParseError::Invalid("CONNECT target is not host:port")),
        };
    }
    match t.first() {
        Some(b'/') => Ok(None),
        Some(b'*') if t.len() == 1 => Ok(None),
        _ => match absolute_authority(t) {
            Some(a) if !a.is_empty() => {
                let auth = &t[a.clone()];
                // Drop userinfo (RFC 9110 §4.2.4 deprecates it).
                let start = auth.iter().rposition(|&b| b == b'@').map_or(0, |i| i + 1);
                if start == auth.len() || !auth[start..].iter().all(|&b| is_host_char(b)) {
                    return Err(ParseError::Invalid("invalid authority in request-target"));
                }
                Ok(Some(a.start + start..a.end))
            }
            _ => Err(ParseError::Invalid("invalid request-target")),
        },
    }
}

/// For `http://…` / `https://…` (scheme case-insensitive), the range of the
/// authority (userinfo included).
fn absolute_authority(t: &[u8]) -> Option<Range<usize>> {
    let after = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return None;
    };
    let end = t[after..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(t.len(), |p| after + p);
    Some(after..end)
}

// ---------------------------------------------------------------------------
// Byte-level helpers

/// Every LF must be preceded by CR. (httparse refuses bare CR itself but
/// accepts bare LF as a line ending.)
#[inline]
fn check_line_endings(head: &[u8]) -> Result<(), ParseError> {
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return Err(ParseError::Invalid("bare LF line ending"));
        }
    }
    Ok(())
}

/// The reason for an httparse error, made more telling when the line
/// endings of the head are what is wrong.
fn refine(e: httparse::Error, window: &[u8]) -> ParseError {
    let head = memchr::memmem::find(window, b"\r\n\r\n").map_or(window, |p| &window[..p + 4]);
    if let Err(bare_lf) = check_line_endings(head) {
        return bare_lf;
    }
    for i in memchr::memchr_iter(b'\r', head) {
        if head.get(i + 1).is_some_and(|&b| b != b'\n') {
            return ParseError::Invalid("bare CR");
        }
    }
    ParseError::Invalid(httparse_reason(e))
}

/// [`check_line_endings`] for a head httparse accepted whole, in O(lines).
/// httparse refuses a CR not followed by LF, obs-fold and LF inside a
/// line, so every LF of such a head ends a leading empty line, the start
/// line, a field line (then a field name follows it) or the final empty
/// line; each of those only needs a look at the byte before it.
#[inline]
fn check_complete_line_endings(
    head: &[u8],
    first_line: usize,
    headers: &[HeaderPos],
) -> Result<(), ParseError> {
    let crlf_before = |at: usize| at >= 2 && head[at - 2] == b'\r' && head[at - 1] == b'\n';
    let ok = head.ends_with(b"\r\n\r\n")
        && headers.iter().all(|h| crlf_before(h.name.start))
        && first_line.is_multiple_of(2)
        && head[..first_line].chunks(2).all(|p| p == b"\r\n");
    debug_assert_eq!(ok, check_line_endings(head).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ParseError::Invalid("bare LF line ending"))
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "invalid header field name (or obs-fold, or whitespace before colon)"
        }
        httparse::Error::HeaderValue => "invalid byte in header field value",
        httparse::Error::NewLine => "invalid line ending (bare CR)",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid method or request-target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

/// The range of `part` (a subslice of `buf`) within `buf`.
#[inline]
fn offset_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    debug_assert!(start <= buf.len() && start + part.len() <= buf.len());
    start..start + part.len()
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
