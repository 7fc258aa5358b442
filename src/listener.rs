//! The data-plane threads: each a pinned thread running its own monoio
//! runtime (io_uring, else epoll) with its own SO_REUSEPORT listeners,
//! accepting connections and serving each on its own task until drained.

use crate::config::raw::IoMode;
use crate::shared::Shared;
use crate::worker::Worker;
use monoio::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A listening socket handed to a worker; `tls` listeners terminate TLS.
pub struct Listener {
    pub socket: std::net::TcpListener,
    pub tls: bool,
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
    let worker = Rc::new(Worker::new(id, shared.clone()));
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
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = w.shutdown.wait() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors: idle upstream connections are the
                // ones that can go. Back off instead of spinning, and say
                // so at most once a second.
                if crate::sys::out_of_descriptors(&e) {
                    w.pool.close_idle();
                }
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("accept: {e}");
                    last_warning = Some(Instant::now());
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let max = w
            .snapshot()
            .edge
            .max_connections
            .min(w.shared.client_budget);
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
