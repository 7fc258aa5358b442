//! Writes response and request heads. Heads are always rebuilt from parsed
//! parts: raw client bytes are never forwarded.

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// How a message body is framed on the wire we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyHeader {
    Length(u64),
    Chunked,
    /// No body and no framing header (HEAD answers, 204, 304).
    Omit,
}

/// Accumulates one head. Header names are written as given.
pub struct HeadWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> HeadWriter<'a> {
    pub fn response(out: &'a mut Vec<u8>, status: u16) -> Self {
        out.extend_from_slice(b"HTTP/1.1 ");
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        HeadWriter { out }
    }

    pub fn request(out: &'a mut Vec<u8>, method: &[u8], target: &[u8]) -> Self {
        out.extend_from_slice(method);
        out.push(b' ');
        out.extend_from_slice(target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        HeadWriter { out }
    }

    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// A header whose value is `parts` joined (no formatting machinery).
    pub fn header_parts(&mut self, name: &[u8], parts: &[&[u8]]) -> &mut Self {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        for p in parts {
            self.out.extend_from_slice(p);
        }
        self.out.extend_from_slice(b"\r\n");
        self
    }

    pub fn body(&mut self, framing: BodyHeader) -> &mut Self {
        match framing {
            BodyHeader::Length(n) => {
                let mut b = itoa::Buffer::new();
                self.header(b"content-length", b.format(n).as_bytes())
            }
            BodyHeader::Chunked => self.header(b"transfer-encoding", b"chunked"),
            BodyHeader::Omit => self,
        }
    }

    /// Ends the head.
    pub fn finish(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// A whole small response (gateway errors, health answers).
pub fn simple_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    request_id: &str,
    close: bool,
    body: &[u8],
) {
    let mut w = HeadWriter::response(out, status);
    w.header(b"content-type", content_type.as_bytes());
    w.header(b"x-request-id", request_id.as_bytes());
    if close {
        w.header(b"connection", b"close");
    }
    w.body(BodyHeader::Length(body.len() as u64));
    w.finish();
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_head_bytes() {
        let mut out = Vec::new();
        simple_response(&mut out, 404, "application/json", "rid", true, b"{}");
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-request-id: rid\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn request_head_bytes() {
        let mut out = Vec::new();
        let mut w = HeadWriter::request(&mut out, b"POST", b"/v1/chat/completions");
        w.header(b"host", b"api.openai.com")
            .body(BodyHeader::Chunked);
        w.finish();
        assert_eq!(
            out,
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
