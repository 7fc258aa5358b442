//! WebSocket routes (DashScope speech `/api-ws/v1/inference`, ComfyUI
//! `/ws`): the upgrade request goes upstream with a rebuilt head (the
//! service's auth replaces the client's, as for HTTP), the `101` comes
//! back, and the connection becomes a byte tunnel (`http::ws`).
//!
//! Attempts follow the usual order: a connect failure, 429 or 5xx before
//! the `101` falls back to the next target. Any other answer (401, 404…)
//! is relayed as a plain HTTP response.

use crate::attempt::{self, NotSent, Outcome, Plan, To};
use crate::client::{Body, Client};
use crate::config::catalog::RouteDef;
use crate::error::{Error, Kind};
use crate::forward::{request_head, upstream_target, Hop, Origin};
use crate::http::head::{self, Method};
use crate::http::write::{BodyHeader, HeadWriter};
use crate::http::ws::{self, Borrowed};
use crate::relay;
use crate::request::Reply;
use crate::request::Request;
use crate::snapshot::{ModelApi, Service, Target};
use crate::upstream::exchange::Response;
use crate::upstream::Conn;
use crate::worker::Worker;

/// Serves a request on a WebSocket route. Returns whether the client
/// connection may serve another request (never after a tunnel).
pub async fn proxy(
    rq: &mut Request<'_>,
    route: &RouteDef,
    api: &ModelApi,
    forward_path: &str,
    order: &[&Target],
) -> bool {
    if !ws::is_websocket_upgrade(rq.head, &rq.c.inbuf) {
        let e = Error::new(
            Kind::BadRequest,
            format!(
                "{} is a WebSocket route: send a GET with Connection: Upgrade and Upgrade: websocket",
                route.name
            ),
        );
        return rq.refuse(&e).await;
    }
    if rq.c.tls.is_some() {
        // The tunnel copies raw socket bytes; over TLS it would need to
        // decrypt and re-encrypt each direction, which it does not do yet.
        let e = Error::new(
            Kind::BadRequest,
            "WebSocket routes are served on plain listeners only (not on server.tls.listen)",
        );
        return rq.refuse(&e).await;
    }
    let query = rq.head.query(&rq.c.inbuf).map(str::to_string);
    let mut plan = Upgrade {
        w: rq.w,
        api,
        origin: Origin {
            head: rq.head,
            request_id: &rq.reply.request_id,
            route,
            trusted: rq.trusted_peer(),
        },
        forward_path,
        query: query.as_deref(),
    };
    let body = rq.body.as_mut().expect("body read");
    let outcome = attempt::run(rq.w, rq.c, rq.snap, order, body, &mut rq.rec, &mut plan).await;
    let (attempted, resp) = match outcome {
        Outcome::Answered(attempted, resp) => (attempted, resp),
        Outcome::Failed(fallbacks, e) => {
            rq.reply.fallbacks = fallbacks;
            return rq.refuse(&e).await;
        }
        Outcome::ClientGone => return false,
        Outcome::Mock(..) => unreachable!("mock targets are skipped by the plan"),
    };
    rq.reply.fallbacks = attempted.fallbacks;
    rq.settle();
    let svc = attempted.svc;
    if resp.head.status != 101 {
        // Any other answer (401, 404…) is relayed as a plain HTTP response.
        // (Not watched: the request's own watch keeps its charge.)
        let charged = std::mem::take(&mut rq.watch);
        let keep_alive = relay::response(rq, svc, resp).await;
        rq.watch = charged;
        return keep_alive;
    }
    rq.rec.status = 101;
    tunnel(rq.c, &rq.reply, resp, svc.timeout, &svc.name).await;
    false
}

/// The upgrade request each attempt sends.
struct Upgrade<'r> {
    w: &'r Worker,
    api: &'r ModelApi,
    origin: Origin<'r>,
    forward_path: &'r str,
    query: Option<&'r str>,
}

impl Plan for Upgrade<'_> {
    type Prepared = String;

    fn prepare(
        &mut self,
        _: &Client,
        _: &Body,
        _: &Target,
        svc: &Service,
    ) -> Result<String, NotSent> {
        let protocol = self.api.protocol;
        if svc.provider.is_mock() || !svc.provider.speaks(protocol) {
            return Err(NotSent::Skip(Error::new(
                Kind::BadRequest,
                format!(
                    "service {} ({}) does not serve {} WebSockets",
                    svc.name,
                    svc.provider.kind,
                    protocol.as_str()
                ),
            )));
        }
        Ok(upstream_target(
            svc,
            protocol,
            self.forward_path,
            self.query,
            "",
        ))
    }

    fn wire(&mut self, c: &Client, _: &Body, path: String, to: To<'_>, bytes: &mut Vec<u8>) {
        let hop = Hop {
            svc: to.svc,
            endpoint: to.endpoint,
            path: &path,
            key: self.w.next_key(),
            framing: BodyHeader::Omit,
            trace: to.trace,
        };
        request_head(bytes, c, &self.origin, &hop);
        // The upgrade is hop-by-hop: asked for again on the upstream hop.
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n\r\n");
    }

    fn method(&self) -> Method {
        Method::Get
    }
}

/// Relays the `101` and then bytes both ways until either side is done.
async fn tunnel(
    c: &mut Client,
    reply: &Reply,
    resp: Response<'_>,
    idle: std::time::Duration,
    service: &str,
) {
    let Response {
        lease,
        head: rh,
        buf,
    } = resp;
    let mut to_client = Vec::with_capacity(512 + buf.len());
    let mut h = HeadWriter::response(&mut to_client, 101);
    for hp in &rh.headers {
        let name = &buf[hp.name.clone()];
        let skip = head::is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"x-request-id")
            || rh.connection_lists(&buf, name);
        if !skip {
            h.header(name, &buf[hp.value.clone()]);
        }
    }
    let protocol = rh.header(&buf, "upgrade").unwrap_or(b"websocket");
    h.header(b"connection", b"upgrade");
    h.header(b"upgrade", protocol);
    h.header(b"x-request-id", reply.request_id.as_bytes());
    let mut n = itoa::Buffer::new();
    h.header(
        b"x-modelgate-fallback",
        n.format(reply.fallbacks).as_bytes(),
    );
    h.finish();
    // Frames that came with the 101 follow it; frames the client sent
    // right after its upgrade request go up first.
    to_client.extend_from_slice(&buf[rh.head_len..]);
    let to_upstream = std::mem::take(&mut c.inbuf);
    let client = Borrowed(&mut c.stream);
    let moved = match lease.into_conn() {
        Conn::Plain(s) => ws::tunnel(client, s, to_upstream, to_client, idle).await,
        Conn::Tls(s, _) => ws::tunnel(client, *s, to_upstream, to_client, idle).await,
    };
    tracing::debug!(
        service,
        to_upstream = moved.to_upstream,
        to_client = moved.to_client,
        "websocket tunnel closed"
    );
}
