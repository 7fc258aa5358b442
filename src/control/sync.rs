//! Keeping this instance in step with the cluster (control thread).
//!
//! One task: subscribed to the `changes` channel, it catches up on each
//! notification; every second it also sends the heartbeat and compares
//! the store version (a missed notification, a reconnect) — so a change
//! reaches this instance's data plane within about a second at worst, and
//! at once in the usual case. While Redis is down nothing changes here:
//! the last snapshot keeps serving. When it comes back without the store,
//! the catch-up writes this instance's copy back (the newest copy among
//! the instances wins; `cluster::link` says how versions make that safe).

use super::Control;
use crate::cluster::link::Head;
use crate::cluster::Link;
use crate::shared::Shared;
use crate::snapshot::{compile, Mode};
use crate::store::Resources;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(1);

/// Reads the store from Redis and, when it moved on, publishes the merged
/// snapshot. A store this instance cannot compile (its own config file
/// clashes with it) is still taken as the store, so the admin API shows
/// the cluster's truth, and logged; the data plane keeps its snapshot.
///
/// When Redis has no store (restarted without persistence, flushed) and
/// this instance holds a copy, the copy is written back; when Redis holds
/// an untouched seed made from an older copy than ours, ours replaces it
/// (the newest copy wins). See `cluster::link` for the versions.
pub async fn catch_up(shared: &Shared, res: &mut Resources) -> Result<bool, String> {
    let Some(link) = res.store.link().cloned() else {
        return Ok(false);
    };
    // How new our copy is (before this look at Redis: an instance that
    // has held nothing yet has no copy to write back).
    let held = res.store.version;
    let copy = link.copy_rank(held);
    let mut missed = None;
    // A seed attempt refused means Redis moved meanwhile: look again (a
    // few times; then take what is there).
    for _ in 0..3 {
        let head = link.store_head().await.map_err(|e| e.to_string())?;
        let older_seed = head.seeded_from.filter(|&from| from < copy);
        if head.version == held && (held != 0 || copy == 0) {
            return Ok(false);
        }
        if head.version != 0 && older_seed.is_none() {
            break;
        }
        missed = older_seed;
        if reseed(res, &link, head, copy).await? {
            return Ok(true);
        }
    }
    let Some((version, state)) = res.store.fetch().await? else {
        return Ok(false);
    };
    if let Some(from) = missed {
        if link
            .store_head()
            .await
            .is_ok_and(|h| h.seeded_from.is_none())
        {
            tracing::error!(
                "cluster: Redis was re-seeded from an older copy (store version {from}) than this \
                 instance's ({copy}), and changed since: what this instance had beyond that copy \
                 is not in the cluster store (taking version {version})"
            );
        }
    }
    res.store.state = state;
    res.store.version = version;
    publish_current(shared, res).await;
    Ok(true)
}

/// Writes this instance's copy (of version `from`) back as the store if
/// Redis is still at `head`; false when it moved or holds a copy at least
/// as new.
async fn reseed(res: &mut Resources, link: &Link, head: Head, from: u64) -> Result<bool, String> {
    let bytes = serde_json::to_vec(&res.store.state).expect("store state serializes");
    match link.seed_store(head.version, from, &bytes).await {
        Ok(Some(seeded)) => {
            let what = match head.seeded_from {
                None => "had lost the store".to_string(),
                Some(older) => format!("was re-seeded from an older copy (store version {older})"),
            };
            tracing::warn!(
                "cluster: Redis {what}; re-seeded it from this instance's copy (store version \
                 {from}, now {seeded})"
            );
            res.store.version = seeded;
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
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
