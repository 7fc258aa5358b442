//! Connections to AI services: connect (TCP, TLS) and the per-core
//! keep-alive pool.

pub mod connect;
pub mod exchange;
pub mod health;
pub mod pool;
pub mod whole;

pub use connect::{connect, Conn};
pub use pool::Pool;
