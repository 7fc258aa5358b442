//! Pipeline phases only some scenarios need, each called from `proxy` at
//! its place in the request flow: DashScope async tasks (polls stick to
//! the service that accepted the task), WebSocket routes (upgrade, then a
//! byte tunnel).

pub mod models;
pub mod tasks;
pub mod websocket;
