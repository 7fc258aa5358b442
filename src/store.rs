//! The embedded store: resources made through the admin API, kept in one
//! JSON file (`store.path`), or in Redis in cluster mode; and [`Resources`],
//! what the effective config is made of (the config file, the store, the
//! admin tokens of that file). Below both `admin`, which writes it, and
//! `control`, which compiles and publishes it.
//!
//! Every save writes a temp file beside the store, fsyncs it, renames it
//! over the store and fsyncs the directory, so the file on disk is always
//! either the old state or the new one: a `kill -9` at any moment never
//! loses an acknowledged change nor leaves a file that fails to load.

use crate::cluster::Link;
use crate::config::raw::{AdminRaw, ConsumerSpec, ModelApiSpec, RawConfig, ServiceSpec};
use crate::config::{resolve_secret, FieldError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// A reloaded config file; a change of the admin API's mode is logged.
    pub fn set_file(&mut self, file: RawConfig) {
        let tokens = Tokens::from_config(&file.admin);
        if tokens.configured != self.tokens.configured {
            tokens.log_mode();
        }
        self.tokens = tokens;
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
                        self.store.label(),
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

/// The admin tokens of the config file, resolved; `admin::auth::access`
/// decides each request's access with them.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// `admin.token`: None when not configured; Err when configured but
    /// unresolvable or empty (then only scoped tokens get in: fail closed).
    pub full: Option<Result<String, String>>,
    /// `[[admin.tokens]]`: each token with the resource groups it may touch.
    pub scoped: Vec<(String, Vec<String>)>,
    /// Whether the file configures any admin token at all (resolvable or
    /// not). Only when it does not are loopback clients let in without one.
    pub configured: bool,
}

impl Tokens {
    pub fn from_config(admin: &AdminRaw) -> Tokens {
        let full = admin.token.as_deref().map(|t| {
            let resolved = resolve_secret(t).and_then(|v| {
                if v.is_empty() {
                    Err("is empty".to_string())
                } else {
                    Ok(v)
                }
            });
            resolved.map_err(|e| {
                tracing::error!("admin.token: {e}; only scoped tokens are accepted");
                e
            })
        });
        let mut scoped = Vec::new();
        for (i, t) in admin.tokens.iter().enumerate() {
            match resolve_secret(&t.token) {
                Ok(v) if !v.is_empty() => scoped.push((v, t.resource_groups.clone())),
                Ok(_) => tracing::error!("admin.tokens[{i}].token is empty; ignored"),
                Err(e) => tracing::error!("admin.tokens[{i}].token: {e}; ignored"),
            }
        }
        Tokens {
            full,
            scoped,
            configured: admin.token.is_some() || !admin.tokens.is_empty(),
        }
    }

    /// The groups named by scoped tokens (they exist as resource groups).
    pub fn scoped_groups(&self) -> impl Iterator<Item = &str> {
        self.scoped
            .iter()
            .flat_map(|(_, g)| g.iter().map(String::as_str))
    }

    /// Logs which mode the admin API is in: tokens required, or (no token
    /// of any kind configured) loopback clients admitted without one.
    pub fn log_mode(&self) {
        if self.configured {
            tracing::info!(
                "admin API: a bearer token is required on every request, loopback included \
                 (full-access token: {}, scoped tokens: {})",
                match &self.full {
                    Some(Ok(_)) => "yes",
                    Some(Err(_)) => "unusable",
                    None => "no",
                },
                self.scoped.len()
            );
        } else {
            tracing::warn!(
                "admin API: no admin token is configured; loopback clients get full access \
                 without a token (set admin.token to require one)"
            );
        }
    }
}

/// Where the store keeps its state: the JSON file, or Redis in cluster
/// mode.
enum Backend {
    File(PathBuf),
    Redis(Arc<Link>),
}

/// Why a save did not happen; in every case nothing was changed.
#[derive(Debug)]
pub enum SaveError {
    Io(std::io::Error),
    /// Cluster mode, Redis unreachable.
    Unavailable(String),
    /// Cluster mode: another instance wrote since `Store::version`.
    Stale,
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::Io(e) => write!(f, "{e}"),
            SaveError::Unavailable(m) => write!(f, "{m}"),
            SaveError::Stale => write!(f, "changed by another instance"),
        }
    }
}

/// The store and the state last written to (or read from) it.
pub struct Store {
    backend: Backend,
    pub state: StoreState,
    /// Cluster mode: the Redis version `state` was read at (0: none yet).
    pub version: u64,
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
        Ok(Store {
            backend: Backend::File(path),
            state,
            version: 0,
        })
    }

    /// The store in Redis; empty until the first [`Store::fetch`].
    pub fn redis(link: Arc<Link>) -> Store {
        Store {
            backend: Backend::Redis(link),
            state: StoreState::default(),
            version: 0,
        }
    }

    /// Where the store lives, for messages.
    pub fn label(&self) -> String {
        match &self.backend {
            Backend::File(p) => p.display().to_string(),
            Backend::Redis(l) => format!("Redis {}", l.key("store")),
        }
    }

    /// The Redis link in cluster mode.
    pub fn link(&self) -> Option<&Arc<Link>> {
        match &self.backend {
            Backend::Redis(l) => Some(l),
            Backend::File(_) => None,
        }
    }

    /// Makes `state` durable, then keeps it. On error the file and the
    /// state in memory are unchanged.
    pub fn save(&mut self, state: StoreState) -> std::io::Result<()> {
        let Backend::File(path) = &self.backend else {
            return Err(std::io::Error::other("save: not a file store"));
        };
        write_atomically(path, &encode(&state))?;
        self.state = state;
        Ok(())
    }

    /// Like `save`, with the disk writes on tokio's blocking pool; in
    /// cluster mode a compare-and-set against `version` in Redis.
    pub async fn save_async(&mut self, state: StoreState) -> Result<(), SaveError> {
        match &self.backend {
            Backend::File(path) => {
                let (path, bytes) = (path.clone(), encode(&state));
                tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                    .await
                    .map_err(|e| SaveError::Io(std::io::Error::other(e)))?
                    .map_err(SaveError::Io)?;
            }
            Backend::Redis(link) => {
                let bytes = serde_json::to_vec(&state).expect("store state serializes");
                match link.write_store(self.version, &bytes).await {
                    Ok(Some(v)) => self.version = v,
                    Ok(None) => return Err(SaveError::Stale),
                    Err(e) => return Err(SaveError::Unavailable(e.to_string())),
                }
            }
        }
        self.state = state;
        Ok(())
    }

    /// Cluster mode: the state in Redis and its version, when newer than
    /// ours. Changes nothing here.
    pub async fn fetch(&self) -> Result<Option<(u64, StoreState)>, String> {
        let Backend::Redis(link) = &self.backend else {
            return Ok(None);
        };
        // The version alone first: this runs every second.
        if link.store_version().await.map_err(|e| e.to_string())? == self.version {
            return Ok(None);
        }
        let (version, bytes) = link.read_store().await.map_err(|e| e.to_string())?;
        if version == self.version {
            return Ok(None);
        }
        let state = match bytes {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: not a store: {e}", link.key("store")))?,
            None => StoreState::default(),
        };
        Ok(Some((version, state)))
    }
}

/// The change from `base` to `next`, put on top of `latest` (what another
/// instance wrote meanwhile). Err names a resource that both changed.
pub fn rebase(
    base: &StoreState,
    next: &StoreState,
    latest: &StoreState,
) -> Result<StoreState, String> {
    let mut out = latest.clone();
    rebase_list(
        &base.services,
        &next.services,
        &mut out.services,
        |r| &r.name,
        "service",
    )?;
    rebase_list(
        &base.model_apis,
        &next.model_apis,
        &mut out.model_apis,
        |r| &r.name,
        "Model API",
    )?;
    rebase_list(
        &base.consumers,
        &next.consumers,
        &mut out.consumers,
        |r| &r.name,
        "consumer",
    )?;
    rebase_list(
        &base.resource_groups,
        &next.resource_groups,
        &mut out.resource_groups,
        |r| &r.name,
        "resource group",
    )?;
    Ok(out)
}

fn rebase_list<T: Clone + Serialize>(
    base: &[T],
    next: &[T],
    latest: &mut Vec<T>,
    name: impl Fn(&T) -> &String,
    label: &str,
) -> Result<(), String> {
    let json = |v: Option<&T>| v.map(|t| serde_json::to_value(t).expect("resource serializes"));
    let get = |list: &[T], n: &str| list.iter().find(|t| name(t) == n).cloned();
    let mut names: Vec<String> = base.iter().chain(next).map(|t| name(t).clone()).collect();
    names.sort();
    names.dedup();
    for n in names {
        let (b, x) = (get(base, &n), get(next, &n));
        if json(b.as_ref()) == json(x.as_ref()) {
            continue;
        }
        let at = latest.iter().position(|t| *name(t) == n);
        if json(at.map(|i| &latest[i])) != json(b.as_ref()) {
            return Err(format!("{label} {n:?}"));
        }
        match (at, x) {
            (Some(i), Some(x)) => latest[i] = x,
            (Some(i), None) => {
                latest.remove(i);
            }
            (None, Some(x)) => latest.push(x),
            (None, None) => {}
        }
    }
    Ok(())
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

    fn group(name: &str, description: &str) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            description: description.into(),
        }
    }

    fn groups(list: &[(&str, &str)]) -> StoreState {
        StoreState {
            resource_groups: list.iter().map(|(n, d)| group(n, d)).collect(),
            ..StoreState::default()
        }
    }

    #[test]
    fn rebase_keeps_both_changes_or_names_the_clash() {
        let base = groups(&[("a", ""), ("b", "")]);
        // Ours: add c, change a, remove b. Theirs meanwhile: add d.
        let next = groups(&[("a", "ours"), ("c", "")]);
        let latest = groups(&[("a", ""), ("b", ""), ("d", "")]);
        let out = rebase(&base, &next, &latest).unwrap();
        let names: Vec<_> = out
            .resource_groups
            .iter()
            .map(|g| (g.name.as_str(), g.description.as_str()))
            .collect();
        assert_eq!(names, [("a", "ours"), ("d", ""), ("c", "")]);
        // Theirs changed a too: a conflict, not a lost write.
        let latest = groups(&[("a", "theirs"), ("b", "")]);
        assert_eq!(
            rebase(&base, &next, &latest).unwrap_err(),
            "resource group \"a\""
        );
        // Both created c: a conflict.
        let latest = groups(&[("a", ""), ("b", ""), ("c", "x")]);
        assert!(rebase(&base, &next, &latest).is_err());
    }
}
