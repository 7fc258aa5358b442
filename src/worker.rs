//! One data-plane worker: a pinned thread running its own monoio runtime,
//! its own listeners, upstream pool, selection state and buffers.

use crate::config::raw::IoMode;
use crate::route::select::SelectState;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::upstream::health::Health;
use crate::upstream::Pool;
use monoio::net::TcpListener;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Size of pooled I/O buffers, and how many a worker keeps.
const BUFFER: usize = 16 * 1024;
const MAX_POOLED_BUFFERS: usize = 256;

/// A listening socket handed to a worker; `tls` listeners terminate TLS.
pub struct Listener {
    pub socket: std::net::TcpListener,
    pub tls: bool,
}

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

fn pin_to(core: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!("could not pin worker to core {core}");
        }
    }
}

/// The io_uring ring setup that keeps completions on this thread: the
/// default lets the kernel retry receives inline and spin on socket locks
/// (see DESIGN.md §4). Falls back to plainer setups on older kernels.
fn uring_builders() -> [io_uring::Builder; 3] {
    let mut strict = io_uring::IoUring::builder();
    strict.setup_single_issuer().setup_defer_taskrun();
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun().setup_taskrun_flag();
    [strict, coop, io_uring::IoUring::builder()]
}

/// Thread body of worker `id`.
pub fn run(
    id: usize,
    core: Option<usize>,
    io: IoMode,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
) {
    if let Some(core) = core {
        pin_to(core);
    }
    let start = move |shared: Arc<Shared>, listeners: Vec<Listener>| async move {
        main(id, shared, listeners).await;
    };
    if io == IoMode::IoUring {
        for b in uring_builders() {
            let rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(4096)
                .uring_builder(b)
                .enable_timer()
                .build();
            if let Ok(mut rt) = rt {
                rt.block_on(start(shared, listeners));
                return;
            }
        }
        tracing::warn!("worker {id}: io_uring setup failed; using epoll");
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(start(shared, listeners)),
        Err(e) => tracing::error!("worker {id}: cannot start runtime: {e}"),
    }
}

async fn main(id: usize, shared: Arc<Shared>, listeners: Vec<Listener>) {
    let snap = Rc::new(shared.snapshot.load_full());
    let worker = Rc::new(Worker {
        id,
        shared: shared.clone(),
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
    });
    let mut accepting = Vec::new();
    for Listener { socket, tls } in listeners {
        match TcpListener::from_std(socket) {
            Ok(l) => accepting.push(monoio::spawn(accept_loop(worker.clone(), l, tls))),
            Err(e) => tracing::error!("worker {id}: listener: {e}"),
        }
    }
    shared.workers_ready.fetch_add(1, Ordering::AcqRel);

    // Cross-thread shutdown arrives as a flag; turn it into a local wakeup.
    while !shared.shutdown.load(Ordering::Acquire) {
        monoio::time::sleep(Duration::from_millis(50)).await;
        worker.observe.flush(false);
    }
    worker.shutdown.fire();
    for a in accepting {
        a.await;
    }
    let deadline = Instant::now() + worker.snapshot().drain_timeout;
    while worker.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
        worker.observe.flush(false);
    }
    worker.observe.flush(true);
    if worker.active.get() > 0 {
        tracing::warn!(
            "worker {id}: drain timeout with {} connections open",
            worker.active.get()
        );
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener, tls: bool) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = w.shutdown.wait() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let max = w.snapshot().edge.max_connections;
        if w.shared.connections.fetch_add(1, Ordering::AcqRel) >= max {
            w.shared.connections.fetch_sub(1, Ordering::AcqRel);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        w.active.set(w.active.get() + 1);
        let w2 = w.clone();
        monoio::spawn(async move {
            crate::conn::serve(&w2, stream, peer, tls).await;
            w2.active.set(w2.active.get() - 1);
            w2.shared.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
