//! HTTP/1.1 over owned buffers: head parsing with limits (`head`), body
//! framing (`body`), SSE event framing (`sse`), head writing (`write`),
//! WebSocket upgrade tunnels (`ws`).

pub mod body;
#[cfg(test)]
mod corpus_tests;
pub mod head;
pub mod sse;
pub mod write;
pub mod ws;
