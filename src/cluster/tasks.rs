//! DashScope task id → service, shared through Redis (PRODUCT.md §11), so
//! a poll reaching any instance goes to the service that accepted the task:
//! the control thread's side of [`crate::tasks::ClusterTasks`], answering
//! the workers' requests.

use super::Link;
use crate::tasks::Op;
use std::sync::Arc;
use tokio::sync::mpsc;

/// DashScope keeps task results for 24 hours; so do we.
pub const TASK_TTL_S: u64 = 24 * 3600;

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
