//! Opens a connection to a service endpoint: plain TCP or rustls, with the
//! service's connect timeout. Addresses come resolved in the snapshot, so
//! no DNS lookup happens here.

use super::Endpoint;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Why `Conn::read_append` got nothing.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    TimedOut,
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Io(e) => e,
            ReadError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "upstream stalled"),
        }
    }
}

/// An upstream connection.
pub enum Conn {
    Plain(TcpStream),
    /// With the socket under the TLS stream, which does not lend it out.
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>, RawFd),
}

impl Conn {
    pub async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s, _) => s.read(buf).await,
        }
    }

    /// Whether an idle connection is still open (see [`crate::sys`]).
    pub fn is_open(&self) -> bool {
        crate::sys::idle_socket_open(self.fd())
    }

    /// The socket: a timed-out read is ended by shutting its receive side.
    fn fd(&self) -> RawFd {
        match self {
            Conn::Plain(s) => s.as_raw_fd(),
            Conn::Tls(_, fd) => *fd,
        }
    }

    pub async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Conn::Plain(s) => s.write_all(buf).await,
            Conn::Tls(s, _) => s.write_all(buf).await,
        }
    }

    /// Appends what the service sends next to `buf` (growing it when little
    /// room is left), waiting at most `timeout`; Ok(0) at end of stream.
    /// On timeout the read is ended by shutting the socket's receive side;
    /// callers then discard the connection.
    pub async fn read_append(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, ReadError> {
        self.read_append_until(buf, Instant::now() + timeout).await
    }

    /// [`Conn::read_append`] waiting until `deadline`.
    pub async fn read_append_until(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, ReadError> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let slice = std::mem::take(buf).slice_mut(len..cap);
        // A timer per read, not per connection: a pooled connection moves
        // between tasks, and a monoio timer keeps waking the first task
        // that polled it.
        let timer = monoio::time::sleep_until(deadline.into());
        let fd = self.fd();
        let read = self.read(slice);
        let mut read = std::pin::pin!(read);
        monoio::select! {
            (res, slice) = &mut read => {
                *buf = slice.into_inner();
                res.map_err(ReadError::Io)
            }
            _ = timer => {
                crate::sys::shut_receive(fd);
                let (_, slice) = read.await;
                *buf = slice.into_inner();
                Err(ReadError::TimedOut)
            }
        }
    }

    /// Closes without waiting for the peer (used when an attempt is
    /// abandoned: the connection is never pooled again).
    pub async fn close(self) {
        match self {
            Conn::Plain(mut s) => {
                let _ = s.shutdown().await;
            }
            Conn::Tls(mut s, _) => {
                let _ = s.shutdown().await;
            }
        }
    }
}

/// Connects to one of `up.addrs`, starting at `start` (round-robin across
/// calls), trying the next address when one refuses.
pub async fn connect(up: &Endpoint, start: usize, timeout: Duration) -> io::Result<Conn> {
    if up.addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no resolved address", up.host),
        ));
    }
    let mut last = None;
    for i in 0..up.addrs.len() {
        let addr = up.addrs[(start + i) % up.addrs.len()];
        match connect_addr(addr, timeout).await {
            Ok(tcp) => return wrap(up, tcp, timeout).await,
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address")))
}

async fn connect_addr(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let tcp = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            ))
        }
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn wrap(up: &Endpoint, tcp: TcpStream, timeout: Duration) -> io::Result<Conn> {
    let Some(tls) = &up.tls else {
        return Ok(Conn::Plain(tcp));
    };
    let fd = tcp.as_raw_fd();
    let name = rustls_pki_types::ServerName::try_from(up.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let connector = monoio_rustls::TlsConnector::from(tls.clone());
    match monoio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Conn::Tls(Box::new(s), fd)),
        Ok(Err(e)) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            e.to_string(),
        )),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}
