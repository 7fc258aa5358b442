//! Process start, the top floor: starts the data plane (one pinned monoio
//! worker per core, each with its own SO_REUSEPORT listeners) and runs the
//! control plane on this thread: admin listener, reloads on SIGHUP, drain
//! on SIGTERM/SIGINT.

use crate::config::raw::{IoMode, RawConfig};
use crate::control::Control;
use crate::shared::Shared;
use crate::snapshot::{compile, Mode};
use crate::store::{Resources, Store};
use crate::tasks::TaskMap;
use crate::{admin, listener, observe};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The message `serve` exits with when another process holds `addr`.
fn in_use(addr: &str) -> String {
    format!("address in use: {addr}")
}

/// How long an address found held is tried again before `serve` gives up:
/// a stopped io_uring process's listeners close in a kernel work queue
/// after it has been reaped (about 10 ms measured), so an immediate restart
/// would otherwise see its own predecessor.
const PROBE_PATIENCE: Duration = Duration::from_secs(1);

/// Refuses an address another process already listens on. Workers share a
/// port through SO_REUSEPORT, which lets any process of the same user join
/// the group and silently take part of its traffic; a plain bind (no
/// SO_REUSEPORT; SO_REUSEADDR so that TIME_WAIT does not count) fails with
/// EADDRINUSE while any listener holds the address. Runs before the
/// worker sockets are bound; port 0 cannot collide and is not probed.
fn probe_free(addr: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let resolved: Vec<SocketAddr> = match addr.to_socket_addrs() {
        Ok(a) => a.collect(),
        // Left to the real bind, which reports it.
        Err(_) => return Ok(()),
    };
    let deadline = Instant::now() + PROBE_PATIENCE;
    for a in resolved.into_iter().filter(|a| a.port() != 0) {
        loop {
            match probe_bind(a) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if Instant::now() >= deadline {
                        return Err(in_use(addr));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("listen {addr}: {e}")),
            }
        }
    }
    Ok(())
}

/// Binds (and closes) a socket on `addr` without SO_REUSEPORT.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())
}

/// Binds one listener per worker per address, all on the same port
/// (SO_REUSEPORT); port 0 is resolved by the first bind.
fn bind_listeners(
    plain: &[String],
    tls: &[String],
    workers: usize,
) -> std::io::Result<Vec<Vec<listener::Listener>>> {
    let mut per_worker: Vec<Vec<listener::Listener>> = (0..workers).map(|_| Vec::new()).collect();
    let addrs = plain
        .iter()
        .map(|a| (a, false))
        .chain(tls.iter().map(|a| (a, true)));
    for (addr, is_tls) in addrs {
        let mut addr: SocketAddr = addr
            .parse()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, addr.clone()))?;
        for list in per_worker.iter_mut() {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            sock.set_reuse_address(true)?;
            sock.set_reuse_port(true)?;
            sock.set_nodelay(true)?;
            sock.set_nonblocking(true)?;
            sock.bind(&addr.into()).map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => std::io::Error::other(in_use(&addr.to_string())),
                _ => e,
            })?;
            sock.listen(4096)?;
            let l: std::net::TcpListener = sock.into();
            addr = l.local_addr()?;
            list.push(listener::Listener {
                socket: l,
                tls: is_tls,
            });
        }
        if is_tls {
            println!("modelgate listening on {addr} (tls)");
        } else {
            println!("modelgate listening on {addr}");
        }
    }
    Ok(per_worker)
}

fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Which event loop the workers run, decided (and logged) once.
fn choose_io(mode: IoMode) -> IoMode {
    let uring = monoio::utils::detect_uring();
    match (mode, uring) {
        (IoMode::Epoll, _) => {
            tracing::info!("io: epoll (configured)");
            IoMode::Epoll
        }
        (_, true) => {
            tracing::info!("io: io_uring");
            IoMode::IoUring
        }
        (IoMode::IoUring, false) => {
            tracing::warn!("io: io_uring requested but unavailable; using epoll");
            IoMode::Epoll
        }
        (IoMode::Auto, false) => {
            tracing::info!("io: io_uring unavailable; using epoll");
            IoMode::Epoll
        }
    }
}

/// Runs the gateway until SIGTERM/SIGINT and the drain that follows.
/// Descriptors kept for listeners, logs, the admin API and Redis.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the open-file limit and returns how many client connections fit
/// in it, each with an upstream connection; warns when `max_connections`
/// does not fit.
fn client_budget(max_connections: usize) -> usize {
    let limit = crate::sys::raise_open_file_limit();
    let budget = (limit.saturating_sub(RESERVED_DESCRIPTORS) / 2).max(1) as usize;
    if max_connections > budget {
        tracing::warn!(
            "server.limits.max_connections {max_connections} lowered to {budget}: the open-file limit is {limit} (each client connection may need an upstream one)"
        );
    }
    budget
}

pub fn serve(config_path: &str, raw: RawConfig) -> Result<(), String> {
    let cluster = crate::config::cluster::Settings::from_raw(&raw.cluster)
        .map_err(|e| e.to_string())?
        .map(|s| crate::cluster::Link::new(&s, admin::auth::random_hex(8)).map(Arc::new))
        .transpose()?;
    let (cluster_tasks, task_requests) = match &cluster {
        Some(_) => {
            let (handle, rx) = crate::tasks::channel();
            (Some(handle), Some(rx))
        }
        None => (None, None),
    };
    let store = match &cluster {
        Some(link) => Store::redis(link.clone()),
        None => Store::open(&raw.store.path)?,
    };
    let resources = Resources::new(raw.clone(), store);
    let merged = resources.store.state.merged_with(&raw);
    let (snap, problems) = compile(&merged, 1, Mode::Serve).map_err(|p| {
        p.errors
            .iter()
            .map(|e| resources.describe(e))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    for w in &problems.warnings {
        tracing::warn!("config: {}", resources.describe(w));
    }
    let observe = observe::Settings::from_raw(&raw).and_then(observe::Observe::start)?;
    let workers = worker_count(raw.server.workers);
    let io = choose_io(raw.server.io);
    for addr in raw
        .server
        .listen
        .iter()
        .chain(&raw.server.tls.listen)
        .chain(std::iter::once(&raw.admin.listen))
    {
        probe_free(addr)?;
    }
    let listeners =
        bind_listeners(&raw.server.listen, &raw.server.tls.listen, workers).map_err(|e| match e
            .kind()
        {
            std::io::ErrorKind::Other => e.to_string(),
            _ => format!("listen: {e}"),
        })?;
    let data_addr = loopback(
        listeners[0][0]
            .socket
            .local_addr()
            .map_err(|e| e.to_string())?,
    );
    let mut snap = snap;
    let limits = match cluster {
        Some(_) => crate::limit::Registry::clustered(),
        None => crate::limit::Registry::default(),
    };
    limits.adopt(&mut snap.limits);
    let client_budget = client_budget(snap.edge.max_connections);
    let shared = Arc::new(Shared {
        client_budget,
        body_memory: AtomicUsize::new(0),
        generation: AtomicU64::new(snap.generation),
        snapshot: ArcSwap::from_pointee(snap),
        limits,
        shutdown: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
        workers,
        workers_ready: AtomicUsize::new(0),
        observe: Arc::new(observe),
        debug_token: admin::auth::random_hex(32),
        tasks: TaskMap::default().with_cluster(cluster_tasks),
    });
    let ctl = Arc::new(Control {
        shared: shared.clone(),
        config_path: config_path.to_string(),
        resources: tokio::sync::Mutex::new(resources),
        data_addr,
        cluster,
    });

    let cores = core_ids();
    let mut threads = Vec::new();
    for (id, ls) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let t = std::thread::Builder::new()
            .name(format!("modelgate-w{id}"))
            .spawn(move || listener::run(id, core, io, shared, ls))
            .map_err(|e| e.to_string())?;
        threads.push(t);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if let (Some(link), Some(rx)) = (ctl.cluster.clone(), task_requests) {
        let ttl = crate::cluster::tasks::TASK_TTL_S;
        rt.spawn(crate::cluster::tasks::serve(link, rx, ttl));
    }
    rt.block_on(control(ctl, raw))?;

    // Workers stop accepting at once and finish in-flight requests.
    let drain = shared.snapshot.load().drain_timeout;
    let deadline = Instant::now() + drain + Duration::from_secs(1);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
    rt.block_on(shared.observe.shutdown());
    tracing::info!("stopped");
    Ok(())
}

/// The address to reach a listener bound to `addr` from this host.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, a.port()).into()
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, a.port()).into()
        }
        a => a,
    }
}

fn core_ids() -> Vec<usize> {
    // SAFETY: CPU_ZERO/CPU_ISSET on a zeroed cpu_set_t we own; sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// How often service host names are resolved again.
const DNS_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// The control plane: admin listener and signals. Returns on SIGTERM/SIGINT.
async fn control(ctl: Arc<Control>, raw: RawConfig) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let admin = tokio::net::TcpListener::bind(&raw.admin.listen)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => in_use(&raw.admin.listen),
            _ => format!("admin.listen {}: {e}", raw.admin.listen),
        })?;
    println!(
        "admin listening on {}",
        admin.local_addr().map_err(|e| e.to_string())?
    );
    let mut keeper = None;
    let shared = &ctl.shared;
    if let Some(link) = ctl.cluster.clone() {
        // Start from the cluster's resources when Redis answers in time;
        // otherwise serve the config file's and catch up once it does.
        let first = async {
            let mut res = ctl.resources.lock().await;
            crate::control::sync::catch_up(shared, &mut res).await
        };
        match tokio::time::timeout(Duration::from_secs(3), first).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cluster: starting without the cluster store: {e}"),
            Err(_) => tracing::warn!("cluster: Redis did not answer in time; starting degraded"),
        }
        keeper = Some(tokio::spawn(crate::cluster::limits::run(
            shared.clone(),
            link.clone(),
        )));
        tokio::spawn(crate::control::sync::run(ctl.clone(), link));
    }
    tokio::spawn(admin::serve(admin, ctl.clone()));
    tokio::spawn(observe::control_loop(shared.observe.clone()));

    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut dns = tokio::time::interval(DNS_REFRESH);
    dns.tick().await;
    loop {
        tokio::select! {
            _ = dns.tick() => ctl.refresh_dns().await,
            _ = hup.recv() => match ctl.reload().await {
                Ok(()) => tracing::info!("config reloaded (generation {})", shared.generation.load(Ordering::Acquire)),
                Err(errors) => {
                    for e in errors {
                        tracing::error!("reload rejected: {e}");
                    }
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("draining");
    shared.shutdown.store(true, Ordering::Release);
    if let Some(keeper) = keeper {
        // It gives this instance's leases back before it ends.
        let _ = tokio::time::timeout(Duration::from_secs(1), keeper).await;
    }
    if let Some(link) = &ctl.cluster {
        let _ = tokio::time::timeout(Duration::from_secs(1), link.leave()).await;
    }
    Ok(())
}
