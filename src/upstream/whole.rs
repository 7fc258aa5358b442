//! Reads a whole upstream response body into memory, bounded: for answers
//! that must be seen whole before the client gets any of them (moderated
//! non-streamed answers, the moderation service's verdicts).

use super::connect::ReadError;
use super::exchange::Response;
use super::pool::Lease;
use crate::error::{Error, Kind};
use crate::http::body::ChunkedDecoder;
use crate::http::head::{Framing, ResponseHead};
use std::time::Duration;

/// A whole answer; its connection went back to the pool when it could.
pub struct WholeResponse {
    pub head: ResponseHead,
    /// The head's bytes (its header ranges index these).
    pub head_bytes: Vec<u8>,
    pub body: Vec<u8>,
}

/// Reads the rest of `resp`'s body, at most `cap` bytes, each read within
/// `timeout`.
pub async fn read_whole(
    resp: Response<'_>,
    service: &str,
    timeout: Duration,
    cap: usize,
) -> Result<WholeResponse, Error> {
    let Response {
        mut lease,
        head,
        buf: mut head_bytes,
    } = resp;
    let conn = &mut lease;
    let mut raw = head_bytes.split_off(head.head_len);
    let fail = |why: &str| Error::new(Kind::UpstreamProtocol, format!("service {service}: {why}"));
    let too_large = || fail(&format!("response body over {cap} bytes"));
    let (body, reusable) = match head.framing {
        Framing::None => (Vec::new(), head.keep_alive && raw.is_empty()),
        Framing::Length(n) => {
            if n > cap as u64 {
                return Err(too_large());
            }
            let n = n as usize;
            while raw.len() < n {
                if read(conn, &mut raw, timeout, service).await? == 0 {
                    return Err(fail("closed mid-body"));
                }
            }
            let reusable = head.keep_alive && raw.len() == n;
            raw.truncate(n);
            (raw, reusable)
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::new(cap as u64);
            let mut body = Vec::new();
            loop {
                let p = decoder
                    .decode(&raw, |d| body.extend_from_slice(d))
                    .map_err(|e| fail(&format!("bad chunked body: {e}")))?;
                if p.done {
                    break (body, head.keep_alive && p.consumed == raw.len());
                }
                raw.clear();
                if read(conn, &mut raw, timeout, service).await? == 0 {
                    return Err(fail("closed mid-body"));
                }
            }
        }
        Framing::UntilClose => {
            while read(conn, &mut raw, timeout, service).await? > 0 {
                if raw.len() > cap {
                    return Err(too_large());
                }
            }
            (raw, false)
        }
    };
    if reusable {
        lease.reusable();
    }
    Ok(WholeResponse {
        head,
        head_bytes,
        body,
    })
}

/// Appends what `conn` sends next to `buf`; 0 at end of stream.
async fn read(
    conn: &mut Lease<'_>,
    buf: &mut Vec<u8>,
    timeout: Duration,
    service: &str,
) -> Result<usize, Error> {
    match conn.conn().read_append(buf, timeout).await {
        Ok(n) => Ok(n),
        Err(ReadError::Io(e)) => Err(Error::new(
            Kind::UpstreamProtocol,
            format!("service {service}: read: {e}"),
        )),
        Err(ReadError::TimedOut) => Err(Error::new(
            Kind::UpstreamTimeout,
            format!("service {service}: response body stalled"),
        )),
    }
}
