//! The request pipeline, one phase after another:
//!
//! route → body → model → consumer → limits → moderation → attempt order
//! → (attempt → first packet)* → relay
//!
//! Fallback happens only before the first response byte reaches the
//! client; after that, `relay` ends a broken stream with an in-band error.

use crate::config::catalog::{Body, Protocol, RouteDef};
use crate::config::{ModelApi, Service, Snapshot, Target};
use crate::conn::{Client, RequestBody, Rest};
use crate::error::{Error, Kind};
use crate::extract;
use crate::http::head::{self, Method, RequestHead};
use crate::http::write::{BodyHeader, HeadWriter};
use crate::provider::{mock, Auth};
use crate::relay::{self, Reply};
use crate::route::{api, select};
use crate::upstream::exchange::{exchange, Request};
use crate::watch::Watch;
use crate::worker::Worker;
use crate::{auth, limit, moderation};
use std::borrow::Cow;

/// Handles one request whose head is parsed at the start of `c.inbuf`.
/// Returns whether the connection may serve another request.
pub async fn handle(w: &Worker, c: &mut Client, snap: &Snapshot, head: RequestHead) -> bool {
    let mut reply = Reply {
        request_id: request_id(w, c, &head),
        protocol: Protocol::Openai,
        fallbacks: 0,
        keep_alive: head.keep_alive && !w.shutdown.is_fired(),
        http10: head.minor_version == 0,
        head_only: head.method == Method::Head,
    };

    // 1. Route: host → Model API → base path → route.
    let routed = {
        let buf = &c.inbuf;
        let host = head.host.clone().map(|r| &buf[r]).unwrap_or(b"");
        let host = std::str::from_utf8(host).unwrap_or("");
        let method = std::str::from_utf8(&buf[head.method_range.clone()]).unwrap_or("");
        api::find(snap, host, method, head.path(buf))
            .map(|m| (m.api, m.route, m.forward_path.to_string()))
    };
    let (api_index, route, forward_path) = match routed {
        Ok(r) => r,
        Err((api, e)) => {
            if let Some(i) = api {
                reply.protocol = snap.apis[i].protocol;
            }
            return refuse_unread(c, &head, &mut reply, e).await;
        }
    };
    let model_api = &snap.apis[api_index];
    reply.protocol = model_api.protocol;

    // 2. Body: held whole when it fits the buffer, else its prefix.
    let (body, consumed) = match c.read_body(&head, &snap.edge).await {
        Ok(b) => b,
        Err(e) => {
            reply.keep_alive = false;
            return relay::error(c, &reply, &e).await;
        }
    };

    // 3. Model and stream flag, without a full parse.
    let request = match read_model(route, body.held(&c.inbuf), body.is_whole()) {
        Ok(r) => r,
        Err(e) => return refuse_read(c, &body, consumed, &mut reply, e).await,
    };

    // 4. Consumer: who calls (401/403 on a Model API with auth).
    let debug = auth::is_debug(&head, &c.inbuf, &w.shared.debug_marker);
    let consumer = auth::authenticate(
        &snap.consumers,
        &model_api.auth,
        &model_api.name,
        &head,
        &c.inbuf,
        debug,
    );
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(e) => return refuse_read(c, &body, consumed, &mut reply, e).await,
    };

    // 5. Limits: this request counts now, its tokens when it ends.
    let charge = limit::admit(
        &snap.limits,
        consumer.map(|i| {
            (
                snap.consumers.list[i].name.as_str(),
                &snap.consumers.list[i].limits,
            )
        }),
        (&model_api.name, &model_api.limits),
        consumer,
    );
    let charge = match charge {
        Ok(charge) => charge,
        Err(e) => return refuse_read(c, &body, consumed, &mut reply, e).await,
    };

    // 6. Moderation of the prompt, before anything is forwarded.
    let checked = moderation::check_prompt(
        w,
        &snap.services,
        model_api
            .moderation
            .as_deref()
            .filter(|_| matches!(route.body, Body::Json)),
        body.held(&c.inbuf),
        body.is_whole(),
        &reply.request_id,
    )
    .await;
    if let Err(e) = checked {
        return refuse_read(c, &body, consumed, &mut reply, e).await;
    }
    let mut watch = Watch::new(
        charge,
        model_api
            .moderation
            .as_ref()
            .filter(|m| m.check_response)
            .map(|m| moderation::ResponseCheck::new(m.clone(), model_api.protocol)),
    );

    // 7. Attempt order: the service mode's pick, then the fallbacks.
    let order = {
        let mut state = w.select.borrow_mut();
        select::attempt_order(snap, api_index, request.model.as_deref(), &mut state)
    };
    let order = match order {
        Ok(o) => o,
        Err(e) => return refuse_read(c, &body, consumed, &mut reply, e).await,
    };

    // 8. Attempts, each before any byte reached the client.
    let query = head.query(&c.inbuf).map(str::to_string);
    let mut body = body;
    let mut last_error = None;
    for (n, target) in order.iter().enumerate() {
        let svc = &snap.services[target.service];
        let replayable = body.is_whole();
        let last = n + 1 == order.len() || !replayable;
        reply.fallbacks = n;
        let model = target
            .model
            .as_deref()
            .or(request.model.as_deref())
            .unwrap_or("");
        let send_body = outgoing_body(body.held(&c.inbuf), &request, target);
        let path = upstream_target(svc, model_api, &forward_path, query.as_deref(), model);

        if svc.provider.is_mock() {
            let answer = mock::answer(&path, &send_body);
            c.consume(consumed);
            return relay::mock(c, &reply, answer, &mut watch).await;
        }
        if !svc.provider.speaks(model_api.protocol) {
            last_error = Some(Error::new(
                Kind::BadRequest,
                format!(
                    "service {} speaks no {} protocol and translation is not available yet",
                    svc.name,
                    model_api.protocol.as_str()
                ),
            ));
            if last {
                break;
            }
            continue;
        }
        let framing = match &body {
            RequestBody::None if head.framing == head::Framing::None => BodyHeader::Omit,
            RequestBody::Streaming {
                rest: Rest::Length(n),
                ..
            } => BodyHeader::Length(send_body.len() as u64 + n),
            RequestBody::Streaming {
                rest: Rest::Chunked(_),
                ..
            } => BodyHeader::Chunked,
            _ => BodyHeader::Length(send_body.len() as u64),
        };
        let mut bytes = Vec::with_capacity(512 + send_body.len());
        let key = w.next_key();
        request_head(
            &mut bytes,
            &head,
            c,
            svc,
            route,
            &path,
            &reply.request_id,
            key,
            framing,
        );
        if framing == BodyHeader::Chunked && !send_body.is_empty() {
            crate::http::body::write_chunk_header(send_body.len(), &mut bytes);
            bytes.extend_from_slice(&send_body);
            bytes.extend_from_slice(b"\r\n");
        } else {
            bytes.extend_from_slice(&send_body);
        }
        drop(send_body);

        let first_packet = if request.stream {
            model_api.first_packet_timeout
        } else {
            None
        };
        let result = match &mut body {
            RequestBody::Streaming { rest, .. } => {
                c.consume(consumed);
                let mut req = Request {
                    bytes,
                    method: head.method,
                    rest: None,
                    first_packet,
                };
                // Rest of the body still on the socket: sent in this one attempt.
                let mut rest = std::mem::replace(rest, Rest::Length(0));
                req.rest = Some((&mut *c, &mut rest));
                let r = exchange(w, svc, &mut req).await;
                drop(req);
                r
            }
            _ => {
                let mut req = Request {
                    bytes,
                    method: head.method,
                    rest: None,
                    first_packet,
                };
                exchange(w, svc, &mut req).await
            }
        };
        match result {
            Ok(resp) if !last && retry_status(resp.head.status) => {
                tracing::debug!(service = %svc.name, status = resp.head.status, "attempt failed; falling back");
                resp.conn.close().await;
            }
            Ok(resp) => {
                if body.is_whole() {
                    c.consume(consumed);
                }
                return relay::response(w, c, &reply, svc, resp, &mut watch).await;
            }
            Err(e) => {
                tracing::debug!(service = %svc.name, error = %e, "attempt failed");
                last_error = Some(e);
                if last {
                    break;
                }
            }
        }
    }
    if body.is_whole() {
        c.consume(consumed);
    } else {
        reply.keep_alive = false;
    }
    let e = last_error.unwrap_or_else(|| Error::new(Kind::Internal, "no attempt was made"));
    relay::error(c, &reply, &e).await
}

/// Refuses a request whose body was not read: the connection closes
/// unless there is no body to skip.
async fn refuse_unread(c: &mut Client, head: &RequestHead, reply: &mut Reply, e: Error) -> bool {
    if head.framing == head::Framing::None || head.framing == head::Framing::Length(0) {
        c.consume(head.head_len);
    } else {
        reply.keep_alive = false;
    }
    relay::error(c, reply, &e).await
}

/// Refuses a request whose body was read (whole, or its prefix: then the
/// rest is still on the socket and the connection closes).
async fn refuse_read(
    c: &mut Client,
    body: &RequestBody,
    consumed: usize,
    reply: &mut Reply,
    e: Error,
) -> bool {
    if body.is_whole() {
        c.consume(consumed);
    } else {
        reply.keep_alive = false;
    }
    relay::error(c, reply, &e).await
}

/// What the gateway read from the request body.
struct ModelRequest {
    model: Option<String>,
    stream: bool,
    fields: Option<extract::Fields>,
}

fn read_model(route: &RouteDef, body: &[u8], whole: bool) -> Result<ModelRequest, Error> {
    if !matches!(route.body, Body::Json) {
        return Ok(ModelRequest {
            model: None,
            stream: false,
            fields: None,
        });
    }
    let scan = if whole {
        extract::extract
    } else {
        extract::extract_prefix
    };
    let fields = match scan(body) {
        Ok(f) => f,
        Err(extract::ExtractError::Truncated) if !whole => {
            return Err(Error::new(
                Kind::BodyTooLarge,
                "model must appear within the first body_buffer_bytes of a large body",
            ))
        }
        Err(extract::ExtractError::ModelNotString) => {
            return Err(Error::new(Kind::BadRequest, "model must be a string"))
        }
        Err(_) => {
            return Err(Error::new(
                Kind::BadRequest,
                "request body is not a JSON object",
            ))
        }
    };
    let Some(model) = fields.model.as_ref() else {
        return Err(Error::new(
            Kind::BadRequest,
            "you must provide a model parameter",
        ));
    };
    Ok(ModelRequest {
        model: Some(model.value(body).into_owned()),
        stream: fields.stream,
        fields: Some(fields),
    })
}

/// The body to send for `target`: the client's, with `model` rewritten
/// when the target names one.
fn outgoing_body<'a>(body: &'a [u8], request: &ModelRequest, target: &Target) -> Cow<'a, [u8]> {
    match (
        &target.model,
        request.fields.as_ref().and_then(|f| f.model.as_ref()),
    ) {
        (Some(m), Some(field)) if request.model.as_deref() != Some(m.as_str()) => {
            Cow::Owned(extract::rewrite_model(body, field, m))
        }
        _ => Cow::Borrowed(body),
    }
}

/// Upstream request-target: base URL path + the provider's layout + query.
fn upstream_target(
    svc: &Service,
    api: &ModelApi,
    forward_path: &str,
    query: Option<&str>,
    model: &str,
) -> String {
    let mapped = svc.provider.upstream_path(
        api.protocol,
        forward_path,
        model,
        svc.api_version.as_deref(),
    );
    let base = svc
        .upstream
        .as_ref()
        .map(|u| u.base_path.as_str())
        .unwrap_or("");
    let mut target = String::with_capacity(base.len() + mapped.len() + 32);
    target.push_str(base);
    target.push_str(&mapped);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        target.push(if mapped.contains('?') { '&' } else { '?' });
        target.push_str(q);
    }
    target
}

fn retry_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Client headers never forwarded: framing (rewritten), the client's own
/// credentials (the service's key replaces them), ones the gateway sets.
fn dropped(name: &[u8]) -> bool {
    const DROP: [&[u8]; 9] = [
        b"host",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"x-request-id",
        b"expect",
        b"x-forwarded-for",
        auth::DEBUG_HEADER.as_bytes(),
    ];
    head::is_hop_by_hop(name) || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

#[allow(clippy::too_many_arguments)]
fn request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    c: &Client,
    svc: &Service,
    route: &RouteDef,
    target: &str,
    request_id: &str,
    key_index: usize,
    framing: BodyHeader,
) {
    let up = svc.upstream.as_ref().expect("remote service");
    let inbuf = &c.inbuf[..];
    let mut h = HeadWriter::request(out, &inbuf[head.method_range.clone()], target.as_bytes());
    h.header(b"host", up.authority.as_bytes());
    let json = matches!(route.body, Body::Json);
    for hp in &head.headers {
        let name = &inbuf[hp.name.clone()];
        if dropped(name)
            || head::connection_lists(inbuf, &head.headers, name)
            // LLM answers are read for usage and events: keep them plain.
            || (json && name.eq_ignore_ascii_case(b"accept-encoding"))
            || svc.headers.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        h.header(name, &inbuf[hp.value.clone()]);
    }
    if !svc.keys.is_empty() {
        let key = &svc.keys[key_index % svc.keys.len()];
        match svc.provider.auth {
            Auth::Bearer => h.header_fmt(b"authorization", format_args!("Bearer {key}")),
            Auth::ApiKey => h.header(b"api-key", key.as_bytes()),
            Auth::XApiKey => h.header(b"x-api-key", key.as_bytes()),
        };
    }
    for (name, value) in svc.provider.fixed_headers {
        if !svc.headers.iter().any(|(n, _)| n == name) {
            h.header(name.as_bytes(), value.as_bytes());
        }
    }
    for (name, value) in &svc.headers {
        h.header(name.as_bytes(), value.as_bytes());
    }
    h.header(b"x-request-id", request_id.as_bytes());
    h.header_fmt(b"x-forwarded-for", format_args!("{}", c.peer.ip()));
    h.body(framing);
    h.finish();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_framing_are_never_copied() {
        for name in [
            "Authorization",
            "x-api-key",
            "API-KEY",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Host",
        ] {
            assert!(dropped(name.as_bytes()), "{name}");
        }
        assert!(!dropped(b"content-type"));
    }
}
