//! A client connection's keep-alive loop: read each request head (with
//! the idle and header deadlines), hand it to the request pipeline, and
//! close when the pipeline, the client or a drain says so.

use crate::client::{Client, INITIAL_BUFFER, MAX_IDLE_BUFFER};
use crate::config::catalog::Protocol;
use crate::error::{Error, Kind};
use crate::http::head::{self, ParseError, RequestHead};
use crate::http::write;
use crate::snapshot::{EdgeLimits, Snapshot};
use crate::worker::Worker;
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

enum HeadRead {
    Head(RequestHead),
    Closed,
    Refuse(Error),
    /// An HTTP/2 client's connection preface.
    Http2,
}

/// An HTTP/2 client gets an answer it can read (RFC 9113 §3.4, §6.8): the
/// server's preface (an empty SETTINGS frame), then GOAWAY with
/// HTTP_1_1_REQUIRED, until HTTP/2 is served.
const HTTP2_REFUSAL: [u8; 26] = [
    0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, no parameters, stream 0
    0, 0, 8, 7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, // last stream id 0
    0, 0, 0, 0x0d, // HTTP_1_1_REQUIRED
];

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
                // RFC 9112 §6.1: a coding the gateway does not decode.
                Ok(h) if h.transfer_coded => {
                    return HeadRead::Refuse(Error::new(
                        Kind::NotImplemented,
                        "transfer-codings other than chunked are not supported",
                    ))
                }
                Ok(h) => return HeadRead::Head(h),
                Err(ParseError::Incomplete) => {}
                Err(_) if c.inbuf.starts_with(b"PRI * HTTP/2") => return HeadRead::Http2,
                Err(e) => return HeadRead::Refuse(e.into()),
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
            None if c.inbuf.is_empty() => {
                c.read_idle(&w.shutdown, idle_since + edge.idle_timeout)
                    .await
            }
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

/// The protocol of the Model API a refused head was for, read best-effort
/// from what of the head parses (a refusal's path only).
fn refusal_protocol(snap: &Snapshot, buf: &[u8]) -> Protocol {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    // A head refused for its size or header count still names its target.
    let _ = req.parse(buf);
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Protocol::Openai;
    };
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .unwrap_or("");
    let path = target.split('?').next().unwrap_or(target);
    match crate::route::api::find(snap, host, method, path) {
        Ok(m) => snap.apis[m.api].protocol,
        Err((Some(api), _)) => snap.apis[api].protocol,
        Err((None, _)) => Protocol::Openai,
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
    let mut c = Client::new(stream, peer, session, idle_since);
    let mut scratch = Vec::with_capacity(32);
    loop {
        let snap = w.snapshot();
        let head = match read_head(w, &mut c, &snap.edge, &mut scratch, idle_since).await {
            HeadRead::Head(h) => h,
            HeadRead::Closed => return,
            HeadRead::Http2 => {
                if c.write(HTTP2_REFUSAL.to_vec()).await.0.is_ok() {
                    c.linger_close().await;
                }
                return;
            }
            HeadRead::Refuse(e) => {
                // The Model API's shape when the request line and Host
                // say which; else OpenAI's, the common one.
                let protocol = refusal_protocol(&snap, &c.inbuf);
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
                    &crate::protocol::error_body(protocol, &e, &id),
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
