//! Cluster mode (PRODUCT.md §11): many gateways, one Redis.
//!
//! Everything here runs on the control thread (tokio); workers never talk
//! to Redis. Redis holds the admin store (one hash: `version` + `state`,
//! written by a compare-and-set script that also publishes the new
//! version; re-seeded from the instances' copies when Redis comes back
//! without it, see [`link`]), and one heartbeat key per live instance. `control::sync::run`
//! keeps this instance's copy current: pub/sub notification, plus a re-read
//! every second as a safety net, plus a catch-up after every reconnect.
//! [`limits::run`] leases request permits and shares token usage, so
//! limits hold across instances without a Redis call per request;
//! [`tasks::serve`] answers the workers' task lookups.
//!
//! Below the store (which keeps its state through [`Link`] in cluster
//! mode) and the control plane; it imports neither.

pub mod limits;
pub mod link;
pub mod tasks;

pub use link::Link;
