//! One attempt's exchange with a service: lease a connection (a pooled one
//! still open, else a new one), send the request — head and held body,
//! then the rest of a streamed body from the [`BodySource`] it is handed —
//! and read the answer's head: interim (1xx) answers skipped, the whole
//! wait bounded by the service's timeout; for streams with a first packet
//! timeout, also the first body bytes.
//!
//! Nothing is sent twice here: a pooled connection is only given up for a
//! fresh one while the request could not have reached the service (the
//! write failed). Whether another attempt follows is the attempt engine's
//! call.

use super::connect::ReadError;
use super::pool::{Lease, Pool};
use super::{connect, Endpoint};
use crate::error::{Error, Kind};
use crate::http::head::{self, Method, ParseError, ResponseHead};
use std::io;
use std::time::{Duration, Instant};

/// Largest upstream response head.
const MAX_HEAD: usize = 64 * 1024;
/// Pooled connections tried before a fresh one is opened.
const POOLED_TRIES: usize = 2;

/// What one attempt needs to know of the service it calls.
pub struct Call<'a> {
    pub service: &'a str,
    pub endpoint: &'a Endpoint,
    pub connect_timeout: Duration,
    /// The longest wait for the answer's head, in total.
    pub timeout: Duration,
    pub method: Method,
    /// For streams: the longest wait for the first body bytes.
    pub first_packet: Option<Duration>,
}

pub struct Response<'p> {
    pub lease: Lease<'p>,
    pub head: ResponseHead,
    /// The head bytes followed by whatever body bytes came with them.
    pub buf: Vec<u8>,
}

/// The rest of a request body, still arriving from the client.
// Single-threaded runtime: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait BodySource {
    /// Appends the next part of the body, framed for the upstream hop, to
    /// `out`; true once the body is complete.
    async fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, Error>;
}

/// A request whose body was sent whole with its head.
pub struct NoRest;

impl BodySource for NoRest {
    async fn next(&mut self, _: &mut Vec<u8>) -> Result<bool, Error> {
        Ok(true)
    }
}

/// Sends `bytes` (head and held body) and then `rest`; returns the
/// connection, now awaiting the answer.
pub async fn send<'p, B: BodySource>(
    pool: &'p Pool,
    addr_start: usize,
    call: &Call<'p>,
    mut bytes: Vec<u8>,
    rest: &mut B,
) -> Result<Lease<'p>, Error> {
    let key = &call.endpoint.pool_key;
    let mut sent = None;
    for _ in 0..POOLED_TRIES {
        let Some(mut lease) = pool.take(key) else {
            break;
        };
        let (res, b) = lease.conn().write_all(bytes).await;
        bytes = b;
        // A write refused on a pooled connection: the service had closed
        // it, so none of the request can have been processed.
        if res.is_ok() {
            sent = Some(lease);
            break;
        }
    }
    let mut lease = match sent {
        Some(lease) => lease,
        None => {
            let conn = match connect(call.endpoint, addr_start, call.connect_timeout).await {
                // Out of descriptors: idle pooled connections can go.
                Err(e) if crate::sys::out_of_descriptors(&e) => {
                    pool.close_idle();
                    open(call, addr_start).await?
                }
                r => r.map_err(|e| connect_error(call, e))?,
            };
            let mut lease = Lease::new(conn, pool, key, false);
            let (res, _) = lease.conn().write_all(bytes).await;
            res.map_err(|e| upstream_gone(call, e))?;
            lease
        }
    };
    let mut out = Vec::new();
    loop {
        out.clear();
        let done = rest.next(&mut out).await?;
        if !out.is_empty() {
            let (res, b) = lease.conn().write_all(out).await;
            out = b;
            res.map_err(|e| upstream_gone(call, e))?;
        }
        if done {
            return Ok(lease);
        }
    }
}

async fn open(call: &Call<'_>, addr_start: usize) -> Result<super::Conn, Error> {
    connect(call.endpoint, addr_start, call.connect_timeout)
        .await
        .map_err(|e| connect_error(call, e))
}

fn connect_error(call: &Call<'_>, e: io::Error) -> Error {
    let kind = if e.kind() == io::ErrorKind::TimedOut {
        Kind::UpstreamTimeout
    } else {
        Kind::UpstreamConnect
    };
    let up = call.endpoint;
    Error::new(
        kind,
        format!(
            "service {}: connect to {}:{}: {e}",
            call.service, up.host, up.port
        ),
    )
}

fn upstream_gone(call: &Call<'_>, e: io::Error) -> Error {
    Error::new(
        Kind::UpstreamConnect,
        format!("service {}: sending the request: {e}", call.service),
    )
}

/// Reads the answer's head into `buf` (a pooled buffer): what is already
/// buffered is parsed before anything more is awaited, interim answers are
/// skipped, and the whole wait is bounded by `call.timeout` (and by the
/// first packet timeout, which also covers the first body bytes).
pub async fn read_head<'p>(
    mut lease: Lease<'p>,
    call: &Call<'_>,
    mut buf: Vec<u8>,
) -> Result<Response<'p>, Error> {
    let started = Instant::now();
    let timeout = started + call.timeout;
    let first_packet = call.first_packet.map(|fp| started + fp);
    let deadline = first_packet.map_or(timeout, |f| f.min(timeout));
    let mut scratch = Vec::with_capacity(32);
    let head = loop {
        if !buf.is_empty() {
            match head::parse_response(&buf, call.method, MAX_HEAD, &mut scratch) {
                Ok(h) if h.status < 200 && h.status != 101 => {
                    // Interim answer (100 Continue, 103 Early Hints): skip it.
                    buf.drain(..h.head_len);
                    continue;
                }
                Ok(h) => break h,
                Err(ParseError::Incomplete) => {}
                Err(e) => {
                    let why = Error::from(e).message;
                    return Err(protocol_error(call, &format!("bad response head: {why}")));
                }
            }
        }
        let was_empty = buf.is_empty();
        match read(&mut lease, &mut buf, deadline, call, deadline < timeout).await? {
            0 if was_empty => {
                return Err(protocol_error(
                    call,
                    "closed the connection without answering",
                ))
            }
            0 => return Err(protocol_error(call, "closed mid-head")),
            _ => {}
        }
    };
    // Hold the head back until the first body bytes, so a first packet
    // timeout can still fall back.
    let awaiting_body = head.framing != head::Framing::None && buf.len() == head.head_len;
    if let (Some(fp), true) = (first_packet, awaiting_body && head.status < 300) {
        if read(&mut lease, &mut buf, fp, call, true).await? == 0 {
            return Err(protocol_error(call, "closed before the first body byte"));
        }
    }
    Ok(Response { lease, head, buf })
}

/// Appends upstream bytes to `buf` until `deadline`; `first_packet`: the
/// deadline is the first packet timeout's.
async fn read(
    lease: &mut Lease<'_>,
    buf: &mut Vec<u8>,
    deadline: Instant,
    call: &Call<'_>,
    first_packet: bool,
) -> Result<usize, Error> {
    match lease.conn().read_append_until(buf, deadline).await {
        Ok(n) => Ok(n),
        Err(ReadError::Io(e)) => Err(protocol_error(call, &format!("connection reset: {e}"))),
        Err(ReadError::TimedOut) if first_packet => Err(Error::new(
            Kind::FirstPacketTimeout,
            format!(
                "service {}: no first packet within the first packet timeout",
                call.service
            ),
        )),
        Err(ReadError::TimedOut) => Err(Error::new(
            Kind::UpstreamTimeout,
            format!(
                "service {}: no response within {} ms",
                call.service,
                call.timeout.as_millis()
            ),
        )),
    }
}

fn protocol_error(call: &Call<'_>, what: &str) -> Error {
    Error::new(
        Kind::UpstreamProtocol,
        format!("service {}: {what}", call.service),
    )
}
