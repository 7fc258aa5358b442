//! Pipeline phases only some scenarios need, each called from `proxy` at
//! its place in the request flow: DashScope async tasks (polls stick to
//! the service that accepted the task), multipart bodies (the `model`
//! form field), WebSocket routes (upgrade, then a byte tunnel).

pub mod multipart;
pub mod tasks;
pub mod websocket;
