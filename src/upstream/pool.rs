//! Per-core keep-alive pool, keyed by endpoint (scheme, host, port, CA), so
//! it survives config reloads. Never shared across cores: no locks.
//!
//! A connection leaves the pool as a [`Lease`] and comes back only when
//! the lease is dropped after its answer was read to a clean end
//! ([`Lease::reusable`]); every other lease closes its connection. That
//! drop is the one place connections return.

use super::Conn;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections older than this are closed rather than reused: below
/// the keep-alive timeout of common model servers (uvicorn and Node close
/// idle connections after 5 s), so the gateway retires them first.
const MAX_IDLE: Duration = Duration::from_secs(4);
/// A connection idle longer than this is checked for a close by the peer
/// before it carries a request (one non-blocking peek).
pub const CHECK_AFTER: Duration = Duration::from_millis(50);
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// A pooled connection and when it went idle.
type Idle = (Conn, Instant);

#[derive(Default)]
pub struct Pool {
    idle: RefCell<crate::FastMap<Arc<str>, Vec<Idle>>>,
}

impl Pool {
    /// The most recently used idle connection to `key` that is still
    /// open, with how long it was idle.
    pub fn take<'p>(&'p self, key: &'p Arc<str>) -> Option<Lease<'p>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some((conn, since)) = list.pop() {
            let idle_for = since.elapsed();
            if idle_for >= MAX_IDLE || (idle_for >= CHECK_AFTER && !conn.is_open()) {
                continue;
            }
            return Some(Lease::new(conn, self, key, true));
        }
        None
    }

    fn put(&self, key: &Arc<str>, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        let list = match idle.get_mut(key) {
            Some(l) => l,
            None => idle.entry(key.clone()).or_default(),
        };
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            list.remove(0);
        }
        list.push((conn, Instant::now()));
    }

    /// Closes every idle connection (the process ran out of descriptors).
    pub fn close_idle(&self) {
        self.idle.borrow_mut().clear();
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// An upstream connection in use by one attempt.
pub struct Lease<'p> {
    conn: Option<Conn>,
    pool: &'p Pool,
    key: &'p Arc<str>,
    /// Taken from the pool (else opened for this attempt).
    pub pooled: bool,
    reusable: bool,
}

impl<'p> Lease<'p> {
    pub fn new(conn: Conn, pool: &'p Pool, key: &'p Arc<str>, pooled: bool) -> Self {
        Lease {
            conn: Some(conn),
            pool,
            key,
            pooled,
            reusable: false,
        }
    }

    pub fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("leased connection")
    }

    /// The answer was read to its clean end and the service keeps the
    /// connection alive: it goes back to the pool when the lease ends.
    pub fn reusable(&mut self) {
        self.reusable = true;
    }

    /// The connection leaves the pool's care for good (a tunnel).
    pub fn into_conn(mut self) -> Conn {
        self.conn.take().expect("leased connection")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.reusable, self.conn.take()) {
            self.pool.put(self.key, conn);
        }
    }
}
