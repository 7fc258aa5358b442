//! WebSocket upgrades as byte tunnels: what makes a request a WebSocket
//! upgrade, and the tunnel that copies bytes both ways after the `101`.
//!
//! The gateway never parses frames: once the upstream has switched
//! protocols, both directions are plain bytes, copied concurrently on the
//! connection's own task until either side closes (its close is passed on
//! as a half-close, so the other direction can finish) or nothing moves
//! for the idle limit.

use super::head::{list_elements, Method, RequestHead};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split, Splitable};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Whether `head` asks to switch this connection to WebSocket: an
/// HTTP/1.1 GET whose Connection lists `upgrade` and whose Upgrade lists
/// `websocket` (RFC 6455 §4.1), with no body.
pub fn is_websocket_upgrade(head: &RequestHead, buf: &[u8]) -> bool {
    head.upgrade
        && head.method == Method::Get
        && !head.has_body()
        && head
            .headers_named(buf, "upgrade")
            .any(|v| list_elements(v).any(|t| t.eq_ignore_ascii_case(b"websocket")))
}

/// A borrowed stream that may be split like an owned one: the tunnel
/// borrows the client's socket from its connection for the tunnel's life.
pub struct Borrowed<'a, T>(pub &'a mut T);

// SAFETY: splitting a `Borrowed` splits the `T` it borrows, which is
// `Split` (its reads are independent of its writes); the borrow outlives
// both halves because they are dropped before `tunnel` returns.
unsafe impl<T: Split> Split for Borrowed<'_, T> {}

impl<T: AsyncReadRent> AsyncReadRent for Borrowed<'_, T> {
    fn read<B: IoBufMut>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, B>> {
        self.0.read(buf)
    }

    fn readv<B: monoio::buf::IoVecBufMut>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, B>> {
        self.0.readv(buf)
    }
}

impl<T: AsyncWriteRent> AsyncWriteRent for Borrowed<'_, T> {
    fn write<B: monoio::buf::IoBuf>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, B>> {
        self.0.write(buf)
    }

    fn writev<B: monoio::buf::IoVecBuf>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, B>> {
        self.0.writev(buf)
    }

    fn flush(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.0.flush()
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.0.shutdown()
    }
}

/// Bytes moved by a finished tunnel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub to_upstream: u64,
    pub to_client: u64,
}

const TUNNEL_CHUNK: usize = 16 * 1024;

/// Copies bytes between `client` and `upstream` until both directions
/// have ended, either fails, or neither moved a byte for `idle`.
/// `to_upstream` and `to_client` are bytes already read from the other
/// side (frames that came with the upgrade request or with the `101`).
pub async fn tunnel<C, U>(
    client: C,
    upstream: U,
    to_upstream: Vec<u8>,
    to_client: Vec<u8>,
    idle: Duration,
) -> Moved
where
    C: Split + AsyncReadRent + AsyncWriteRent,
    U: Split + AsyncReadRent + AsyncWriteRent,
{
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let last = Cell::new(Instant::now());
    let moved_up = Cell::new(0u64);
    let moved_down = Cell::new(0u64);
    let mut up = std::pin::pin!(pump(
        &mut client_rd,
        &mut up_wr,
        to_upstream,
        &last,
        &moved_up
    ));
    let mut down = std::pin::pin!(pump(
        &mut up_rd,
        &mut client_wr,
        to_client,
        &last,
        &moved_down
    ));
    let mut watchdog = std::pin::pin!(async {
        loop {
            let quiet = last.get().elapsed();
            if quiet >= idle {
                return;
            }
            monoio::time::sleep(idle - quiet).await;
        }
    });
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        // A failed direction (reset, write to a closed peer) ends both.
        let failed = monoio::select! {
            r = &mut up, if !up_done => { up_done = true; r.is_err() }
            r = &mut down, if !down_done => { down_done = true; r.is_err() }
            _ = &mut watchdog => true,
        };
        if failed {
            break;
        }
    }
    Moved {
        to_upstream: moved_up.get(),
        to_client: moved_down.get(),
    }
}

/// One direction: writes `first`, then copies until end of stream, which
/// it passes on as a half-close of the writer.
async fn pump<R: AsyncReadRent, W: AsyncWriteRent>(
    rd: &mut R,
    wr: &mut W,
    first: Vec<u8>,
    last: &Cell<Instant>,
    moved: &Cell<u64>,
) -> std::io::Result<()> {
    let mut buf = first;
    if !buf.is_empty() {
        let (res, b) = wr.write_all(buf).await;
        res?;
        moved.set(moved.get() + b.len() as u64);
        buf = b;
    }
    buf.clear();
    buf.reserve(TUNNEL_CHUNK);
    loop {
        buf.clear();
        let cap = buf.capacity();
        let (res, slice) = rd.read(buf.slice_mut(0..cap)).await;
        buf = slice.into_inner();
        match res? {
            0 => {
                let _ = wr.shutdown().await;
                return Ok(());
            }
            n => {
                last.set(Instant::now());
                let (res, b) = wr.write_all(buf).await;
                res?;
                buf = b;
                moved.set(moved.get() + n as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, Limits};

    fn parse(raw: &[u8]) -> RequestHead {
        parse_request(raw, &Limits::default(), &mut Vec::new()).unwrap()
    }

    #[test]
    fn what_is_a_websocket_upgrade() {
        let yes: &[&[u8]] = &[
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: WebSocket\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n",
        ];
        for raw in yes {
            assert!(is_websocket_upgrade(&parse(raw), raw), "{raw:?}");
        }
        let no: &[&[u8]] = &[
            // No Connection: upgrade.
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            // Another protocol.
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            // HTTP/1.0 cannot upgrade.
            b"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            // Not a GET, or with a body.
            b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi",
            b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in no {
            assert!(!is_websocket_upgrade(&parse(raw), raw), "{raw:?}");
        }
    }
}
