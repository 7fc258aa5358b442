//! One request in flight, as every phase of the pipeline sees it: the
//! client, the snapshot it is served under, its head and body, how its
//! answer is written (`Reply`), what it learned (`Record`), and what the
//! relay watches (`Watch`).
//!
//! The body's fate is decided here and only here: a phase that refuses
//! returns its error, and [`Request::settle`] — called once, before any
//! answer is written — drops the request's bytes from the client buffer
//! and keeps the connection, or closes it when part of the body is still
//! unread (as Pingora's `FailToProxy { can_reuse_downstream }` does).

use crate::client::{Body, Client};
use crate::config::catalog::Protocol;
use crate::config::Snapshot;
use crate::error::Error;
use crate::http::head::{Method, RequestHead};
use crate::observe::Record;
use crate::relay::{self, Reply, Reshape};
use crate::watch::Watch;
use crate::worker::Worker;

pub struct Request<'a> {
    pub w: &'a Worker,
    pub c: &'a mut Client,
    pub snap: &'a Snapshot,
    pub head: &'a RequestHead,
    /// `None` until the body phase read it.
    pub body: Option<Body>,
    pub reply: Reply,
    pub rec: Record,
    pub watch: Watch,
    settled: bool,
}

impl<'a> Request<'a> {
    pub fn new(
        w: &'a Worker,
        c: &'a mut Client,
        snap: &'a Snapshot,
        head: &'a RequestHead,
    ) -> Self {
        let rec = Record::start(head.method, head.header(&c.inbuf, "traceparent"));
        let reply = Reply {
            request_id: request_id(w, c, head),
            protocol: Protocol::Openai,
            fallbacks: 0,
            keep_alive: head.keep_alive && !w.shutdown.is_fired(),
            http10: head.minor_version == 0,
            head_only: head.method == Method::Head,
            reshape: Reshape::None,
            service: None,
        };
        Request {
            w,
            c,
            snap,
            head,
            body: None,
            reply,
            rec,
            watch: Watch::default(),
            settled: false,
        }
    }

    /// The body bytes held (empty before the body phase).
    pub fn held(&self) -> &[u8] {
        self.body.as_ref().map_or(&[], |b| b.held(&self.c.inbuf))
    }

    /// Ends the request's claim on the client buffer: its bytes are
    /// dropped and the connection kept, or — when part of its body is
    /// still unread or was cut — the answer says `connection: close`.
    pub fn settle(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let end = match &self.body {
            Some(body) => body.settled(),
            None if !self.head.has_body() => Some(self.head.head_len),
            None => None,
        };
        match end {
            Some(n) => self.c.consume(n),
            None => self.reply.keep_alive = false,
        }
    }

    /// Answers `e` in the client's protocol. Returns whether the
    /// connection may serve another request.
    pub async fn refuse(&mut self, e: &Error) -> bool {
        self.settle();
        relay::error(self.c, &self.reply, e, &mut self.rec).await
    }
}

/// The client's `x-request-id` when it sent a sane one, else a new one.
fn request_id(w: &Worker, c: &Client, head: &RequestHead) -> String {
    match head.header(&c.inbuf, "x-request-id") {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()) => {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => w.new_request_id(),
    }
}
