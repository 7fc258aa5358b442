//! What the command does: check the arguments and build the requests, then
//! one run, a sweep, or a comparison; print the table, write the report,
//! and choose the exit status.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::cli::Args;
use super::http::Url;
use super::report::{self, Report, Setup};
use super::run::{self, Load, Outcome, Plan};
use super::stats::{ErrorKind, Stats};
use super::sweep::{self, Slo, SweepReport, SweepSpec};
use super::tls::Tls;
use super::workload::{self, Api, BodySpec, Dist, Prompts};

/// Exit statuses.
pub const EXIT_OK: i32 = 0;
pub const EXIT_RUN_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_SLO: i32 = 3;

/// The prompt when none is given.
const DEFAULT_PROMPT: &str = "Write a short story about a lighthouse keeper.";

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("modelgate-load: {msg}");
    EXIT_USAGE
}

/// Runs the command; returns the exit status.
pub fn main(args: Args) -> i32 {
    if let Some(files) = &args.compare {
        return compare(&files[0], &files[1]);
    }
    let Some(url_text) = args.url.clone() else {
        return fail("give the endpoint URL (or --compare A.json B.json); see --help");
    };
    let url = match Url::parse(&url_text) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let api = match args.api.or_else(|| Api::from_path(&url.path)) {
        Some(a) => a,
        None => {
            return fail(format!(
                "cannot tell the API from the path {:?}: pass --api chat|completions|embeddings|messages",
                url.path
            ))
        }
    };
    if args.stream && api == Api::Embeddings {
        return fail("--stream: embeddings are not streamed");
    }
    let slos = args.slo.clone();
    if !args.stream {
        if let Some(s) = slos
            .iter()
            .find(|s| matches!(s, Slo::Within { metric, .. } if metric.needs_stream()))
        {
            return fail(format!("--slo {s}: only streams (--stream) measure it"));
        }
    }
    let tls = match (url.tls, &args.cacert) {
        (true, ca) => match Tls::new(&url.host, ca.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => return fail(e),
        },
        (false, Some(_)) => return fail("--cacert is for https URLs"),
        (false, None) => None,
    };
    let requests = match build_requests(&args, &url, api) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    raise_fd_limit();
    install_interrupt_handler();

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut plan = Plan {
        addr: url.addr,
        tls,
        api,
        stream: args.stream,
        requests,
        load: Load::Closed { concurrency: 1 },
        window: args.duration,
        timeout: args.timeout,
        threads,
        max_connections: args.connections.max(1),
        seed: args.seed,
        io: args.io,
        progress: (!args.quiet).then(String::new),
    };
    let mut setup = Setup {
        url: url_text,
        api: format!("{api:?}").to_lowercase(),
        rate: None,
        arrivals: None,
        concurrency: None,
        stream: args.stream,
        threads,
        duration_s: args.duration.as_secs_f64(),
    };
    if args.sweep.is_none() {
        shape(&args, &mut plan, &mut setup);
    }

    if let Err(e) = run::preflight(url.addr, args.timeout) {
        eprintln!("modelgate-load: {e}");
        let mut stats = Stats::default();
        stats.error(ErrorKind::Connect);
        let o = Outcome {
            stats,
            elapsed: Duration::from_millis(1),
            answer_span: None,
            sent: 1,
            fatal: Some(e),
            interrupted: false,
            first_error: None,
        };
        let r = Report::new(&setup, &o);
        write_json(args.json.as_deref(), &r);
        return EXIT_RUN_FAILED;
    }

    match args.sweep {
        Some(spec) => sweep_main(&args, spec, &slos, plan, setup),
        None => single(&args, &slos, plan, setup),
    }
}

fn build_requests(args: &Args, url: &Url, api: Api) -> Result<Vec<Vec<u8>>, String> {
    let mut headers = Vec::new();
    for h in &args.headers {
        headers.push(workload::parse_header(h, |k| std::env::var(k).ok())?);
    }
    let prompts = if let Some(path) = &args.prompt_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--prompt-file {}: {e}", path.display()))?;
        Prompts::File(workload::parse_jsonl(&path.display().to_string(), &text)?)
    } else if let Some(d) = args.input_tokens {
        Prompts::Synthetic(d)
    } else {
        Prompts::Fixed(
            args.prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_PROMPT.to_string()),
        )
    };
    let spec = BodySpec {
        api,
        model: args.model.clone(),
        stream: args.stream,
        output: args.max_tokens.map(Dist::Fixed).or(args.output_tokens),
        ignore_eos: args.ignore_eos,
    };
    let head = workload::request_head(url, api, args.stream, &headers);
    Ok(workload::bodies(&spec, &prompts, DEFAULT_PROMPT, args.seed)
        .iter()
        .map(|b| workload::render_request(&head, b))
        .collect())
}

/// Why a finished run counts as failed, if it does.
fn run_failure(o: &Outcome) -> Option<String> {
    if let Some(f) = &o.fatal {
        return Some(f.clone());
    }
    if o.interrupted {
        return Some("interrupted".to_string());
    }
    if o.stats.ok == 0 {
        let mut m = "no request succeeded".to_string();
        if let Some(e) = &o.first_error {
            m.push_str(&format!(" (first error: {e})"));
        }
        return Some(m);
    }
    None
}

/// Sets a single run's load: open loop at `--rate`, else closed loop.
fn shape(args: &Args, plan: &mut Plan, setup: &mut Setup) {
    match args.rate {
        Some(rate) => {
            plan.load = Load::Open {
                rate,
                arrivals: args.arrivals,
            };
            setup.rate = Some(rate);
            setup.arrivals = Some(format!("{:?}", args.arrivals).to_lowercase());
        }
        None => {
            let c = args.concurrency.unwrap_or(1).max(1);
            plan.load = Load::Closed { concurrency: c };
            plan.threads = plan.threads.min(c);
            setup.threads = plan.threads;
            setup.concurrency = Some(c);
        }
    }
}

fn single(args: &Args, slos: &[Slo], plan: Plan, setup: Setup) -> i32 {
    let o = run::run(&Arc::new(plan));
    let mut r = Report::new(&setup, &o);
    if !slos.is_empty() {
        r.slo_violations = sweep::violations(slos, &r);
        r.slo_met = Some(r.slo_violations.is_empty());
    }
    print!("{}", r.table());
    let wrote = write_json(args.json.as_deref(), &r);
    if let Some(why) = run_failure(&o) {
        eprintln!("modelgate-load: {why}");
        return EXIT_RUN_FAILED;
    }
    if !wrote {
        return EXIT_RUN_FAILED;
    }
    if r.slo_met == Some(false) {
        return EXIT_SLO;
    }
    EXIT_OK
}

fn sweep_main(args: &Args, spec: SweepSpec, slos: &[Slo], plan: Plan, setup: Setup) -> i32 {
    let mut out = SweepReport {
        sweep: spec.to_string(),
        slo: slos.iter().map(ToString::to_string).collect(),
        max_rate: None,
        steps: Vec::new(),
    };
    println!(
        "{}  sweep {spec}, {}s per step",
        setup.url, setup.duration_s
    );
    println!("{}", sweep::STEP_HEADER);
    let mut failed_run = None;
    for rate in spec.rates() {
        let mut p = plan.clone();
        p.load = Load::Open {
            rate,
            arrivals: args.arrivals,
        };
        p.progress = p.progress.map(|_| format!("{rate}/s "));
        let mut s = setup.clone();
        s.rate = Some(rate);
        s.arrivals = Some(format!("{:?}", args.arrivals).to_lowercase());
        let o = run::run(&Arc::new(p));
        let mut r = Report::new(&s, &o);
        r.slo_violations = sweep::violations(slos, &r);
        r.slo_met = Some(r.slo_violations.is_empty());
        println!("{}", sweep::step_row(&r));
        let met = r.slo_met == Some(true);
        out.steps.push(r);
        if o.fatal.is_some() || o.interrupted {
            failed_run = run_failure(&o);
            break;
        }
        if !met {
            break;
        }
        out.max_rate = Some(rate);
    }
    match out.max_rate {
        Some(m) => println!("max rate meeting the SLO: {m}/s"),
        None => println!("no rate met the SLO"),
    }
    let wrote = write_json(args.json.as_deref(), &out);
    if let Some(why) = failed_run {
        eprintln!("modelgate-load: {why}");
        return EXIT_RUN_FAILED;
    }
    if !wrote {
        return EXIT_RUN_FAILED;
    }
    if out.max_rate.is_none() {
        return EXIT_SLO;
    }
    EXIT_OK
}

/// Writes the report if asked; false when it could not be written.
fn write_json<T: Serialize>(path: Option<&Path>, v: &T) -> bool {
    let Some(path) = path else {
        return true;
    };
    let text = match serde_json::to_string_pretty(v) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("modelgate-load: cannot encode the report: {e}");
            return false;
        }
    };
    match std::fs::write(path, text + "\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("modelgate-load: cannot write {}: {e}", path.display());
            false
        }
    }
}

fn compare(a: &Path, b: &Path) -> i32 {
    let read = |p: &Path| -> Result<Value, String> {
        let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&t).map_err(|e| format!("{}: not a JSON report: {e}", p.display()))
    };
    let (va, vb) = match (read(a), read(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    print!(
        "{}",
        report::compare(&a.display().to_string(), &va, &b.display().to_string(), &vb)
    );
    EXIT_OK
}

/// Lets the run keep as many connections as the hard limit allows.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialized struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

extern "C" fn on_interrupt(_: libc::c_int) {
    run::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The first Ctrl-C stops the run and keeps the report; the handler then
/// resets, so a second one ends the process at once.
fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; the sigaction struct is fully initialized.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}
