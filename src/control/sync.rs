//! Keeping this instance in step with the cluster (control thread).
//!
//! One task: subscribed to the `changes` channel, it catches up on each
//! notification; every second it also sends the heartbeat and compares
//! the store version (a missed notification, a reconnect) — so a change
//! reaches this instance's data plane within about a second at worst, and
//! at once in the usual case. While Redis is down nothing changes here:
//! the last snapshot keeps serving.

use super::Control;
use crate::cluster::Link;
use crate::shared::Shared;
use crate::snapshot::{compile, Mode};
use crate::store::{Resources, SaveError};
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(1);

/// Reads the store from Redis and, when it moved on, publishes the merged
/// snapshot. A store this instance cannot compile (its own config file
/// clashes with it) is still taken as the store, so the admin API shows
/// the cluster's truth, and logged; the data plane keeps its snapshot.
pub async fn catch_up(shared: &Shared, res: &mut Resources) -> Result<bool, String> {
    let Some((version, state)) = res.store.fetch().await? else {
        return Ok(false);
    };
    if version == 0 && res.store.version > 0 {
        // Redis came back without the store (restarted without
        // persistence, flushed): put back the last copy we hold. Only one
        // instance wins this compare-and-set; the others take its copy.
        let (mine, held) = (res.store.state.clone(), res.store.version);
        res.store.version = 0;
        return match res.store.save_async(mine).await {
            Ok(()) => {
                tracing::warn!("cluster: Redis had lost the store; restored it from this instance");
                Ok(true)
            }
            Err(SaveError::Stale) => Box::pin(catch_up(shared, res)).await,
            Err(e) => {
                res.store.version = held;
                Err(e.to_string())
            }
        };
    }
    res.store.state = state;
    res.store.version = version;
    publish_current(shared, res).await;
    Ok(true)
}

/// Compiles the store as held now, merged with the config file, and
/// publishes it; a compile error is logged and the snapshot kept.
pub async fn publish_current(shared: &Shared, res: &Resources) {
    let merged = res.store.state.merged_with(&res.file);
    let generation = shared.generation.load(Ordering::Acquire) + 1;
    let compiled =
        tokio::task::spawn_blocking(move || compile(&merged, generation, Mode::Serve)).await;
    let version = res.store.version;
    match compiled {
        Ok(Ok((snap, _))) => {
            tracing::info!("cluster: store version {version} applied (generation {generation})");
            shared.publish(snap);
        }
        Ok(Err(p)) => {
            for e in &p.errors {
                tracing::error!(
                    "cluster: store version {version} not applied here: {}",
                    res.describe(e)
                );
            }
        }
        Err(e) => tracing::error!("cluster: compile: {e}"),
    }
}

async fn refresh(ctl: &Control) {
    let mut res = ctl.resources.lock().await;
    if let Err(e) = catch_up(&ctl.shared, &mut res).await {
        tracing::debug!("cluster: catch-up failed: {e}");
    }
}

/// Runs until the process ends: notifications, heartbeat, catch-up.
pub async fn run(ctl: Arc<Control>, link: Arc<Link>) {
    let channel = link.key("changes");
    let mut notes: Option<redis::aio::PubSubStream> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            note = next_note(&mut notes) => match note {
                Some(_) => refresh(&ctl).await,
                None => {
                    tracing::debug!("cluster: notification stream ended");
                    notes = None;
                }
            },
            _ = tick.tick() => {
                if link.heartbeat().await.is_err() {
                    notes = None;
                    continue;
                }
                if notes.is_none() {
                    notes = subscribe(&link, &channel).await;
                }
                // Safety net, and the catch-up after a reconnect.
                refresh(&ctl).await;
            }
        }
    }
}

async fn next_note(notes: &mut Option<redis::aio::PubSubStream>) -> Option<redis::Msg> {
    match notes {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn subscribe(link: &Link, channel: &str) -> Option<redis::aio::PubSubStream> {
    let open = async {
        let mut ps = link.client().get_async_pubsub().await?;
        ps.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(ps.into_on_message())
    };
    match tokio::time::timeout(TICK, open).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!("cluster: subscribe failed: {e}");
            None
        }
        Err(_) => None,
    }
}
