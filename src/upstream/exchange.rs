//! One attempt against one service: take a pooled connection (or open
//! one), send the request, and read the response head — plus, for streams
//! with a first packet timeout, the first body bytes.

use super::connect::ReadError;
use super::Endpoint;
use super::{connect, Conn};
use crate::conn::{client_gone, Client, Rest};
use crate::error::{Error, Kind};
use crate::http::head::{self, Method, ParseError, ResponseHead};
use crate::snapshot::Service;
use crate::worker::Worker;
use std::io;
use std::time::{Duration, Instant};

pub struct Response {
    pub conn: Conn,
    pub head: ResponseHead,
    /// The head bytes followed by whatever body bytes came with them.
    pub buf: Vec<u8>,
}

/// What to send: the request head and held body, and maybe a rest still
/// on the client socket.
pub struct Request<'a> {
    pub bytes: Vec<u8>,
    pub method: Method,
    pub rest: Option<(&'a mut Client, &'a mut Rest)>,
    /// For streams: the longest wait for the first body bytes.
    pub first_packet: Option<Duration>,
}

enum Failure {
    /// Nothing came back on a reused connection: the server had closed it.
    Stale,
    Failed(Error),
}

pub async fn exchange(w: &Worker, svc: &Service, req: &mut Request<'_>) -> Result<Response, Error> {
    let up = svc.endpoint().expect("remote service");
    // A pooled connection may have been closed by the server while idle;
    // that shows as a failure before any response byte, retried once fresh.
    if let Some(conn) = w.pool.take(&up.pool_key) {
        match roundtrip(w, conn, svc, req).await {
            Ok(r) => return Ok(r),
            Err(Failure::Failed(e)) => return Err(e),
            Err(Failure::Stale) => {}
        }
    }
    let conn = open(w, svc, up).await?;
    match roundtrip(w, conn, svc, req).await {
        Ok(r) => Ok(r),
        Err(Failure::Failed(e)) => Err(e),
        Err(Failure::Stale) => Err(Error::new(
            Kind::UpstreamProtocol,
            format!(
                "service {} closed the connection without answering",
                svc.name
            ),
        )),
    }
}

async fn open(w: &Worker, svc: &Service, up: &Endpoint) -> Result<Conn, Error> {
    connect(up, w.next_addr(), svc.connect_timeout)
        .await
        .map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::TimedOut {
                Kind::UpstreamTimeout
            } else {
                Kind::UpstreamConnect
            };
            Error::new(
                kind,
                format!("service {}: connect to {}: {e}", svc.name, up.host),
            )
        })
}

async fn roundtrip(
    w: &Worker,
    mut conn: Conn,
    svc: &Service,
    req: &mut Request<'_>,
) -> Result<Response, Failure> {
    let (res, bytes) = conn.write_all(std::mem::take(&mut req.bytes)).await;
    req.bytes = bytes;
    if res.is_err() {
        return Err(Failure::Stale);
    }
    if let Some((client, rest)) = req.rest.as_mut() {
        pump_rest(client, rest, &mut conn, svc)
            .await
            .map_err(Failure::Failed)?;
    }
    let started = Instant::now();
    let mut buf = w.buffer();
    let mut scratch = Vec::with_capacity(32);
    // Each read waits `svc.timeout`, and the first packet timeout bounds
    // them all; the clock is read again only when a head comes in parts.
    let mut now = started;
    let head = loop {
        let wait = match req.first_packet {
            Some(fp) => fp.saturating_sub(now - started).min(svc.timeout),
            None => svc.timeout,
        };
        let deadline = now + wait;
        let fp = req.first_packet.is_some();
        let n = read_upstream(&mut conn, &mut buf, deadline, svc, fp).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                Failure::Stale
            } else {
                protocol_error(svc, "closed mid-head")
            });
        }
        match head::parse_response(&buf, req.method, 64 * 1024, &mut scratch) {
            Ok(h) if h.status < 200 && h.status != 101 => {
                // Interim response (100 Continue): skip it.
                buf.drain(..h.head_len);
                now = Instant::now();
            }
            Ok(h) => break h,
            Err(ParseError::Incomplete) => now = Instant::now(),
            Err(e) => {
                return Err(protocol_error(
                    svc,
                    &format!("bad response head: {}", crate::conn::parse_error(e).message),
                ))
            }
        }
    };
    // Hold the head back until the first body bytes, so a first packet
    // timeout can still fall back.
    let awaiting_body = head.framing != head::Framing::None && buf.len() == head.head_len;
    if let (Some(fp), true) = (req.first_packet, awaiting_body && head.status < 300) {
        let n = read_upstream(&mut conn, &mut buf, started + fp, svc, true).await?;
        if n == 0 {
            return Err(protocol_error(svc, "closed before the first body byte"));
        }
    }
    Ok(Response { conn, head, buf })
}

/// Appends upstream bytes to `buf`, bounded by `wait`.
async fn read_upstream(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    deadline: Instant,
    svc: &Service,
    first_packet: bool,
) -> Result<usize, Failure> {
    match conn.read_append_until(buf, deadline).await {
        Ok(n) => Ok(n),
        Err(ReadError::Io(_)) => {
            if buf.is_empty() {
                Err(Failure::Stale)
            } else {
                Err(protocol_error(svc, "connection reset mid-head"))
            }
        }
        Err(ReadError::TimedOut) if first_packet => Err(Failure::Failed(Error::new(
            Kind::FirstPacketTimeout,
            format!(
                "service {}: no first packet within the first packet timeout",
                svc.name
            ),
        ))),
        Err(ReadError::TimedOut) => Err(Failure::Failed(Error::new(
            Kind::UpstreamTimeout,
            format!(
                "service {}: no response within {} ms",
                svc.name,
                svc.timeout.as_millis()
            ),
        ))),
    }
}

fn protocol_error(svc: &Service, what: &str) -> Failure {
    Failure::Failed(Error::new(
        Kind::UpstreamProtocol,
        format!("service {}: {what}", svc.name),
    ))
}

/// Streams the part of a large request body still on the client socket.
async fn pump_rest(
    client: &mut Client,
    rest: &mut Rest,
    conn: &mut Conn,
    svc: &Service,
) -> Result<(), Error> {
    use crate::http::body::{write_chunk_header, LAST_CHUNK};
    let idle = Duration::from_secs(60);
    let upstream_gone =
        |e: io::Error| Error::new(Kind::UpstreamConnect, format!("service {}: {e}", svc.name));
    let mut out = Vec::with_capacity(16 * 1024 + 16);
    loop {
        out.clear();
        let done = match rest {
            Rest::Length(0) => true,
            Rest::Length(left) => {
                if client.inbuf.is_empty()
                    && client.read_more(idle).await.map_err(client_gone)? == 0
                {
                    return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
                }
                let take = (*left as usize).min(client.inbuf.len());
                out.extend_from_slice(&client.inbuf[..take]);
                client.consume(take);
                *left -= take as u64;
                false
            }
            Rest::Chunked(decoder) => {
                if client.inbuf.is_empty()
                    && client.read_more(idle).await.map_err(client_gone)? == 0
                {
                    return Err(client_gone(io::ErrorKind::UnexpectedEof.into()));
                }
                let mut data = Vec::new();
                let p = decoder
                    .decode(&client.inbuf, |d| data.extend_from_slice(d))
                    .map_err(|e| {
                        Error::new(Kind::BadRequest, format!("malformed chunked body: {e:?}"))
                    })?;
                client.consume(p.consumed);
                if !data.is_empty() {
                    write_chunk_header(data.len(), &mut out);
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
                if p.done {
                    out.extend_from_slice(LAST_CHUNK);
                }
                p.done
            }
        };
        if !out.is_empty() {
            let (res, b) = conn.write_all(out).await;
            out = b;
            res.map_err(upstream_gone)?;
        }
        if done {
            return Ok(());
        }
    }
}
