//! A run: one monoio runtime per thread (io_uring, epoll as a fallback),
//! each driving its share of the load over its own keep-alive connections,
//! measuring into its own histograms; the main thread prints the progress
//! line and merges the threads' measurements at the end.
//!
//! Open loop (`--rate`): each request has an intended send time from the
//! schedule and its latency is measured from that time, so a slow server
//! cannot slow the sender down and hide its own queueing (no coordinated
//! omission). Requests beyond the connection limit wait for a connection,
//! and that wait counts too. Closed loop (`--concurrency`): each of N
//! workers sends its next request when the previous one is answered.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::exchange::{exchange, Answer, Failure, Scratch};
use super::http::Conn;
use super::progress::{self, Progress, Tick};
use super::schedule::{Arrivals, Schedule};
use super::stats::{record, ErrorKind, Stats};
use super::tls::Tls;
use super::workload::Api;

/// Set by SIGINT: stop sending, report what was measured.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The shape of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `rate` requests/s overall, whatever the answers do.
    Open { rate: f64, arrivals: Arrivals },
    /// `concurrency` requests in flight, each sent when one ends.
    Closed { concurrency: usize },
}

/// Which I/O driver the runtimes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// io_uring, falling back to epoll where the kernel refuses it.
    Uring,
    Epoll,
}

/// Everything a run needs, shared by its threads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// Set for `https://` targets.
    pub tls: Option<Tls>,
    pub api: Api,
    pub stream: bool,
    /// Whole HTTP requests, sent in turn.
    pub requests: Vec<Vec<u8>>,
    pub load: Load,
    /// How long new requests are sent for.
    pub window: Duration,
    /// Longest wait for one answer (and for the answers in flight at the
    /// end of the window).
    pub timeout: Duration,
    pub threads: usize,
    /// Connections open at once at most (open loop), over all threads.
    pub max_connections: usize,
    pub seed: u64,
    pub io: Io,
    /// Print the live progress line, prefixed with this label.
    pub progress: Option<String>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stats: Stats,
    /// From the start to the last answer.
    pub elapsed: Duration,
    /// From the first answer to the last (answers include errors).
    pub answer_span: Option<Duration>,
    pub sent: u64,
    /// Why the run was stopped early, if it was.
    pub fatal: Option<String>,
    pub interrupted: bool,
    /// The first error seen, described.
    pub first_error: Option<String>,
}

/// Stops the threads early, with a reason.
#[derive(Debug, Default)]
struct Control {
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
}

impl Control {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed)
    }
}

enum Msg {
    Tick(usize, u64, Box<Tick>),
    Done(usize, Box<ThreadResult>),
}

struct ThreadResult {
    stats: Stats,
    sent: u64,
    first_answer: Option<Instant>,
    last_answer: Option<Instant>,
    first_error: Option<(Instant, String)>,
}

/// Checks that the target accepts connections before the run.
pub fn preflight(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    std::net::TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5)))
        .map(drop)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Runs `plan` to the end (or to a stop) and merges the measurements.
pub fn run(plan: &Arc<Plan>) -> Outcome {
    let control = Arc::new(Control::default());
    let (tx, rx) = mpsc::channel::<Msg>();
    let start = Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::new();
    for t in 0..plan.threads {
        let (p, c, tx) = (plan.clone(), control.clone(), tx.clone());
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || thread_main(p, c, t, start, tx));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                *lock(&control.fatal) = Some(format!("cannot start thread {t}: {e}"));
                control.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(tx);

    let mut progress = Progress::new(plan.threads);
    let mut stats = Stats::default();
    let mut sent = 0;
    let mut first_answer: Option<Instant> = None;
    let mut last_answer: Option<Instant> = None;
    let mut first_error: Option<(Instant, String)> = None;
    let mut running = handles.len();
    while running > 0 {
        if INTERRUPTED.load(Ordering::Relaxed) {
            control.stop.store(true, Ordering::Relaxed);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Tick(t, second, tick)) => progress.tick(t, second, &tick),
            Ok(Msg::Done(t, r)) => {
                progress.thread_done(t);
                stats.merge(&r.stats);
                sent += r.sent;
                first_answer = match (first_answer, r.first_answer) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                last_answer = last_answer.max(r.last_answer);
                if let Some(e) = r.first_error {
                    if first_error.as_ref().is_none_or(|f| e.0 < f.0) {
                        first_error = Some(e);
                    }
                }
                running -= 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(label) = &plan.progress {
            for (second, tick) in progress.complete() {
                eprintln!("{}", progress::line(label, second, &tick, plan.stream));
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let elapsed = last_answer
        .map(|t| t.saturating_duration_since(start))
        .unwrap_or(plan.window)
        .max(Duration::from_millis(1));
    let answer_span = first_answer.zip(last_answer).map(|(f, l)| l - f);
    let fatal = lock(&control.fatal).take();
    let first_error = first_error.map(|(_, e)| e);
    Outcome {
        stats,
        elapsed,
        answer_span,
        sent,
        fatal,
        interrupted: INTERRUPTED.load(Ordering::Relaxed),
        first_error,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The io_uring setups tried in turn, as the gateway's workers do: keep
/// completions on this thread first, plainer setups on older kernels.
fn uring_builders() -> [io_uring::Builder; 3] {
    let mut strict = io_uring::IoUring::builder();
    strict.setup_single_issuer().setup_defer_taskrun();
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun().setup_taskrun_flag();
    [strict, coop, io_uring::IoUring::builder()]
}

fn thread_main(
    plan: Arc<Plan>,
    control: Arc<Control>,
    thread: usize,
    start: Instant,
    tx: mpsc::Sender<Msg>,
) {
    let go = |plan: Arc<Plan>, control: Arc<Control>, tx: mpsc::Sender<Msg>| async move {
        let r = drive(plan, control, thread, start, tx.clone()).await;
        let _ = tx.send(Msg::Done(thread, Box::new(r)));
    };
    if plan.io == Io::Uring {
        for b in uring_builders() {
            let rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(4096)
                .uring_builder(b)
                .enable_timer()
                .build();
            if let Ok(mut rt) = rt {
                rt.block_on(go(plan, control, tx));
                return;
            }
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(go(plan, control, tx)),
        Err(e) => {
            *lock(&control.fatal) = Some(format!("thread {thread}: cannot start a runtime: {e}"));
            control.stop.store(true, Ordering::Relaxed);
            let r = ThreadResult {
                stats: Stats::default(),
                sent: 0,
                first_answer: None,
                last_answer: None,
                first_error: None,
            };
            let _ = tx.send(Msg::Done(thread, Box::new(r)));
        }
    }
}

/// One in-flight slot: a connection (opened when first needed) and the
/// buffers its requests use.
#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    scratch: Scratch,
}

/// Slots of one thread, at most `max`; more requests wait for one.
struct Pool {
    idle: RefCell<Vec<Slot>>,
    created: Cell<usize>,
    max: usize,
    waiters: RefCell<VecDeque<Waker>>,
}

impl Pool {
    fn new(max: usize) -> Pool {
        Pool {
            idle: RefCell::new(Vec::new()),
            created: Cell::new(0),
            max: max.max(1),
            waiters: RefCell::new(VecDeque::new()),
        }
    }

    async fn acquire(&self) -> Slot {
        std::future::poll_fn(|cx| {
            // The most recently used slot first: its connection is warm.
            if let Some(s) = self.idle.borrow_mut().pop() {
                return Poll::Ready(s);
            }
            if self.created.get() < self.max {
                self.created.set(self.created.get() + 1);
                return Poll::Ready(Slot::default());
            }
            self.waiters.borrow_mut().push_back(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn release(&self, s: Slot) {
        self.idle.borrow_mut().push(s);
        if let Some(w) = self.waiters.borrow_mut().pop_front() {
            w.wake();
        }
    }
}

/// One thread's state.
struct Ctx {
    plan: Arc<Plan>,
    control: Arc<Control>,
    requests: Vec<Rc<Vec<u8>>>,
    next: Cell<usize>,
    stats: RefCell<Stats>,
    tick: RefCell<Tick>,
    in_flight: Cell<u64>,
    sent: Cell<u64>,
    first_answer: Cell<Option<Instant>>,
    last_answer: Cell<Option<Instant>>,
    /// This thread's first error, when and what.
    first_error: RefCell<Option<(Instant, String)>>,
    pool: Pool,
    /// Where progress ticks go (with `--progress`), and the next second
    /// to report.
    ticks: Option<mpsc::Sender<Msg>>,
    thread: usize,
    start: Instant,
    next_second: Cell<u64>,
}

impl Ctx {
    /// Sends the tick of each whole second of the run that has passed.
    fn send_due_ticks(&self) {
        if self.ticks.is_none() {
            return;
        }
        let now = Instant::now();
        while self.start + Duration::from_secs(self.next_second.get()) <= now {
            self.send_tick();
        }
    }

    /// Sends what was measured since the last tick as the next second.
    fn send_tick(&self) {
        let second = self.next_second.get();
        self.next_second.set(second + 1);
        let Some(tx) = &self.ticks else {
            return;
        };
        let mut t = self.tick.replace(Tick::default());
        t.in_flight = self.in_flight.get();
        let _ = tx.send(Msg::Tick(self.thread, second, Box::new(t)));
    }

    fn next_request(&self) -> Rc<Vec<u8>> {
        let i = self.next.get();
        self.next.set(if i + 1 >= self.requests.len() {
            0
        } else {
            i + 1
        });
        self.requests[i].clone()
    }

    /// Notes an answer (or error) at `at`.
    fn answered(&self, at: Instant) {
        if self.first_answer.get().is_none_or(|t| t > at) {
            self.first_answer.set(Some(at));
        }
        if self.last_answer.get().is_none_or(|t| t < at) {
            self.last_answer.set(Some(at));
        }
    }

    fn record_ok(&self, intended: Instant, a: &Answer, gaps: &[Duration]) {
        let latency = a.done_at.saturating_duration_since(intended);
        let ttft = a
            .first_content
            .map(|f| f.saturating_duration_since(intended));
        let output = a.output_tokens.unwrap_or(if self.plan.stream {
            a.content_events
        } else {
            0
        });
        let mut st = self.stats.borrow_mut();
        st.ok += 1;
        record(&mut st.latency, latency);
        if let Some(t) = ttft {
            record(&mut st.ttft, t);
        }
        for g in gaps {
            record(&mut st.itl, *g);
        }
        if let (Some(first), Some(last)) = (a.first_content, a.last_content) {
            if output > 1 {
                let per = last.saturating_duration_since(first)
                    / (output - 1).min(u32::MAX as u64) as u32;
                record(&mut st.tpot, per);
            }
        }
        st.output_tokens += output;
        st.input_tokens += a.input_tokens.unwrap_or(0);
        if a.output_tokens.is_some() {
            st.usage_reported += 1;
        }
        drop(st);
        self.tick.borrow_mut().ok(latency, ttft, output);
        self.answered(a.done_at);
    }

    fn record_err(&self, f: &Failure) {
        self.stats.borrow_mut().error(f.kind);
        self.tick.borrow_mut().errors += 1;
        let now = Instant::now();
        self.answered(now);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some((now, format!("{}: {}", f.kind, f.detail)));
        }
        if f.fatal {
            let mut fatal = lock(&self.control.fatal);
            if fatal.is_none() {
                *fatal = Some(f.detail.clone());
            }
            self.control.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Counts a request as sent and in flight; called when it is started
    /// (before its task first runs), so the drain at the end waits for it.
    fn begin(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.sent.set(self.sent.get() + 1);
    }

    /// Sends one request (begun with [`Ctx::begin`]) on `slot` and records
    /// the outcome; latency counts from `intended`.
    async fn request(&self, slot: &mut Slot, intended: Instant) {
        if matches!(self.plan.load, Load::Open { .. }) {
            let lag = Instant::now().saturating_duration_since(intended);
            record(&mut self.stats.borrow_mut().send_lag, lag);
        }
        let req = self.next_request();
        let attempt = attempt(self, slot, req);
        match monoio::time::timeout(self.plan.timeout, attempt).await {
            Ok(Ok(a)) => self.record_ok(intended, &a, &slot.scratch.gaps),
            Ok(Err(f)) => self.record_err(&f),
            Err(_) => {
                // The connection is mid-answer: it cannot be reused.
                slot.conn = None;
                self.record_err(&Failure {
                    kind: ErrorKind::Timeout,
                    detail: format!("no complete answer in {:?}", self.plan.timeout),
                    conn_ok: false,
                    before_response: false,
                    fatal: false,
                });
            }
        }
        self.in_flight.set(self.in_flight.get() - 1);
    }
}

/// Sends `req` on the slot's connection (connecting if needed); a reused
/// connection that the server had already closed gets one retry.
async fn attempt(ctx: &Ctx, slot: &mut Slot, req: Rc<Vec<u8>>) -> Result<Answer, Failure> {
    for retry in [false, true] {
        let conn = match &mut slot.conn {
            Some(c) => c,
            None => match Conn::connect(ctx.plan.addr, ctx.plan.tls.as_ref()).await {
                Ok(c) => slot.conn.insert(c),
                Err(e) => {
                    return Err(Failure {
                        kind: ErrorKind::Connect,
                        detail: format!("{}: {e}", ctx.plan.addr),
                        conn_ok: false,
                        before_response: false,
                        fatal: false,
                    })
                }
            },
        };
        let reused = conn.served > 0;
        match exchange(
            conn,
            req.clone(),
            ctx.plan.api,
            ctx.plan.stream,
            &mut slot.scratch,
        )
        .await
        {
            Ok(a) => {
                conn.served += 1;
                if !a.keep_alive {
                    slot.conn = None;
                }
                return Ok(a);
            }
            Err(f) => {
                if f.conn_ok {
                    conn.served += 1;
                } else {
                    slot.conn = None;
                }
                if f.before_response && reused && !retry {
                    continue;
                }
                return Err(f);
            }
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// Yields to the other tasks once.
fn yield_now() -> impl Future<Output = ()> {
    struct Yield(bool);
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    Yield(false)
}

async fn sleep_until(t: Instant) {
    monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
}

/// This thread's share of `total` (the first `total % threads` get one more).
fn share(total: usize, thread: usize, threads: usize) -> usize {
    total / threads + usize::from(thread < total % threads)
}

async fn drive(
    plan: Arc<Plan>,
    control: Arc<Control>,
    thread: usize,
    start: Instant,
    tx: mpsc::Sender<Msg>,
) -> ThreadResult {
    let threads = plan.threads.max(1);
    // Each thread its own copy, so reference counts stay thread-local.
    let requests: Vec<Rc<Vec<u8>>> = plan.requests.iter().map(|r| Rc::new(r.clone())).collect();
    let first = (thread * requests.len()) / threads;
    let max_slots = share(plan.max_connections, thread, threads).max(1);
    let ctx = Rc::new(Ctx {
        plan: plan.clone(),
        control,
        requests,
        next: Cell::new(first),
        stats: RefCell::new(Stats::default()),
        tick: RefCell::new(Tick::default()),
        in_flight: Cell::new(0),
        sent: Cell::new(0),
        first_answer: Cell::new(None),
        last_answer: Cell::new(None),
        first_error: RefCell::new(None),
        pool: Pool::new(max_slots),
        ticks: plan.progress.is_some().then_some(tx),
        thread,
        start,
        next_second: Cell::new(1),
    });
    if ctx.ticks.is_some() {
        monoio::spawn(ticker(ctx.clone()));
    }
    sleep_until(start).await;
    let window_end = start + plan.window;
    match plan.load {
        Load::Open { rate, arrivals } => {
            let mut sched = Schedule::new(arrivals, rate, thread, threads, plan.seed);
            let mut burst = 0u32;
            while !ctx.control.stopped() {
                let at = start + sched.next_offset();
                if at >= window_end {
                    break;
                }
                if Instant::now() < at {
                    burst = 0;
                    sleep_until(at).await;
                } else {
                    // Behind schedule: let the requests already started run.
                    burst += 1;
                    if burst.is_multiple_of(32) {
                        yield_now().await;
                    }
                }
                ctx.begin();
                let c = ctx.clone();
                monoio::spawn(async move {
                    let mut slot = c.pool.acquire().await;
                    c.request(&mut slot, at).await;
                    c.pool.release(slot);
                });
            }
        }
        Load::Closed { concurrency } => {
            for _ in 0..share(concurrency, thread, threads) {
                let c = ctx.clone();
                monoio::spawn(async move {
                    let mut slot = Slot::default();
                    while !c.control.stopped() && Instant::now() < window_end {
                        c.begin();
                        c.request(&mut slot, Instant::now()).await;
                    }
                });
            }
            sleep_until(window_end).await;
        }
    }
    // Let the answers in flight finish, within the timeout.
    let drain_end = Instant::now() + plan.timeout;
    while ctx.in_flight.get() > 0 && !ctx.control.stopped() && Instant::now() < drain_end {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
    // The seconds the ticker has not sent yet: those passed, and the
    // current one if it lies within the window (this thread simply had
    // nothing more to send in it); a second past the window is partial.
    ctx.send_due_ticks();
    if Duration::from_secs(ctx.next_second.get()) <= plan.window {
        ctx.send_tick();
    }
    let mut stats = ctx.stats.borrow().clone();
    stats.unfinished = ctx.in_flight.get();
    ThreadResult {
        stats,
        sent: ctx.sent.get(),
        first_answer: ctx.first_answer.get(),
        last_answer: ctx.last_answer.get(),
        first_error: ctx.first_error.take(),
    }
}

/// Sends this thread's tick at each whole second of the run (ends with
/// the runtime).
async fn ticker(ctx: Rc<Ctx>) {
    loop {
        let next = ctx.start + Duration::from_secs(ctx.next_second.get());
        sleep_until(next).await;
        ctx.send_due_ticks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for total in [0, 1, 7, 100] {
            for threads in [1, 2, 3, 8] {
                let s: usize = (0..threads).map(|t| share(total, t, threads)).sum();
                assert_eq!(s, total);
            }
        }
    }
}
