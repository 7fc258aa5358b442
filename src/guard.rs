//! The prompt check of the pipeline's moderation phase: deny rules on the
//! prompt's text, then the Model API's moderation service (OpenAI's
//! `/v1/moderations` shape), asked through the attempt engine like any
//! upstream call.

use crate::attempt::{self, NotSent, Outcome, Plan, To};
use crate::client::{Body, Client};
use crate::config::catalog::Protocol;
use crate::error::{Error, Kind};
use crate::http::head::Method;
use crate::http::write::{BodyHeader, HeadWriter};
use crate::moderation::{self, prompt_blocked};
use crate::observe::Record;
use crate::request::Request;
use crate::snapshot::{ModelApi, Service, Target};
use crate::upstream::whole::read_whole;
use serde_json::Value;

/// Largest moderation service answer read.
const SERVICE_ANSWER_CAP: usize = 1 << 20;

/// Checks the prompt of a JSON request before it is forwarded. A prompt
/// too large to hold whole cannot be checked, so it is refused.
pub async fn check_prompt(rq: &mut Request<'_>, api: &ModelApi, json: bool) -> Result<(), Error> {
    let Some(policy) = api.moderation.as_deref().filter(|_| json) else {
        return Ok(());
    };
    if !rq.body.as_ref().is_some_and(Body::is_whole) {
        return Err(Error::new(
            Kind::BodyTooLarge,
            "request body too large for content moderation",
        ));
    }
    let text = moderation::prompt_text(rq.held())?;
    if policy.denies(&text) {
        return Err(prompt_blocked());
    }
    match policy.service {
        Some(i) if ask_service(rq, i, &text).await? => Err(prompt_blocked()),
        _ => Ok(()),
    }
}

/// Asks moderation service `service` whether `text` is flagged.
async fn ask_service(rq: &mut Request<'_>, service: usize, text: &str) -> Result<bool, Error> {
    let (w, snap) = (rq.w, rq.snap);
    let svc = &snap.services[service];
    let body = serde_json::to_vec(&serde_json::json!({ "input": text })).unwrap_or_default();
    let mut plan = ModerationCall {
        body,
        request_id: &rq.reply.request_id,
        key: w.next_key(),
    };
    let target = Target {
        service,
        model: None,
    };
    // Its own record: the call is not one of the request's attempts
    // (those count its fallbacks).
    let mut rec = Record::start(Method::Post, None);
    let mut no_body = Body::none(0);
    let outcome = attempt::run(w, rq.c, snap, &[&target], &mut no_body, &mut rec, &mut plan).await;
    let unavailable = |e: Error| {
        Error::new(
            e.kind,
            format!("moderation service {}: {}", svc.name, e.message),
        )
    };
    let resp = match outcome {
        Outcome::Answered(_, resp) => resp,
        Outcome::Failed(_, e) => return Err(unavailable(e)),
        Outcome::Mock(..) | Outcome::ClientGone => {
            return Err(Error::new(Kind::Internal, "moderation service call ended"))
        }
    };
    let answer = read_whole(resp, &svc.name, svc.timeout, SERVICE_ANSWER_CAP)
        .await
        .map_err(unavailable)?;
    let status = answer.head.status;
    if status != 200 {
        return Err(Error::new(
            Kind::UpstreamStatus,
            format!("moderation service {} answered {status}", svc.name),
        ));
    }
    let v: Value = serde_json::from_slice(&answer.body).map_err(|e| {
        Error::new(
            Kind::UpstreamProtocol,
            format!("moderation service {}: answer is not JSON: {e}", svc.name),
        )
    })?;
    let results = v.get("results").and_then(Value::as_array).ok_or_else(|| {
        Error::new(
            Kind::UpstreamProtocol,
            format!("moderation service {}: answer has no results", svc.name),
        )
    })?;
    Ok(results
        .iter()
        .any(|r| r.get("flagged").and_then(Value::as_bool) == Some(true)))
}

/// The request to a moderation service.
struct ModerationCall<'r> {
    body: Vec<u8>,
    request_id: &'r str,
    key: usize,
}

impl Plan for ModerationCall<'_> {
    type Prepared = ();

    fn prepare(&mut self, _: &Client, _: &Body, _: &Target, _: &Service) -> Result<(), NotSent> {
        Ok(())
    }

    fn wire(&mut self, _: &Client, _: &Body, _: (), to: To<'_>, bytes: &mut Vec<u8>) {
        let (svc, up) = (to.svc, to.endpoint);
        let layout = svc.provider.upstream_path(
            Protocol::Openai,
            "/v1/moderations",
            "",
            svc.api_version.as_deref(),
        );
        let path = format!("{}{layout}", up.base_path);
        let mut h = HeadWriter::request(bytes, b"POST", path.as_bytes());
        h.header(b"host", up.authority.as_bytes());
        h.header(b"content-type", b"application/json");
        crate::forward::service_key(&mut h, svc, self.key);
        for (name, value) in &svc.headers {
            h.header(name.as_bytes(), value.as_bytes());
        }
        h.header(b"x-request-id", self.request_id.as_bytes());
        h.body(BodyHeader::Length(self.body.len() as u64));
        h.finish();
        bytes.extend_from_slice(&self.body);
    }

    fn method(&self) -> Method {
        Method::Post
    }
}
