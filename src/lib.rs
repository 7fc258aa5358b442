//! modelgate: an io_uring thread-per-core AI gateway.
//!
//! Data plane: `listener` → `conn` → `proxy` (the pipeline's phases over
//! one `request::Request`) → `attempt` (the attempt engine) → `upstream`;
//! answers through `relay`. Control plane: `runtime`'s tokio thread running
//! `control` (reloads, DNS refresh, cluster sync) and `admin`. See
//! `docs/architecture.md`.
//!
//! Floors, bottom to top: a module imports only from its own floor's
//! lower modules and the floors below, never upward.
//!
//! 0. Leaf libraries: `http` (HTTP/1 heads, bodies, SSE, WebSocket
//!    frames), `extract` (fields of a JSON body), `sys` (socket calls),
//!    `alloc`.
//! 1. `config`: the config as written — the file (`raw`), the scenario ×
//!    protocol route table (`catalog`), field errors, secrets, names,
//!    `[cluster]` settings. No policy in it.
//! 2. `error` (a gateway error's kind, status, code), `provider` (what each
//!    upstream kind speaks), `protocol` (wire shapes, error bodies,
//!    translation).
//! 3. Policies, each with its compiled part: `limit`, `auth` (consumers),
//!    `moderation`, `tls` (server certificates), `observe` (metrics
//!    registry, per-worker shards, access log, traces, usage; the checks
//!    of `[log]` and `[trace]`).
//! 4. `snapshot`: the compiled config the data plane reads (services,
//!    Model APIs, selection, host index, edge limits) and `compile`, a layer
//!    above the policies it compiles.
//! 5. `tasks` (DashScope task id → service, with its cluster handle) and
//!    `shared` (what every worker reads: the snapshot, generation,
//!    shutdown, limit windows, observe, task memory, debug token).
//! 6. The data plane, bottom to top: `upstream` (leases, connect,
//!    exchange), `route` and `multipart` (selection, form bodies), `worker`
//!    (per-core state), `watch`, `client` (the client connection and its
//!    body), `attempt` (the attempt engine), `request` (the request context:
//!    the body's fate, the reply), `forward` (what goes upstream), `relay`
//!    (answers to the client), `guard` (prompt moderation), `scenario`
//!    (WebSocket, DashScope tasks), `proxy` (the pipeline), `conn` (the
//!    keep-alive loop), `listener` (worker threads, accept).
//! 7. The control plane: `cluster` (Redis link, limit leases, task
//!    server), `store` (the admin store and the resources the effective
//!    config is made of), `control` (the control thread's state: reload,
//!    DNS refresh, cluster sync), `admin` (admin API, console, `/metrics`),
//!    and at the top `runtime` (process start: listeners, workers, the
//!    control thread).

pub mod admin;
pub mod alloc;
pub mod attempt;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod control;
pub mod error;
pub mod extract;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod http;
pub mod limit;
pub mod listener;
pub mod moderation;
pub mod multipart;
pub mod observe;
pub mod protocol;
pub mod provider;
pub mod proxy;
pub mod relay;
pub mod request;
pub mod route;
pub mod runtime;
pub mod scenario;
pub mod shared;
pub mod snapshot;
pub mod store;
pub mod sys;
pub mod tasks;
pub mod tls;
pub mod upstream;
pub mod watch;
pub mod worker;

/// A hash map for the per-request path: aHash (randomly seeded, so keys a
/// client influences cannot be chosen to collide) instead of SipHash.
pub type FastMap<K, V> = hashbrown::HashMap<K, V, ahash::RandomState>;
