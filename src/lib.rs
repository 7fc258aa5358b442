//! modelgate: an io_uring thread-per-core AI gateway.
//!
//! Data plane: `runtime` → `worker` → `conn` → `proxy` (route, body,
//! model, guard (`auth`, `limit`, `moderation`), attempts via `upstream`,
//! `relay` with `watch` (answer moderation, token charge), `observe`'s
//! record). Control plane: `runtime`'s tokio thread with `admin`. Shared:
//! `config` snapshots and `error`.

pub mod admin;
pub mod alloc;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod control;
pub mod error;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod limit;
pub mod moderation;
pub mod observe;
pub mod protocol;
pub mod provider;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod runtime;
pub mod scenario;
pub mod shared;
pub mod snapshot;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod upstream;
pub mod watch;
pub mod worker;

/// A hash map for the per-request path: aHash (randomly seeded, so keys a
/// client influences cannot be chosen to collide) instead of SipHash.
pub type FastMap<K, V> = hashbrown::HashMap<K, V, ahash::RandomState>;
