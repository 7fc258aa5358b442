//! What every worker reads, held once per process: the current snapshot
//! and the few process-wide counters and memories that outlive snapshots.
//! Everything else is per core; the control thread's own state is
//! `control::Control`, above this.

use crate::snapshot::Snapshot;
use crate::tasks::TaskMap;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// State shared by all workers: the snapshot and the few process-wide
/// counters. Everything else is per core.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Bumped after each snapshot store; workers compare it per request.
    pub generation: AtomicU64,
    pub shutdown: AtomicBool,
    pub connections: AtomicUsize,
    pub workers: usize,
    pub workers_ready: AtomicUsize,
    /// Rate-limit windows, kept across snapshots.
    pub limits: crate::limit::Registry,
    /// Metrics registry, access log writer, span export.
    pub observe: Arc<crate::observe::Observe>,
    /// Per-process secret carried in [`DEBUG_HEADER`] by the admin debug
    /// request, so it passes consumer auth. Never leaves the process.
    pub debug_token: String,
    /// DashScope task id → service that accepted it; outlives snapshots.
    pub tasks: TaskMap,
    /// Client connections the open-file limit leaves room for (each may
    /// need an upstream connection too): caps `max_connections`.
    pub client_budget: usize,
    /// Bytes of JSON bodies held past the body buffer, all workers.
    pub body_memory: std::sync::atomic::AtomicUsize,
}

/// Header that marks the admin's own debug request; the data plane never
/// forwards it and trusts it only with the exact [`Shared::debug_token`].
pub const DEBUG_HEADER: &str = "x-modelgate-debug";

impl Shared {
    pub fn ready(&self) -> bool {
        self.workers_ready.load(Ordering::Acquire) == self.workers
            && !self.shutdown.load(Ordering::Acquire)
    }

    /// Publishes a new snapshot to every worker.
    pub fn publish(&self, mut snap: Snapshot) {
        self.limits.adopt(&mut snap.limits);
        let generation = snap.generation;
        self.snapshot.store(Arc::new(snap));
        self.generation.store(generation, Ordering::Release);
    }

    /// The [`DEBUG_HEADER`] value of a debug request through Model API
    /// `api`: the data plane trusts it on that Model API only.
    pub fn debug_marker(&self, api: &str) -> String {
        format!("{} {api}", self.debug_token)
    }

    /// Whether a request's [`DEBUG_HEADER`] value is this process's own
    /// marker for Model API `api`.
    pub fn trusts_debug(&self, value: &[u8], api: &str) -> bool {
        let Some(at) = value.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (value, named) = (&value[..at], &value[at + 1..]);
        let want = self.debug_token.as_bytes();
        named == api.as_bytes()
            && value.len() == want.len()
            && value
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}
