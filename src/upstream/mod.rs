//! Connections to AI services: connect (TCP, TLS) and the per-core
//! keep-alive pool.

pub mod connect;
pub mod endpoint;
pub mod exchange;
pub mod health;
pub mod pool;
pub mod whole;

pub use connect::{connect, Conn};
pub use endpoint::Endpoint;
pub use pool::{Lease, Pool};
