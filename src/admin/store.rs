//! The embedded store: resources made through the admin API, kept in one
//! JSON file (`store.path`).
//!
//! Every save writes a temp file beside the store, fsyncs it, renames it
//! over the store and fsyncs the directory, so the file on disk is always
//! either the old state or the new one: a `kill -9` at any moment never
//! loses an acknowledged change nor leaves a file that fails to load.

use super::auth::Tokens;
use crate::config::raw::{ConsumerSpec, ModelApiSpec, RawConfig, ServiceSpec};
use crate::config::FieldError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A resource group made through the admin API.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// What the store file holds.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreState {
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub model_apis: Vec<ModelApiSpec>,
    #[serde(default)]
    pub consumers: Vec<ConsumerSpec>,
    #[serde(default)]
    pub resource_groups: Vec<GroupSpec>,
}

impl StoreState {
    /// The effective config: the file's resources, then the store's.
    pub fn merged_with(&self, file: &RawConfig) -> RawConfig {
        let mut raw = file.clone();
        raw.services.extend(self.services.iter().cloned());
        raw.model_apis.extend(self.model_apis.iter().cloned());
        raw.consumers.extend(self.consumers.iter().cloned());
        raw
    }
}

/// What the effective config is made of: the config file as last loaded,
/// the store, and the admin tokens of that file.
pub struct Resources {
    pub file: RawConfig,
    pub store: Store,
    pub tokens: Tokens,
}

impl Resources {
    pub fn new(file: RawConfig, store: Store) -> Resources {
        let tokens = Tokens::from_config(&file.admin);
        Resources {
            file,
            store,
            tokens,
        }
    }

    /// A reloaded config file.
    pub fn set_file(&mut self, file: RawConfig) {
        self.tokens = Tokens::from_config(&file.admin);
        self.file = file;
    }

    /// A problem of the merged config, said so that resources of the store
    /// are named by their place in the store file, not in the merge.
    pub fn describe(&self, e: &FieldError) -> String {
        let lists = [
            ("services[", self.file.services.len()),
            ("model_apis[", self.file.model_apis.len()),
            ("consumers[", self.file.consumers.len()),
        ];
        for (prefix, in_file) in lists {
            let Some(rest) = e.path.strip_prefix(prefix) else {
                continue;
            };
            let Some((index, tail)) = rest.split_once(']') else {
                continue;
            };
            match index.parse::<usize>() {
                Ok(i) if i >= in_file => {
                    return format!(
                        "{} (admin store): {prefix}{}]{tail}: {}",
                        self.store.path.display(),
                        i - in_file,
                        e.message
                    )
                }
                _ => break,
            }
        }
        e.to_string()
    }
}

/// The store file and the state last written to it.
pub struct Store {
    path: PathBuf,
    pub state: StoreState,
}

impl Store {
    /// Opens the store at `path`; a missing file is an empty store.
    pub fn open(path: impl Into<PathBuf>) -> Result<Store, String> {
        let path = path.into();
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("store {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreState::default(),
            Err(e) => return Err(format!("store {}: {e}", path.display())),
        };
        Ok(Store { path, state })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `state` durable, then keeps it. On error the file and the
    /// state in memory are unchanged.
    pub fn save(&mut self, state: StoreState) -> std::io::Result<()> {
        write_atomically(&self.path, &encode(&state))?;
        self.state = state;
        Ok(())
    }

    /// Like `save`, with the disk writes on tokio's blocking pool.
    pub async fn save_async(&mut self, state: StoreState) -> std::io::Result<()> {
        let (path, bytes) = (self.path.clone(), encode(&state));
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(std::io::Error::other)??;
        self.state = state;
        Ok(())
    }
}

fn encode(state: &StoreState) -> Vec<u8> {
    serde_json::to_vec_pretty(state).expect("store state serializes")
}

/// temp file + fsync + rename + fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        // Services may hold literal API keys: readable by the owner only.
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_reopen_and_missing_is_empty() {
        let dir = std::env::temp_dir().join(format!("mg-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/state.json");
        let mut s = Store::open(&path).unwrap();
        assert!(s.state.services.is_empty());
        let mut next = s.state.clone();
        next.resource_groups.push(GroupSpec {
            name: "team-a".into(),
            description: String::new(),
        });
        s.save(next).unwrap();
        assert!(!dir.join("sub/state.json.tmp").exists());
        let again = Store::open(&path).unwrap();
        assert_eq!(again.state.resource_groups[0].name, "team-a");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Store::open(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
