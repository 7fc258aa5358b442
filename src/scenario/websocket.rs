//! WebSocket routes (DashScope speech `/api-ws/v1/inference`, ComfyUI
//! `/ws`): the upgrade request goes upstream with a rebuilt head (the
//! service's auth replaces the client's, as for HTTP), the `101` comes
//! back, and the connection becomes a byte tunnel (`http::ws`).
//!
//! Attempts follow the usual order: a connect failure, 429 or 5xx before
//! the `101` falls back to the next target. Any other answer (401, 404…)
//! is relayed as a plain HTTP response.

use crate::config::catalog::RouteDef;
use crate::conn::{Client, RequestBody};
use crate::error::{Error, Kind};
use crate::http::head::{self, Method, RequestHead};
use crate::http::write::{BodyHeader, HeadWriter};
use crate::http::ws::{self, Borrowed};
use crate::observe::Record;
use crate::proxy::{request_head, retry_status, upstream_target};
use crate::relay::{self, Reply};
use crate::snapshot::{ModelApi, Snapshot, Target};
use crate::upstream::exchange::{exchange, Request, Response};
use crate::upstream::Conn;
use crate::worker::Worker;

/// Serves a request on a WebSocket route. Returns whether the client
/// connection may serve another request (never after a tunnel).
#[allow(clippy::too_many_arguments)]
pub async fn proxy(
    w: &Worker,
    c: &mut Client,
    snap: &Snapshot,
    head: &RequestHead,
    body: &RequestBody,
    consumed: usize,
    route: &RouteDef,
    api: &ModelApi,
    forward_path: &str,
    order: &[&Target],
    reply: &mut Reply,
    rec: &mut Record,
) -> bool {
    if !body.is_whole() {
        reply.keep_alive = false;
    }
    if !ws::is_websocket_upgrade(head, &c.inbuf) {
        c.consume(consumed);
        let e = Error::new(
            Kind::BadRequest,
            format!(
                "{} is a WebSocket route: send a GET with Connection: Upgrade and Upgrade: websocket",
                route.name
            ),
        );
        return relay::error(c, reply, &e, rec).await;
    }
    if c.tls.is_some() {
        // The tunnel copies raw socket bytes; over TLS it would need to
        // decrypt and re-encrypt each direction, which it does not do yet.
        c.consume(consumed);
        let e = Error::new(
            Kind::BadRequest,
            "WebSocket routes are served on plain listeners only (not on server.tls.listen)",
        );
        return relay::error(c, reply, &e, rec).await;
    }
    let query = head.query(&c.inbuf).map(str::to_string);
    let mut last_error = None;
    for (n, target) in order.iter().enumerate() {
        let svc = &snap.services[target.service];
        let last = n + 1 == order.len();
        reply.fallbacks = n;
        if svc.provider.is_mock() || !svc.provider.speaks(api.protocol) {
            last_error = Some(Error::new(
                Kind::BadRequest,
                format!(
                    "service {} ({}) does not serve {} WebSockets",
                    svc.name,
                    svc.provider.kind,
                    api.protocol.as_str()
                ),
            ));
            if last {
                break;
            }
            continue;
        }
        let path = upstream_target(svc, api.protocol, forward_path, query.as_deref(), "");
        let mut bytes = Vec::with_capacity(1024);
        let span = rec.attempt(target.service, target.model.as_deref());
        request_head(
            &mut bytes,
            head,
            c,
            svc,
            route,
            &path,
            &reply.request_id,
            w.next_key(),
            BodyHeader::Omit,
            (&rec.trace, span),
        );
        // The upgrade is hop-by-hop: asked for again on the upstream hop.
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(b"connection: upgrade\r\nupgrade: websocket\r\n\r\n");
        let mut req = Request {
            bytes,
            method: Method::Get,
            rest: None,
            first_packet: None,
        };
        let result = exchange(w, svc, &mut req).await;
        match &result {
            Ok(resp) => w.health.record(svc, resp.head.status < 500),
            Err(e) if e.retryable() => w.health.record(svc, false),
            Err(_) => {}
        }
        match result {
            Ok(resp) if resp.head.status == 101 => {
                c.consume(consumed);
                rec.attempt_answered(101, false);
                rec.status = 101;
                let idle = svc.timeout;
                tunnel(c, reply, resp, idle, &svc.name).await;
                return false;
            }
            Ok(resp) if !last && retry_status(resp.head.status) => {
                tracing::debug!(service = %svc.name, status = resp.head.status, "upgrade failed; falling back");
                rec.attempt_answered(resp.head.status, true);
                resp.conn.close().await;
            }
            Ok(resp) => {
                c.consume(consumed);
                rec.attempt_answered(resp.head.status, false);
                return relay::response(w, c, reply, svc, resp, rec, &mut Default::default()).await;
            }
            Err(e) => {
                tracing::debug!(service = %svc.name, error = %e, "upgrade attempt failed");
                rec.attempt_failed(&e);
                last_error = Some(e);
                if last {
                    break;
                }
            }
        }
    }
    c.consume(consumed);
    let e = last_error.unwrap_or_else(|| Error::new(Kind::Internal, "no attempt was made"));
    relay::error(c, reply, &e, rec).await
}

/// Relays the `101` and then bytes both ways until either side is done.
async fn tunnel(
    c: &mut Client,
    reply: &Reply,
    resp: Response,
    idle: std::time::Duration,
    service: &str,
) {
    let Response {
        conn,
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
    let moved = match conn {
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
