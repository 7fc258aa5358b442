//! DashScope task id → service, shared through Redis (PRODUCT.md §11), so
//! a poll reaching any instance goes to the service that accepted the task.
//!
//! Workers never talk to Redis: they hand requests to the control thread
//! over a bounded channel and, for a lookup, await a one-shot answer — an
//! `await` on the worker's own event loop, never a blocking call. The
//! control thread answers within its Redis timeout (about a second) or
//! drops the answer, which reads as "not known". Meant to back the
//! per-process task map (a local miss asks here; a submit is remembered in
//! both).

use super::Link;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// DashScope keeps task results for 24 hours; so do we.
pub const TASK_TTL_S: u64 = 24 * 3600;
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
/// [`serve`].
pub fn channel() -> (ClusterTasks, mpsc::Receiver<Op>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (ClusterTasks { tx }, rx)
}

/// Control thread: answers the workers' requests from Redis, each in its
/// own task so one slow command does not hold up the rest.
/// `ttl_s` is [`TASK_TTL_S`] in service.
pub async fn serve(link: Arc<Link>, mut rx: mpsc::Receiver<Op>, ttl_s: u64) {
    while let Some(op) = rx.recv().await {
        let link = link.clone();
        tokio::spawn(async move {
            match op {
                Op::Put(id, service) => {
                    if let Err(e) = link.put_task(&id, &service, ttl_s).await {
                        tracing::warn!("cluster: task {id} not shared: {e}");
                    }
                }
                Op::Get(id, answer) => {
                    let found = link.get_task(&id).await.ok().flatten();
                    let _ = answer.send(found.map(Arc::from));
                }
            }
        });
    }
}
