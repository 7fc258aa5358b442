//! `mock-llm`: a deterministic mock LLM upstream (OpenAI, Anthropic,
//! DashScope, vLLM rerank shapes) with per-request fault injection, written
//! on raw tokio TCP so resets, stalls and partial streams are exact.
//!
//! Modules: [`http`] (request parsing, response framing), [`api`] (what each
//! endpoint answers), [`scenarios`] (image edits, ComfyUI, files), [`ws`]
//! (WebSocket echo), [`server`] (connections, faults, inspection).

pub mod api;
pub mod http;
pub mod pacing;
pub mod scenarios;
pub mod server;
pub mod ws;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;

pub use server::{bind, run};

/// How many requests `/_mock/requests` (and events `/_mock/events`) keeps.
pub const MAX_RECORDS: usize = 1000;

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Reported in `x-mock-name`, task ids and `served_by`; matched by
    /// `x-mock-fault-target`.
    pub name: String,
    /// Time to the first output token of a generation.
    pub ttft_ms: u64,
    /// Time between output tokens.
    pub itl_ms: u64,
    /// Generations served at once at most (0: no limit); more wait.
    pub max_concurrency: usize,
    /// Raw delay before every stream event.
    pub chunk_delay_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "mock".to_string(),
            ttft_ms: 0,
            itl_ms: 0,
            max_concurrency: 0,
            chunk_delay_ms: 0,
        }
    }
}

/// One recorded request, as `/_mock/requests` and `x-mock-echo` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub method: String,
    /// The request target as received (path and query).
    pub path: String,
    /// `[name, value]` pairs, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The de-framed body, UTF-8 lossy.
    pub body: String,
    /// The TCP connection's sequence number (same number = reused).
    pub conn: u64,
}

impl Record {
    pub fn of(req: &http::Request) -> Record {
        Record {
            method: req.method.clone(),
            path: req.target.clone(),
            headers: req.headers.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            conn: req.conn,
        }
    }
}

/// One connection-level event, as `/_mock/events` shows it: what reached
/// the mock and how each exchange ended, including requests that never
/// arrived whole (which `/_mock/requests` cannot show).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `head`: a request head was read (before its body); `cut`: the
    /// connection ended before that request's body was whole; `peer_closed`:
    /// the peer closed the connection before the response was sent whole;
    /// `hung_up`: the mock closed the connection without answering
    /// (`x-mock-hang-up`).
    pub event: &'static str,
    /// The TCP connection's sequence number, as in [`Record::conn`].
    pub conn: u64,
    /// The request's `x-request-id`, if it had one.
    pub request_id: Option<String>,
    /// Milliseconds since the mock started.
    pub at_ms: u64,
    /// `head`: declared Content-Length; `cut`: body bytes received;
    /// `peer_closed`: ms since the request was read whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
}

/// Shared server state (counters, records, issued task ids).
pub struct State {
    pub cfg: Config,
    seq: AtomicU64,
    conn_seq: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub requests_total: AtomicU64,
    records: Mutex<VecDeque<Record>>,
    events: Mutex<VecDeque<Event>>,
    started: Instant,
    tasks: Mutex<HashSet<String>>,
    /// Generation slots when `max_concurrency` is set.
    pub slots: Option<Semaphore>,
}

impl State {
    pub fn new(cfg: Config) -> State {
        let slots = (cfg.max_concurrency > 0).then(|| Semaphore::new(cfg.max_concurrency));
        State {
            slots,
            cfg,
            seq: AtomicU64::new(0),
            conn_seq: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            records: Mutex::new(VecDeque::new()),
            events: Mutex::new(VecDeque::new()),
            started: Instant::now(),
            tasks: Mutex::new(HashSet::new()),
        }
    }

    /// The next id number (for `chatcmpl-mock-N`, `msg_mock_N`, tasks...).
    pub fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn next_conn(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn record(&self, rec: Record) {
        let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= MAX_RECORDS {
            r.pop_front();
        }
        r.push_back(rec);
    }

    pub fn records_json(&self) -> Vec<u8> {
        let r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let v: Vec<&Record> = r.iter().collect();
        serde_json::to_vec(&v).unwrap_or_else(|_| b"[]".to_vec())
    }

    pub fn clear_records(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Logs a connection event (see [`Event`]).
    pub fn event(
        &self,
        event: &'static str,
        conn: u64,
        request_id: Option<&str>,
        value: Option<u64>,
    ) {
        let ev = Event {
            event,
            conn,
            request_id: request_id.map(str::to_string),
            at_ms: self.started.elapsed().as_millis() as u64,
            value,
        };
        let mut e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() >= MAX_RECORDS {
            e.pop_front();
        }
        e.push_back(ev);
    }

    pub fn events_json(&self) -> Vec<u8> {
        let e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let v: Vec<&Event> = e.iter().collect();
        serde_json::to_vec(&v).unwrap_or_else(|_| b"[]".to_vec())
    }

    pub fn clear_events(&self) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn add_task(&self, id: String) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    pub fn has_task(&self, id: &str) -> bool {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    pub fn stats_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "connections_open": self.connections_open.load(Ordering::SeqCst),
            "connections_total": self.connections_total.load(Ordering::SeqCst),
            "requests_total": self.requests_total.load(Ordering::SeqCst),
        }))
        .unwrap_or_default()
    }
}
