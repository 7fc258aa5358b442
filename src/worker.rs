//! One data-plane worker's state: its upstream pool, health, selection
//! state, buffers, shutdown signal and metrics shard — all per core, no
//! locks. The thread that runs it is `listener`'s.

use crate::route::select::SelectState;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::upstream::health::Health;
use crate::upstream::Pool;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Size of pooled I/O buffers, and how many a worker keeps.
const BUFFER: usize = 16 * 1024;
const MAX_POOLED_BUFFERS: usize = 256;

/// A worker-local shutdown signal that connection tasks can await.
#[derive(Default)]
pub struct Shutdown {
    fired: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Shutdown {
    pub fn fire(&self) {
        self.fired.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub fn wait(&self) -> ShutdownWait<'_> {
        ShutdownWait(self)
    }
}

pub struct ShutdownWait<'a>(&'a Shutdown);

impl Future for ShutdownWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.fired.get() {
            return Poll::Ready(());
        }
        self.0.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

pub struct Worker {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// Rc around the Arc: handing the snapshot to a request bumps a
    /// core-local count, not an atomic on a cache line all cores share.
    #[allow(clippy::redundant_allocation)]
    snapshot: RefCell<Rc<Arc<Snapshot>>>,
    pub pool: Pool,
    pub health: Health,
    pub select: RefCell<SelectState>,
    /// Round-robin positions for service keys and for addresses.
    pub key_rr: Cell<usize>,
    pub addr_rr: Cell<usize>,
    pub shutdown: Shutdown,
    /// Open client connections on this worker.
    pub active: Cell<usize>,
    request_seq: Cell<u64>,
    request_seed: u64,
    /// This core's metrics, access log lines and spans.
    pub observe: crate::observe::Shard,
    /// Reused I/O buffers: upstream reads and client writes take one per
    /// request instead of allocating 16 KiB each time.
    buffers: RefCell<Vec<Vec<u8>>>,
}

impl Worker {
    pub fn new(id: usize, shared: Arc<Shared>) -> Worker {
        let snap = Rc::new(shared.snapshot.load_full());
        Worker {
            id,
            snapshot: RefCell::new(snap),
            pool: Pool::default(),
            health: Health::default(),
            select: RefCell::new(SelectState::default()),
            key_rr: Cell::new(0),
            addr_rr: Cell::new(id),
            shutdown: Shutdown::default(),
            active: Cell::new(0),
            request_seq: Cell::new(0),
            request_seed: fastrand::u64(..) ^ ((id as u64) << 56),
            buffers: RefCell::new(Vec::new()),
            observe: shared.observe.shard(),
            shared,
        }
    }

    /// The current snapshot. Cheap: one relaxed-ish atomic load per call;
    /// the Arc is only cloned when a reload happened.
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut cached = self.snapshot.borrow_mut();
        if cached.generation != generation {
            *cached = Rc::new(self.shared.snapshot.load_full());
        }
        cached.clone()
    }

    /// An empty buffer with at least `BUFFER` bytes of room.
    pub fn buffer(&self) -> Vec<u8> {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER))
    }

    /// Takes a buffer back for reuse (ones grown large are freed instead).
    pub fn recycle(&self, mut buf: Vec<u8>) {
        let mut pool = self.buffers.borrow_mut();
        if buf.capacity() >= BUFFER
            && buf.capacity() <= 4 * BUFFER
            && pool.len() < MAX_POOLED_BUFFERS
        {
            buf.clear();
            pool.push(buf);
        }
    }

    pub fn next_key(&self) -> usize {
        let n = self.key_rr.get();
        self.key_rr.set(n.wrapping_add(1));
        n
    }

    pub fn next_addr(&self) -> usize {
        let n = self.addr_rr.get();
        self.addr_rr.set(n.wrapping_add(1));
        n
    }

    /// A new request id: unique per process (seed per worker + sequence).
    pub fn new_request_id(&self) -> String {
        let n = self.request_seq.get();
        self.request_seq.set(n + 1);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.request_seed.to_be_bytes());
        id[8..].copy_from_slice(&n.to_be_bytes());
        let hex = crate::observe::trace::trace_hex(&id);
        // Hex digits are ASCII.
        String::from_utf8(hex.to_vec()).unwrap_or_default()
    }
}
