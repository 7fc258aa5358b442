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
use crate::error::{Error, Kind};
use crate::http::head::{Method, RequestHead};
use crate::http::write::{BodyHeader, HeadWriter};
use crate::observe::Record;
use crate::protocol::translate::Direction;
use crate::snapshot::{Cors, Snapshot};
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
            cors_origin: None,
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

    /// Whether the client is a trusted proxy (`server.trusted_proxies`).
    pub fn trusted_peer(&self) -> bool {
        let peer = self.c.peer.ip();
        self.snap
            .edge
            .trusted_proxies
            .iter()
            .any(|c| c.contains(peer))
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
        write_error(self.c, &self.reply, e, &mut self.rec).await
    }
}

/// How the answer to this request is written.
pub struct Reply {
    pub request_id: String,
    pub protocol: Protocol,
    pub fallbacks: usize,
    pub keep_alive: bool,
    pub http10: bool,
    pub head_only: bool,
    pub reshape: Reshape,
    /// The service that answered, told (`x-modelgate-service`) only to the
    /// admin's debug request.
    pub service: Option<String>,
    /// A page's origin the Model API's CORS admits: the answer says so.
    pub cors_origin: Option<Box<[u8]>>,
}

/// What the relay does to the upstream's answer before the client sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reshape {
    /// Relayed as it comes, never parsed.
    #[default]
    None,
    /// An OpenAI stream the gateway asked usage of: the usage-only chunk
    /// is dropped (the client did not ask for it).
    HideUsageChunk,
    /// Translated into the client's protocol: whole answers and errors
    /// re-framed, streams event by event. `client_usage`: an OpenAI client
    /// asked for the usage chunk.
    Translate {
        direction: Direction,
        client_usage: bool,
    },
}

impl Reply {
    /// Starts the answer's head with the headers every answer carries.
    pub fn head<'a>(&self, out: &'a mut Vec<u8>, status: u16) -> HeadWriter<'a> {
        let mut h = HeadWriter::response(out, status);
        h.header(b"x-request-id", self.request_id.as_bytes());
        let mut n = itoa::Buffer::new();
        h.header(b"x-modelgate-fallback", n.format(self.fallbacks).as_bytes());
        if let Some(s) = &self.service {
            h.header(b"x-modelgate-service", s.as_bytes());
        }
        if let Some(origin) = &self.cors_origin {
            h.header(b"access-control-allow-origin", origin);
            h.header(
                b"access-control-expose-headers",
                b"x-request-id, x-modelgate-fallback",
            );
            h.header(b"vary", b"origin");
        }
        if !self.keep_alive {
            h.header(b"connection", b"close");
        } else if self.http10 {
            h.header(b"connection", b"keep-alive");
        }
        h
    }
}

/// Answers a CORS preflight (nothing is forwarded): 204 with what the
/// page may do, its origin already in `reply.cors_origin`.
pub async fn write_preflight(c: &mut Client, reply: &Reply, cors: &Cors, methods: &str) -> bool {
    let mut out = Vec::with_capacity(512);
    let mut h = reply.head(&mut out, 204);
    h.header(b"access-control-allow-methods", methods.as_bytes());
    if !cors.headers.is_empty() {
        h.header(b"access-control-allow-headers", cors.headers.as_bytes());
    }
    h.header(b"access-control-max-age", cors.max_age.as_bytes());
    h.body(BodyHeader::Omit);
    h.finish();
    let (res, _) = c.write(out).await;
    res.is_ok() && reply.keep_alive
}

/// Writes a gateway error in the client's protocol shape; whether the
/// connection may serve another request.
pub async fn write_error(c: &mut Client, reply: &Reply, e: &Error, rec: &mut Record) -> bool {
    rec.status = e.status();
    rec.error = Some(e.code());
    let body = crate::protocol::error_body(reply.protocol, e, &reply.request_id);
    let mut out = Vec::with_capacity(256 + body.len());
    let mut h = reply.head(&mut out, e.status());
    h.header(b"content-type", b"application/json");
    if let Some(allow) = e.allow {
        h.header(b"allow", allow.allow_header().as_bytes());
    }
    if e.kind == Kind::RateLimited || e.retry_after.is_some() {
        let mut n = itoa::Buffer::new();
        h.header(
            b"retry-after",
            n.format(e.retry_after.unwrap_or(60)).as_bytes(),
        );
    }
    h.body(BodyHeader::Length(body.len() as u64));
    h.finish();
    if !reply.head_only {
        out.extend_from_slice(&body);
    }
    let (res, _) = c.write(out).await;
    res.is_ok() && reply.keep_alive
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
