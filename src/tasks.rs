//! DashScope task id → the service that accepted it, the one memory the
//! data plane keeps outside the snapshot (in `shared::Shared`), so it
//! survives reloads; the service is kept by name and looked up in the
//! snapshot of the poll (`scenario::tasks`). It is touched only by submits
//! and polls (never by chat traffic): a few sharded `Mutex<HashMap>`s, each
//! held for one insert or lookup, are cheaper and simpler than a lock-free
//! map here. Bounded (oldest entries go first) and expiring (DashScope
//! keeps task results for 24 hours).
//!
//! In cluster mode (PRODUCT.md §11) a local miss asks the memory every
//! instance shares, and a submit is remembered in both. Workers never talk
//! to Redis: they hand requests to the control thread over a bounded
//! channel ([`ClusterTasks`]) and, for a lookup, await a one-shot answer —
//! an `await` on the worker's own event loop, never a blocking call. The
//! control thread (`cluster::tasks::serve`) answers within its Redis
//! timeout (about a second) or drops the answer, which reads as "not
//! known".

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long a task is remembered: DashScope keeps results for 24 hours.
pub const TASK_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most tasks remembered at once (per process).
pub const MAX_TASKS: usize = 65_536;
const SHARDS: usize = 16;

struct Entry {
    service: Arc<str>,
    expires: Instant,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<str>, Entry>,
    /// Insertion order = expiry order (one TTL for all), for eviction.
    order: VecDeque<(Box<str>, Instant)>,
}

/// Task id → name of the service that accepted it.
pub struct TaskMap {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_shard: usize,
    ttl: Duration,
    /// Cluster mode: the memory every instance shares (Redis, through the
    /// control thread), asked on a local miss.
    cluster: Option<ClusterTasks>,
}

impl Default for TaskMap {
    fn default() -> Self {
        TaskMap::new(MAX_TASKS, TASK_TTL)
    }
}

impl TaskMap {
    pub fn new(capacity: usize, ttl: Duration) -> TaskMap {
        TaskMap {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            ttl,
            cluster: None,
        }
    }

    /// Backs this map with the cluster's shared task memory.
    pub fn with_cluster(mut self, cluster: Option<ClusterTasks>) -> TaskMap {
        self.cluster = cluster;
        self
    }

    /// The service that accepted task `id`: this process's memory, then
    /// (cluster mode) the other instances', remembered here once found.
    pub async fn find(&self, id: &str) -> Option<Arc<str>> {
        if let Some(found) = self.get(id) {
            return Some(found);
        }
        let found = self.cluster.as_ref()?.recall(id).await?;
        self.insert_at(id, &found, Instant::now());
        Some(found)
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(id) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, id: &str, service: &str) {
        self.insert_at(id, service, Instant::now());
        if let Some(c) = &self.cluster {
            c.remember(id, service);
        }
    }

    fn insert_at(&self, id: &str, service: &str, now: Instant) {
        let expires = now + self.ttl;
        let mut s = self.shard(id);
        // Expired entries go first, then the oldest while full.
        while let Some((_, at)) = s.order.front() {
            if *at > now && s.order.len() < self.per_shard {
                break;
            }
            let (old, at) = s.order.pop_front().expect("front exists");
            // A re-inserted id has a newer entry: leave that one.
            if s.map.get(&old).is_some_and(|e| e.expires == at) {
                s.map.remove(&old);
            }
        }
        let key: Box<str> = id.into();
        s.order.push_back((key.clone(), expires));
        s.map.insert(
            key,
            Entry {
                service: service.into(),
                expires,
            },
        );
    }

    /// The service that accepted task `id`, unless forgotten or expired.
    pub fn get(&self, id: &str) -> Option<Arc<str>> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Arc<str>> {
        let mut s = self.shard(id);
        match s.map.get(id) {
            Some(e) if e.expires > now => Some(e.service.clone()),
            Some(_) => {
                s.map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Requests queued for the control thread; past this a submit is not
/// shared (logged) and a lookup answers "not known".
const QUEUE: usize = 4096;
/// How a worker waits for a lookup: 1 ms steps, 1.5 s at most.
const RECALL_POLL: std::time::Duration = std::time::Duration::from_millis(1);
const RECALL_POLLS: usize = 1500;

/// Where the data plane keeps and finds task owners. `remember` never
/// waits; `recall` may wait for the cluster, never blocks a thread.
pub trait TaskMemory {
    fn remember(&self, task_id: &str, service: &str);
    fn recall(&self, task_id: &str) -> Pin<Box<dyn Future<Output = Option<Arc<str>>> + '_>>;
}

/// A worker's request to the control thread.
pub enum Op {
    Put(String, String),
    Get(String, oneshot::Sender<Option<Arc<str>>>),
}

/// The workers' handle on the shared task memory (cheap to clone, Send).
#[derive(Clone)]
pub struct ClusterTasks {
    tx: mpsc::Sender<Op>,
}

impl TaskMemory for ClusterTasks {
    fn remember(&self, task_id: &str, service: &str) {
        if self
            .tx
            .try_send(Op::Put(task_id.into(), service.into()))
            .is_err()
        {
            tracing::warn!("cluster: task {task_id} not shared (queue full)");
        }
    }

    fn recall(&self, task_id: &str) -> Pin<Box<dyn Future<Output = Option<Arc<str>>> + '_>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.try_send(Op::Get(task_id.into(), tx)).is_ok();
        Box::pin(async move {
            if !sent {
                return None;
            }
            // Polled on the worker's own timer: monoio (built without its
            // `sync` feature) is not woken by a waker fired on another
            // thread. Bounded: the control thread answers or gives up
            // within its Redis timeout.
            let mut rx = rx;
            for _ in 0..RECALL_POLLS {
                match rx.try_recv() {
                    Ok(found) => return found,
                    Err(oneshot::error::TryRecvError::Closed) => return None,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        monoio::time::sleep(RECALL_POLL).await
                    }
                }
            }
            None
        })
    }
}

/// The workers' handle, and the control thread's side to run with
/// `cluster::tasks::serve`.
pub fn channel() -> (ClusterTasks, mpsc::Receiver<Op>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (ClusterTasks { tx }, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_bounded_and_expiring() {
        let map = TaskMap::new(32, Duration::from_secs(10));
        let t0 = Instant::now();
        map.insert_at("a", "svc-a", t0);
        map.insert_at("b", "svc-b", t0);
        assert_eq!(map.get_at("a", t0).as_deref(), Some("svc-a"));
        assert_eq!(map.get_at("b", t0).as_deref(), Some("svc-b"));
        assert_eq!(map.get_at("c", t0), None);
        // Expired: forgotten.
        assert_eq!(map.get_at("a", t0 + Duration::from_secs(11)), None);
        // Re-inserting refreshes and moves to another service.
        map.insert_at("b", "svc-c", t0 + Duration::from_secs(5));
        assert_eq!(
            map.get_at("b", t0 + Duration::from_secs(12)).as_deref(),
            Some("svc-c")
        );
        // Bounded: many inserts keep at most the capacity (per shard).
        for i in 0..10_000 {
            map.insert_at(&format!("t{i}"), "s", t0 + Duration::from_secs(6));
        }
        assert!(map.len() <= 32 + SHARDS, "{}", map.len());
        // The newest are kept.
        assert_eq!(
            map.get_at("t9999", t0 + Duration::from_secs(7)).as_deref(),
            Some("s")
        );
        // One id inserted over and over does not grow the order queue.
        let one = TaskMap::new(16, Duration::from_secs(10));
        for _ in 0..1000 {
            one.insert_at("same", "s", t0);
        }
        let queued: usize = one
            .shards
            .iter()
            .map(|s| s.lock().unwrap().order.len())
            .sum();
        assert!(queued <= 1, "{queued}");
        assert_eq!(one.get_at("same", t0).as_deref(), Some("s"));
    }
}
