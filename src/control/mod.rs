//! The control thread's state (tokio; workers never touch it): what the
//! effective config is made of, and the ways it changes — a reload of the
//! config file, a DNS refresh, an admin write (`admin`), the cluster's
//! store moving on — each compiled off the request path and published to
//! the workers through [`Shared`]. [`sync`] follows the cluster's store.

pub mod sync;

use crate::config;
use crate::shared::Shared;
use crate::snapshot::{compile, Mode};
use crate::store::Resources;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The control plane's view: the workers' [`Shared`] state it publishes
/// into, and what only the control thread holds.
pub struct Control {
    pub shared: Arc<Shared>,
    pub config_path: String,
    /// The config file's resources and the admin store: together the
    /// effective config. Held while a change is compiled and published,
    /// so changes (admin writes, reloads) apply one at a time.
    pub resources: tokio::sync::Mutex<Resources>,
    /// A data-plane address reachable over loopback (admin debug requests).
    pub data_addr: SocketAddr,
    /// Cluster mode: the Redis link (control thread only; workers never
    /// touch it).
    pub cluster: Option<Arc<crate::cluster::Link>>,
}

impl Control {
    /// Re-resolves service hosts (workers never do) and, when an address
    /// changed, recompiles the running resources and publishes them.
    pub async fn refresh_dns(&self) {
        let snap = self.shared.snapshot.load_full();
        let changed = tokio::task::spawn_blocking(move || crate::snapshot::dns_changed(&snap));
        if !changed.await.unwrap_or(false) {
            return;
        }
        let res = self.resources.lock().await;
        let merged = res.store.state.merged_with(&res.file);
        let generation = self.shared.generation.load(Ordering::Acquire) + 1;
        let compiled =
            tokio::task::spawn_blocking(move || compile(&merged, generation, Mode::Serve)).await;
        if let Ok(Ok((snap, _))) = compiled {
            tracing::info!("service addresses changed; published generation {generation}");
            self.shared.publish(snap);
        }
    }

    /// Re-reads the config file and merges the store's resources; on any
    /// error keeps the running snapshot.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        let raw = config::load_file(&self.config_path).map_err(|e| vec![e.to_string()])?;
        let mut res = self.resources.lock().await;
        let merged = res.store.state.merged_with(&raw);
        let generation = self.shared.generation.load(Ordering::Acquire) + 1;
        let compiled =
            tokio::task::spawn_blocking(move || compile(&merged, generation, Mode::Serve))
                .await
                .map_err(|e| vec![e.to_string()])?;
        match compiled {
            Ok((snap, problems)) => {
                for w in &problems.warnings {
                    tracing::warn!("config: {}", res.describe(w));
                }
                self.shared.publish(snap);
                res.set_file(raw);
                Ok(())
            }
            Err(p) => Err(p.errors.iter().map(|e| res.describe(e)).collect()),
        }
    }
}
