//! The request pipeline, one phase after another:
//!
//! route → body → model → consumer → limits → moderation → attempt order
//! → (attempt → first packet)* → relay → finish
//!
//! Fallback happens only before the first response byte reaches the
//! client; after that, `relay` ends a broken stream with an in-band error.
//! Each phase notes what it learned in the request's `observe::Record`.

use crate::config::catalog::{Body, Protocol, RouteDef};
use crate::conn::{Client, RequestBody, Rest};
use crate::error::{Error, Kind};
use crate::extract;
use crate::http::head::{self, Method, RequestHead};
use crate::http::write::{BodyHeader, HeadWriter};
use crate::observe::trace::{self, SpanId};
use crate::observe::Record;
use crate::protocol::translate::{request as translate_request, Direction};
use crate::provider::{mock, Auth};
use crate::relay::{self, Reply, Reshape};
use crate::route::{api, select};
use crate::scenario::multipart::{self, MultipartModel};
use crate::scenario::{tasks, websocket};
use crate::snapshot::{ModelApi, Service, Snapshot, Target};
use crate::upstream::exchange::{exchange, Request};
use crate::watch::Watch;
use crate::worker::Worker;
use crate::{auth, limit, moderation};
use std::borrow::Cow;
use std::time::Instant;

/// Handles one request whose head is parsed at the start of `c.inbuf`.
/// Returns when it ended, if the connection may serve another request.
pub async fn handle(
    w: &Worker,
    c: &mut Client,
    snap: &Snapshot,
    head: &RequestHead,
) -> Option<Instant> {
    let mut rec = Record::start(head.method, head.header(&c.inbuf, "traceparent"));
    let mut reply = Reply {
        request_id: request_id(w, c, head),
        protocol: Protocol::Openai,
        fallbacks: 0,
        keep_alive: head.keep_alive && !w.shutdown.is_fired(),
        http10: head.minor_version == 0,
        head_only: head.method == Method::Head,
        reshape: Reshape::None,
        service: None,
    };
    let mut watch = Watch::default();
    let keep_alive = pipeline(w, c, snap, head, &mut reply, &mut rec, &mut watch).await;
    // Finish: the tokens used count against token limits; metrics delta,
    // access log line, spans.
    watch.finish(&rec.usage);
    let ended = w.observe.finish(snap, &reply.request_id, &mut rec);
    keep_alive.then_some(ended)
}

async fn pipeline(
    w: &Worker,
    c: &mut Client,
    snap: &Snapshot,
    head: &RequestHead,
    reply: &mut Reply,
    rec: &mut Record,
    watch: &mut Watch,
) -> bool {
    let debug = head
        .header(&c.inbuf, crate::shared::DEBUG_HEADER)
        .is_some_and(|v| w.shared.trusts_debug(v));

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
            rec.api = api;
            return refuse_unread(c, head, reply, e, rec).await;
        }
    };
    let model_api = &snap.apis[api_index];
    reply.protocol = model_api.protocol;
    rec.api = Some(api_index);
    rec.route = Some(route);

    // 2. Body: held whole when it fits the buffer, else its prefix.
    let (body, consumed) = match c.read_body(head, &snap.edge).await {
        Ok(b) => b,
        Err(e) => {
            reply.keep_alive = false;
            return relay::error(c, reply, &e, rec).await;
        }
    };
    let monitoring = &model_api.spec.monitoring;
    if monitoring.enabled && (monitoring.log_request_body || monitoring.log_response_body) {
        let request_body = monitoring.log_request_body.then(|| body.held(&c.inbuf));
        rec.log_bodies(
            request_body,
            monitoring.log_response_body,
            w.observe.body_max_bytes,
        );
    }

    // 3. Model and stream flag, without a full parse (or the multipart
    // form's `model` field).
    let read = match route.body {
        Body::Multipart => {
            read_multipart(head, c, &body, model_api, &snap.edge).map(|(r, form)| (r, Some(form)))
        }
        _ => read_model(route, body.held(&c.inbuf), body.is_whole()).map(|r| (r, None)),
    };
    let (request, form) = match read {
        Ok(r) => r,
        Err(e) => {
            c.consume(consumed);
            // The rest of a large body is still unread: close after.
            reply.keep_alive &= body.is_whole();
            return relay::error(c, reply, &e, rec).await;
        }
    };
    rec.model = request.model.clone();
    rec.stream = request.stream;

    // 4. Consumer: who calls (401/403 on a Model API with auth).
    let consumer = auth::authenticate(
        &snap.consumers,
        &model_api.auth,
        &model_api.name,
        head,
        &c.inbuf,
        debug,
    );
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(e) => return refuse_read(c, &body, consumed, reply, e, rec).await,
    };
    rec.consumer = consumer.map(|i| snap.consumers.list[i].name.clone());

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
        Err(e) => return refuse_read(c, &body, consumed, reply, e, rec).await,
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
        return refuse_read(c, &body, consumed, reply, e, rec).await;
    }
    *watch = Watch::new(
        charge,
        model_api
            .moderation
            .as_ref()
            .filter(|m| m.check_response)
            .map(|m| moderation::ResponseCheck::new(m.clone(), model_api.protocol)),
    );

    // 7. Attempt order: the service mode's pick, then the fallbacks; a poll
    // of a known DashScope task goes to the service that accepted it.
    let sticky = tasks::poll_target(&w.shared.tasks, snap, api_index, route, &forward_path).await;
    let order = if let Some(t) = &sticky {
        Ok(vec![t])
    } else {
        let mut state = w.select.borrow_mut();
        let ejected = |s: usize| w.health.is_ejected(&snap.services[s]);
        select::attempt_order(
            snap,
            api_index,
            request.model.as_deref(),
            &mut state,
            ejected,
        )
    };
    let order = match order {
        Ok(o) => o,
        Err(e) => {
            c.consume(consumed);
            reply.keep_alive &= body.is_whole();
            return relay::error(c, reply, &e, rec).await;
        }
    };

    // WebSocket routes: the upgrade goes upstream, then a byte tunnel
    // (boxed: its state would otherwise enlarge every request's future).
    if route.websocket {
        return Box::pin(websocket::proxy(
            w,
            c,
            snap,
            head,
            &body,
            consumed,
            route,
            model_api,
            &forward_path,
            &order,
            reply,
            rec,
        ))
        .await;
    }

    // 8. Attempts, each before any byte reached the client.
    let query = head.query(&c.inbuf).map(str::to_string);
    let task_submit = tasks::is_async_submit(model_api, head, &c.inbuf);
    let mut body = body;
    let mut last_error = None;
    for (n, target) in order.iter().enumerate() {
        let svc = &snap.services[target.service];
        let replayable = body.is_whole();
        let last = n + 1 == order.len() || !replayable;
        reply.fallbacks = n;
        if debug {
            reply.service = Some(svc.name.clone());
        }
        let model = target
            .model
            .as_deref()
            .or(request.model.as_deref())
            .unwrap_or("");
        // The body and path this service gets: the client's, or translated
        // into the protocol the service speaks.
        let sent = match &form {
            Some(form) => Ok(Outgoing {
                body: multipart::outgoing_body(body.held(&c.inbuf), form, target.model.as_deref()),
                path: upstream_target(
                    svc,
                    model_api.protocol,
                    &forward_path,
                    query.as_deref(),
                    model,
                ),
                reshape: Reshape::None,
            }),
            None => outgoing(
                svc,
                model_api,
                route,
                &forward_path,
                query.as_deref(),
                body.held(&c.inbuf),
                body.is_whole(),
                &request,
                target,
                model,
            ),
        };
        let Outgoing {
            body: send_body,
            path,
            reshape,
        } = match sent {
            Ok(o) => o,
            Err(NotSent::Skip(e)) => {
                last_error = Some(e);
                if last {
                    break;
                }
                continue;
            }
            Err(NotSent::Refuse(e)) => {
                if body.is_whole() {
                    c.consume(consumed);
                } else {
                    reply.keep_alive = false;
                }
                return relay::error(c, reply, &e, rec).await;
            }
        };
        reply.reshape = reshape;

        if svc.provider.is_mock() {
            rec.attempt(target.service, target.model.as_deref());
            let answer = mock::answer(&path, &send_body);
            c.consume(consumed);
            return relay::mock(c, reply, answer, rec, watch).await;
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
        let span = rec.attempt(target.service, target.model.as_deref());
        request_head(
            &mut bytes,
            head,
            c,
            svc,
            route,
            &path,
            &reply.request_id,
            key,
            framing,
            (&rec.trace, span),
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
        match &result {
            Ok(resp) => w.health.record(svc, resp.head.status < 500),
            Err(e) if e.retryable() => w.health.record(svc, false),
            Err(_) => {}
        }
        match result {
            Ok(resp) if !last && retry_status(resp.head.status) => {
                tracing::debug!(service = %svc.name, status = resp.head.status, "attempt failed; falling back");
                rec.attempt_answered(resp.head.status, true);
                resp.conn.close().await;
            }
            Ok(mut resp) => {
                if body.is_whole() {
                    c.consume(consumed);
                }
                if task_submit {
                    tasks::remember_submit(&w.shared.tasks, svc, &mut resp).await;
                }
                rec.attempt_answered(resp.head.status, false);
                return relay::response(w, c, reply, svc, resp, rec, watch).await;
            }
            Err(e) => {
                tracing::debug!(service = %svc.name, error = %e, "attempt failed");
                rec.attempt_failed(&e);
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
    relay::error(c, reply, &e, rec).await
}

/// Refuses a request whose body was not read: the connection closes
/// unless there is no body to skip.
async fn refuse_unread(
    c: &mut Client,
    head: &RequestHead,
    reply: &mut Reply,
    e: Error,
    rec: &mut Record,
) -> bool {
    if head.framing == head::Framing::None || head.framing == head::Framing::Length(0) {
        c.consume(head.head_len);
    } else {
        reply.keep_alive = false;
    }
    relay::error(c, reply, &e, rec).await
}

/// Refuses a request whose body was read (whole, or its prefix: then the
/// rest is still on the socket and the connection closes).
async fn refuse_read(
    c: &mut Client,
    body: &RequestBody,
    consumed: usize,
    reply: &mut Reply,
    e: Error,
    rec: &mut Record,
) -> bool {
    if body.is_whole() {
        c.consume(consumed);
    } else {
        reply.keep_alive = false;
    }
    relay::error(c, reply, &e, rec).await
}

/// What the gateway read from the request body.
struct ModelRequest {
    model: Option<String>,
    stream: bool,
    fields: Option<extract::Fields>,
}

/// Multipart routes: the form's `model` field. ComfyUI uploads carry none;
/// elsewhere a large form must show it within the held bytes.
fn read_multipart(
    head: &RequestHead,
    c: &Client,
    body: &RequestBody,
    api: &ModelApi,
    edge: &crate::snapshot::EdgeLimits,
) -> Result<(ModelRequest, MultipartModel), Error> {
    let form = multipart::read_model(
        head,
        &c.inbuf,
        body.held(&c.inbuf),
        body.is_whole(),
        api.protocol != Protocol::Comfyui,
        edge.body_buffer_bytes,
    )?;
    let request = ModelRequest {
        model: form.model.clone(),
        stream: false,
        fields: None,
    };
    Ok((request, form))
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

/// What one attempt sends, and how its answer is reshaped for the client.
struct Outgoing<'a> {
    body: Cow<'a, [u8]>,
    path: String,
    reshape: Reshape,
}

/// Why an attempt sends nothing.
enum NotSent {
    /// This service cannot serve the request: the next attempt may.
    Skip(Error),
    /// The client's request is bad: answer it now.
    Refuse(Error),
}

/// The body and upstream path for one attempt at `svc`: the client's own
/// (byte-spliced, never parsed) when the service speaks the Model API's
/// protocol, else translated (PRODUCT.md §6).
#[allow(clippy::too_many_arguments)]
fn outgoing<'a>(
    svc: &Service,
    api: &ModelApi,
    route: &RouteDef,
    forward_path: &str,
    query: Option<&str>,
    held: &'a [u8],
    whole: bool,
    request: &ModelRequest,
    target: &Target,
    model: &str,
) -> Result<Outgoing<'a>, NotSent> {
    let direction = Direction::for_attempt(api.protocol, route, svc.provider, &svc.name)
        .map_err(NotSent::Skip)?;
    let Some(direction) = direction else {
        let (body, reshape) = native_body(held, whole, request, target, svc, api);
        let path = upstream_target(svc, api.protocol, forward_path, query, model);
        return Ok(Outgoing {
            body,
            path,
            reshape,
        });
    };
    if !whole {
        return Err(NotSent::Refuse(Error::new(
            Kind::BodyTooLarge,
            "a request translated between protocols must fit in body_buffer_bytes",
        )));
    }
    let (body, client_usage) = match direction {
        Direction::AnthropicToOpenai => {
            let to = translate_request::OpenaiTarget::for_provider(svc.provider);
            translate_request::anthropic_to_openai(held, model, to).map(|b| (b, false))
        }
        Direction::OpenaiToAnthropic => {
            translate_request::openai_to_anthropic(held, model).map(|t| (t.body, t.client_usage))
        }
    }
    .map_err(NotSent::Refuse)?;
    let path = upstream_target(
        svc,
        direction.upstream(),
        &direction.upstream_path(forward_path),
        query,
        model,
    );
    Ok(Outgoing {
        body: Cow::Owned(body),
        path,
        reshape: Reshape::Translate {
            direction,
            client_usage,
        },
    })
}

/// The client's body for a service that speaks its protocol: `model`
/// rewritten when the target names one, and OpenAI streams asked for usage
/// (PRODUCT.md §7) — the extra usage chunk is then hidden from a client
/// that did not ask for it.
fn native_body<'a>(
    held: &'a [u8],
    whole: bool,
    request: &ModelRequest,
    target: &Target,
    svc: &Service,
    api: &ModelApi,
) -> (Cow<'a, [u8]>, Reshape) {
    let Some(fields) = request.fields.as_ref() else {
        return (Cow::Borrowed(held), Reshape::None);
    };
    let model = target
        .model
        .as_deref()
        .filter(|m| request.model.as_deref() != Some(*m) && fields.model.is_some());
    let ask_usage =
        whole && request.stream && api.protocol == Protocol::Openai && svc.provider.stream_usage;
    if model.is_none() && !ask_usage {
        return (Cow::Borrowed(held), Reshape::None);
    }
    let mut out = Vec::new();
    let rewrite = extract::Rewrite {
        model,
        include_usage: ask_usage,
    };
    let client_asked = extract::rewrite_into(held, fields, &rewrite, &mut out);
    let reshape = if ask_usage && !client_asked {
        Reshape::HideUsageChunk
    } else {
        Reshape::None
    };
    (Cow::Owned(out), reshape)
}

/// Upstream request-target: base URL path + the provider's layout + query.
pub(crate) fn upstream_target(
    svc: &Service,
    protocol: Protocol,
    forward_path: &str,
    query: Option<&str>,
    model: &str,
) -> String {
    let mapped =
        svc.provider
            .upstream_path(protocol, forward_path, model, svc.api_version.as_deref());
    let base = svc.endpoint().map(|u| u.base_path.as_str()).unwrap_or("");
    // A base URL that already ends where the provider's layout begins
    // (`https://host/v1`, `.../compatible-mode/v1`) is not repeated.
    let within = |p: &str| {
        mapped
            .strip_prefix(p)
            .is_some_and(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?'))
    };
    let base = if within(base) {
        ""
    } else {
        base.strip_suffix("/v1")
            .filter(|_| within("/v1"))
            .unwrap_or(base)
    };
    let mut target = String::with_capacity(base.len() + mapped.len() + 32);
    target.push_str(base);
    target.push_str(&mapped);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        target.push(if mapped.contains('?') { '&' } else { '?' });
        target.push_str(q);
    }
    target
}

pub(crate) fn retry_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Client headers never forwarded: framing (rewritten), the client's own
/// credentials (the service's key replaces them), ones the gateway sets.
fn dropped(name: &[u8]) -> bool {
    const DROP: [&[u8]; 10] = [
        // The admin debug marker is for this gateway only.
        crate::shared::DEBUG_HEADER.as_bytes(),
        b"host",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"x-request-id",
        b"expect",
        b"x-forwarded-for",
        b"traceparent",
    ];
    head::is_hop_by_hop(name) || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    c: &Client,
    svc: &Service,
    route: &RouteDef,
    target: &str,
    request_id: &str,
    key_index: usize,
    framing: BodyHeader,
    (trace, span): (&trace::Context, SpanId),
) {
    let up = svc.endpoint().expect("remote service");
    let inbuf = &c.inbuf[..];
    let mut h = HeadWriter::request(out, &inbuf[head.method_range.clone()], target.as_bytes());
    h.header(b"host", up.authority.as_bytes());
    let json = matches!(route.body, Body::Json);
    for hp in &head.headers {
        let name = &inbuf[hp.name.clone()];
        if dropped(name)
            || head.connection_lists(inbuf, name)
            // LLM answers are read for usage and events: keep them plain.
            || (json && name.eq_ignore_ascii_case(b"accept-encoding"))
            // The service's own headers win over the client's copies.
            || svc.headers.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            || svc.provider.fixed_headers.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            // A trace the client's traceparent could not join: its state neither.
            || (trace.restarted && name.eq_ignore_ascii_case(b"tracestate"))
        {
            continue;
        }
        h.header(name, &inbuf[hp.value.clone()]);
    }
    if !svc.keys.is_empty() {
        let key = &svc.keys[key_index % svc.keys.len()];
        match svc.provider.auth {
            Auth::Bearer => h.header_parts(b"authorization", &[b"Bearer ", key.as_bytes()]),
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
    h.header(b"traceparent", &trace.traceparent(span));
    h.header(b"x-forwarded-for", c.peer_ip.as_bytes());
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
            "traceparent",
        ] {
            assert!(dropped(name.as_bytes()), "{name}");
        }
        assert!(!dropped(b"content-type"));
    }
}
