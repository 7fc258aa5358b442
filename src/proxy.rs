//! The request pipeline, one phase after another:
//!
//! route → consumer → body → model → limits → moderation → attempt order
//! → attempts → relay → finish
//!
//! The consumer is known from the head alone, before any body byte is read.
//! Each phase returns what it learned or a refusal; the request context
//! (`request::Request`) decides in one place what becomes of the body and
//! the connection. Fallback happens only before the first response byte
//! reaches the client (`attempt`); after that, `relay` ends a broken stream
//! with an in-band error. Each phase notes what it learned in the
//! request's `observe::Record`.

use crate::attempt::{self, Outcome};
use crate::client::Client;
use crate::config::catalog::{Body, RouteDef};
use crate::error::{Error, Kind};
use crate::extract;
use crate::forward::{HttpPlan, ModelRequest, Origin};
use crate::http::head::{Method, RequestHead};
use crate::limit::Charge;
use crate::multipart;
use crate::provider::mock;
use crate::relay;
use crate::request::{Request, Reshape};
use crate::route::{api, select};
use crate::scenario::{models, tasks, websocket};
use crate::snapshot::{ModelApi, Snapshot, Target};
use crate::watch::Watch;
use crate::worker::Worker;
use crate::{auth, guard, limit, moderation};
use std::time::Instant;

/// Handles one request whose head is parsed at the start of `c.inbuf`.
/// Returns when it ended, if the connection may serve another request.
pub async fn handle(
    w: &Worker,
    c: &mut Client,
    snap: &Snapshot,
    head: &RequestHead,
) -> Option<Instant> {
    let mut rq = Request::new(w, c, snap, head);
    let keep_alive = match pipeline(&mut rq).await {
        Ok(keep_alive) => keep_alive,
        Err(e) => rq.refuse(&e).await,
    };
    // Finish: the tokens used count against token limits; metrics delta,
    // access log line, spans.
    rq.watch.finish(&rq.rec.usage);
    let ended = w.observe.finish(snap, &rq.reply.request_id, &mut rq.rec);
    keep_alive.then_some(ended)
}

/// Where routing sent the request.
struct Routed<'s> {
    api: usize,
    route: &'s RouteDef,
    forward_path: String,
}

/// Runs the phases; `Ok` once an answer was written (whether the
/// connection may serve another request), `Err` for a refusal.
async fn pipeline(rq: &mut Request<'_>) -> Result<bool, Error> {
    let snap = rq.snap;

    // 1. Route: host → Model API → base path → route.
    let Routed {
        api: api_index,
        route,
        forward_path,
    } = match route(rq) {
        Ok(routed) => routed,
        Err(e) => return answered_by_gateway(rq).await.ok_or(e),
    };
    let api = &snap.apis[api_index];
    if let Some(cors) = &api.cors {
        let origin = rq.head.header(&rq.c.inbuf, "origin");
        rq.reply.cors_origin = origin.filter(|o| cors.allows(o)).map(Into::into);
    }
    // The admin's debug request, marked for this Model API only.
    let debug = rq
        .head
        .header(&rq.c.inbuf, crate::shared::DEBUG_HEADER)
        .is_some_and(|v| rq.w.shared.trusts_debug(v, &api.name));

    // 2. Consumer: who calls, from the head alone (401/403 on a Model API
    // with auth before any body byte is read).
    let consumer = auth::authenticate(
        &snap.consumers,
        &api.auth,
        &api.name,
        rq.head,
        &rq.c.inbuf,
        debug,
    )?;
    rq.rec.consumer = consumer.map(|i| snap.consumers.list[i].name.clone());

    // 3. Body: held whole when it fits the buffer, else its prefix; all
    // of it within the body deadline.
    let hold = matches!(route.body, Body::Json).then_some(&rq.w.shared);
    rq.body = Some(rq.c.read_body(rq.head, &snap.edge, hold).await?);
    log_request_body(rq, api);

    // 4. Model and stream flag, without a full parse (or the multipart
    // form's `model` field).
    let request = read_model(rq, route, api)?;
    rq.rec.model = request.model.clone();
    rq.rec.stream = request.stream;

    // 5. Limits: this request counts now, its tokens when it ends.
    let charge = admit(snap, api, consumer)?;

    // 6. Moderation of the prompt, before anything is forwarded.
    let json = matches!(route.body, Body::Json);
    guard::check_prompt(rq, api, json).await?;
    let check = api
        .moderation
        .as_ref()
        .filter(|m| m.check_response)
        .map(|m| moderation::ResponseCheck::new(m.clone(), api.protocol));
    rq.watch = Watch::new(charge, check);

    // 7. Attempt order: the service mode's pick, then the fallbacks; a poll
    // of a known DashScope task goes to the service that accepted it.
    let sticky =
        tasks::poll_target(&rq.w.shared.tasks, snap, api_index, route, &forward_path).await;
    let order = attempt_order(rq.w, snap, api_index, &request, sticky.as_ref())?;

    // WebSocket routes: the upgrade goes upstream, then a byte tunnel
    // (boxed: its state would otherwise enlarge every request's future).
    if route.websocket {
        return Ok(Box::pin(websocket::proxy(rq, route, api, &forward_path, &order)).await);
    }

    // 8. Attempts, each before any byte reached the client.
    let query = rq.head.query(&rq.c.inbuf).map(str::to_string);
    let task_submit = tasks::is_async_submit(api, rq.head, &rq.c.inbuf);
    let mut plan = HttpPlan {
        w: rq.w,
        api,
        origin: Origin {
            head: rq.head,
            request_id: &rq.reply.request_id,
            route,
            trusted: rq.trusted_peer(),
        },
        forward_path: &forward_path,
        query: query.as_deref(),
        request: &request,
        reshape: Reshape::None,
    };
    let body = rq.body.as_mut().expect("body read");
    let outcome = attempt::run(rq.w, rq.c, snap, &order, body, &mut rq.rec, &mut plan).await;
    let reshape = plan.reshape;

    // 9. Relay the answer.
    let (attempted, mut resp) = match outcome {
        Outcome::Answered(attempted, resp) => (attempted, resp),
        Outcome::Mock(attempted, out) => {
            rq.reply.fallbacks = attempted.fallbacks;
            rq.reply.reshape = out.reshape;
            let answer = mock::answer(&out.path, out.body(rq.held()));
            rq.settle();
            return Ok(relay::mock(rq, answer).await);
        }
        Outcome::Failed(fallbacks, e) => {
            rq.reply.fallbacks = fallbacks;
            return Err(e);
        }
        Outcome::ClientGone => return Ok(false),
    };
    rq.reply.fallbacks = attempted.fallbacks;
    rq.reply.reshape = reshape;
    if debug {
        rq.reply.service = Some(attempted.svc.name.clone());
    }
    if task_submit {
        tasks::remember_submit(&rq.w.shared.tasks, attempted.svc, &mut resp).await;
    }
    rq.settle();
    Ok(relay::response(rq, attempted.svc, resp).await)
}

/// Requests no route serves that the gateway answers itself: CORS
/// preflights, and `GET /v1/models` on a text Model API (after the
/// consumer's key, as for any request).
async fn answered_by_gateway(rq: &mut Request<'_>) -> Option<bool> {
    let api = &rq.snap.apis[rq.rec.api?];
    if rq.head.method == Method::Options {
        return preflight(rq, api).await;
    }
    let answer = models::answer(api, rq.head.method, rq.head.path(&rq.c.inbuf))?;
    let snap = rq.snap;
    let consumer = auth::authenticate(
        &snap.consumers,
        &api.auth,
        &api.name,
        rq.head,
        &rq.c.inbuf,
        false,
    );
    if let Err(e) = consumer {
        return Some(rq.refuse(&e).await);
    }
    rq.settle();
    Some(relay::mock(rq, answer).await)
}

/// A CORS preflight on a Model API with `cors`: answered, never forwarded.
async fn preflight(rq: &mut Request<'_>, api: &ModelApi) -> Option<bool> {
    let cors = api.cors.as_ref()?;
    let buf = &rq.c.inbuf;
    let origin = rq.head.header(buf, "origin")?;
    rq.head.header(buf, "access-control-request-method")?;
    let path = rq.head.path(buf);
    let path = crate::snapshot::under_base(&api.base_path, path)?;
    let path = if path.is_empty() { "/" } else { path };
    let methods = api
        .routes
        .iter()
        .filter(|r| r.matches_path(path))
        .map(|r| r.methods)
        .reduce(|a, b| a.union(b))?;
    if !cors.allows(origin) {
        let e = Error::new(
            Kind::Forbidden,
            "this origin may not call the Model API (cors)",
        );
        return Some(rq.refuse(&e).await);
    }
    rq.reply.cors_origin = Some(origin.into());
    rq.settle();
    let methods = methods.allow_header();
    Some(crate::request::write_preflight(rq.c, &rq.reply, cors, &methods).await)
}

/// Phase 1: the Model API and route for the request's host, method and
/// path.
fn route<'s>(rq: &mut Request<'s>) -> Result<Routed<'s>, Error> {
    let (snap, head, buf) = (rq.snap, rq.head, &rq.c.inbuf);
    let host = head.host.clone().map(|r| &buf[r]).unwrap_or(b"");
    let host = std::str::from_utf8(host).unwrap_or("");
    let method = std::str::from_utf8(&buf[head.method_range.clone()]).unwrap_or("");
    match api::find(snap, host, method, head.path(buf)) {
        Ok(m) => {
            let api = &snap.apis[m.api];
            rq.reply.protocol = api.protocol;
            rq.rec.api = Some(m.api);
            rq.rec.route = Some(m.route);
            Ok(Routed {
                api: m.api,
                route: m.route,
                forward_path: m.forward_path.to_string(),
            })
        }
        Err((api, e)) => {
            if let Some(i) = api {
                rq.reply.protocol = snap.apis[i].protocol;
            }
            rq.rec.api = api;
            Err(e)
        }
    }
}

/// The request body in the access log, when the Model API logs bodies.
fn log_request_body(rq: &mut Request<'_>, api: &ModelApi) {
    let monitoring = &api.spec.monitoring;
    if monitoring.enabled && (monitoring.log_request_body || monitoring.log_response_body) {
        let body = rq.body.as_ref().expect("body read");
        let request_body = monitoring.log_request_body.then(|| body.held(&rq.c.inbuf));
        rq.rec.log_bodies(
            request_body,
            monitoring.log_response_body,
            rq.w.observe.body_max_bytes,
        );
    }
}

/// Phase 4: the model name and stream flag (JSON bodies), or the
/// multipart form's `model` field. ComfyUI uploads carry none; elsewhere a
/// large body must show it within the held bytes.
fn read_model(rq: &Request<'_>, route: &RouteDef, api: &ModelApi) -> Result<ModelRequest, Error> {
    let body = rq.body.as_ref().expect("body read");
    let held = body.held(&rq.c.inbuf);
    let whole = body.is_whole();
    let none = ModelRequest {
        model: None,
        stream: false,
        fields: None,
        form: None,
    };
    match route.body {
        Body::Multipart => {
            let form = multipart::read_model(
                rq.head,
                &rq.c.inbuf,
                held,
                whole,
                api.protocol != crate::config::catalog::Protocol::Comfyui,
                rq.snap.edge.body_buffer_bytes,
            )?;
            Ok(ModelRequest {
                model: form.model.clone(),
                form: Some(form),
                ..none
            })
        }
        Body::Json => json_model(held, whole).map_err(|e| {
            // A coded body is not JSON to the scan: say why (the choice is
            // to refuse it, not to decode it; asked only on this error path).
            let coded = rq
                .head
                .header(&rq.c.inbuf, "content-encoding")
                .filter(|v| !v.eq_ignore_ascii_case(b"identity"));
            match coded {
                Some(coding) => Error::new(
                    Kind::UnsupportedMediaType,
                    format!(
                        "request bodies with Content-Encoding {} are not decoded: send JSON unencoded",
                        String::from_utf8_lossy(coding)
                    ),
                ),
                None => e,
            }
        }),
        _ => Ok(none),
    }
}

fn json_model(body: &[u8], whole: bool) -> Result<ModelRequest, Error> {
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
        Err(_) => return Err(not_json(body)),
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
        form: None,
    })
}

/// Why a body is not a JSON object, with where it broke (a full parse,
/// on this error path only).
fn not_json(body: &[u8]) -> Error {
    let why = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let kind = match v {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            format!("request body is not a JSON object (it is {kind})")
        }
        Err(e) => {
            // serde_json counts lines and columns; clients want the byte.
            let offset = body
                .split(|&b| b == b'\n')
                .take(e.line().saturating_sub(1))
                .map(|l| l.len() + 1)
                .sum::<usize>()
                + e.column().saturating_sub(1);
            let mut what = e.to_string();
            if let Some(at) = what.find(" at line ") {
                what.truncate(at);
            }
            format!("request body is not valid JSON: {what} at byte {offset}")
        }
    };
    Error::new(Kind::BadRequest, why)
}

/// Phase 5: the consumer's and the Model API's limits admit the request.
fn admit(snap: &Snapshot, api: &ModelApi, consumer: Option<usize>) -> Result<Charge, Error> {
    let named = consumer.map(|i| {
        let c = &snap.consumers.list[i];
        (c.name.as_str(), &c.limits)
    });
    limit::admit(&snap.limits, named, (&api.name, &api.limits), consumer)
}

/// Phase 7: the targets to try, in order.
fn attempt_order<'s>(
    w: &Worker,
    snap: &'s Snapshot,
    api: usize,
    request: &ModelRequest,
    sticky: Option<&'s Target>,
) -> Result<Vec<&'s Target>, Error> {
    if let Some(t) = sticky {
        return Ok(vec![t]);
    }
    let mut state = w.select.borrow_mut();
    let ejected = |s: usize| {
        let svc = &snap.services[s];
        w.health.is_ejected(&svc.name, svc.outlier)
    };
    select::attempt_order(snap, api, request.model.as_deref(), &mut state, ejected)
}
