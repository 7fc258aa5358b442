//! modelgate: an io_uring thread-per-core AI gateway.
//!
//! Data plane: `runtime` → `worker` → `conn` → `proxy` (route, body,
//! model, attempts via `upstream`, `relay`). Control plane: `runtime`'s
//! tokio thread with `admin`. Shared: `config` snapshots and `error`.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod error;
pub mod extract;
pub mod http;
pub mod observe;
pub mod protocol;
pub mod provider;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod runtime;
pub mod scenario;
pub mod tls;
pub mod upstream;
pub mod worker;
