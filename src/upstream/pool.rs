//! Per-core keep-alive pool, keyed by endpoint (scheme, host, port, CA), so
//! it survives config reloads. Never shared across cores: no locks.

use super::Conn;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections older than this are dropped rather than reused: most
/// servers close idle keep-alive connections after 60 s or more.
const MAX_IDLE: Duration = Duration::from_secs(50);
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// A pooled connection and when it went idle.
type Idle = (Conn, Instant);

#[derive(Default)]
pub struct Pool {
    idle: RefCell<crate::FastMap<Arc<str>, Vec<Idle>>>,
}

impl Pool {
    /// The most recently used idle connection to `key`, if any.
    pub fn take(&self, key: &Arc<str>) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < MAX_IDLE {
                return Some(conn);
            }
        }
        None
    }

    pub fn put(&self, key: &Arc<str>, conn: Conn) {
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

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}
