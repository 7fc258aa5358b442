//! The attempt engine: a request's attempts at its targets, in order, each
//! before any answer byte reached the client. Every kind of request that
//! goes upstream comes through here (HTTP and SSE, WebSocket upgrades,
//! DashScope task submits, moderation service calls), so the rules live in
//! one place:
//!
//! - the order walk and the fallback count (`x-modelgate-fallback`);
//! - what may be sent again: a next attempt only while the body is
//!   replayable (a streamed body is sent once, ever), and only after an
//!   upstream failure or a 429/5xx answer;
//! - per-service health (outlier ejection) and the per-attempt span;
//! - the last error, answered when no attempt succeeded;
//! - cancellation: a client that hangs up while an attempt awaits its
//!   answer head ends the attempt (its connection is closed).
//!
//! What each attempt sends is the caller's [`Plan`]; the exchange itself is
//! `upstream`'s.

use crate::client::{Body, Client};
use crate::error::{Error, Kind};
use crate::http::head::Method;
use crate::observe::trace::{self, SpanId};
use crate::observe::Record;
use crate::snapshot::{Backend, Service, Snapshot, Target};
use crate::upstream::exchange::{self, Call, NoRest, Response};
use crate::upstream::Endpoint;
use crate::worker::Worker;
use std::time::Duration;

/// How long an attempt awaits its answer head before it starts watching
/// the client for a hang-up (a watch costs a poll per request; most
/// answers come sooner). A client gone by then is noticed at once.
const WATCH_AFTER: Duration = Duration::from_millis(300);

/// Why an attempt sends nothing.
pub enum NotSent {
    /// This service cannot serve the request: the next attempt may.
    Skip(Error),
    /// The client's request is bad: answer it now.
    Refuse(Error),
}

/// What a kind of request sends on each attempt.
pub trait Plan {
    /// What an attempt at `svc` carries (body, path…), before it is framed.
    type Prepared;
    fn prepare(
        &mut self,
        c: &Client,
        body: &Body,
        target: &Target,
        svc: &Service,
    ) -> Result<Self::Prepared, NotSent>;
    /// The attempt's request head and held body, to `out`.
    fn wire(
        &mut self,
        c: &Client,
        body: &Body,
        prepared: Self::Prepared,
        to: To<'_>,
        out: &mut Vec<u8>,
    );
    fn method(&self) -> Method;
    /// For streams: the longest wait for the first body bytes.
    fn first_packet(&self) -> Option<Duration> {
        None
    }
}

/// Where an attempt goes.
pub struct To<'a> {
    pub svc: &'a Service,
    pub endpoint: &'a Endpoint,
    pub trace: (&'a trace::Context, SpanId),
}

/// Which attempt ended the walk.
pub struct Attempted<'a> {
    /// Attempts before this one (`x-modelgate-fallback`).
    pub fallbacks: usize,
    pub target: &'a Target,
    pub svc: &'a Service,
}

pub enum Outcome<'a, P> {
    /// A service answered; the answer is this request's.
    Answered(Attempted<'a>, Response<'a>),
    /// The target is the in-process mock: the caller answers for it.
    Mock(Attempted<'a>, P),
    /// No attempt succeeded: the last error, after `fallbacks` attempts.
    Failed(usize, Error),
    /// The client hung up while an attempt awaited its answer.
    ClientGone,
}

/// An answer status that lets the next target try.
pub fn retry_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Walks `order` until an attempt is answered or none is left.
pub async fn run<'a, P: Plan>(
    w: &'a Worker,
    c: &mut Client,
    snap: &'a Snapshot,
    order: &[&'a Target],
    body: &mut Body,
    rec: &mut Record,
    plan: &mut P,
) -> Outcome<'a, P::Prepared> {
    let mut last_error = None;
    for (n, &target) in order.iter().enumerate() {
        let svc = &snap.services[target.service];
        let attempted = Attempted {
            fallbacks: n,
            target,
            svc,
        };
        let prepared = match plan.prepare(c, body, target, svc) {
            Ok(p) => p,
            Err(NotSent::Skip(e)) => {
                last_error = Some(e);
                continue;
            }
            Err(NotSent::Refuse(e)) => return Outcome::Failed(n, e),
        };
        let span = rec.attempt(target.service, target.model.as_deref());
        let endpoint = match &svc.backend {
            Backend::Mock => return Outcome::Mock(attempted, prepared),
            Backend::Remote(e) => e,
        };
        let mut bytes = Vec::with_capacity(1024);
        let to = To {
            svc,
            endpoint,
            trace: (&rec.trace, span),
        };
        plan.wire(c, body, prepared, to, &mut bytes);
        let call = Call {
            service: &svc.name,
            endpoint,
            connect_timeout: svc.connect_timeout,
            timeout: svc.timeout,
            method: plan.method(),
            first_packet: plan.first_packet(),
        };
        let result = exchange(w, c, &call, bytes, body).await;
        let last = n + 1 == order.len() || !body.replayable();
        match &result {
            Ok(Some(resp)) => w
                .health
                .record(&svc.name, svc.outlier, resp.head.status < 500),
            Err(e) if e.retryable() => w.health.record(&svc.name, svc.outlier, false),
            _ => {}
        }
        match result {
            Ok(Some(resp)) if !last && retry_status(resp.head.status) => {
                let status = resp.head.status;
                tracing::debug!(service = %svc.name, status, "attempt failed; falling back");
                rec.attempt_answered(status, true);
                last_error = Some(Error::new(
                    Kind::UpstreamStatus,
                    format!("service {} answered {status}", svc.name),
                ));
            }
            Ok(Some(resp)) => {
                rec.attempt_answered(resp.head.status, false);
                return Outcome::Answered(attempted, resp);
            }
            Ok(None) => {
                rec.error = Some("client_closed");
                return Outcome::ClientGone;
            }
            Err(e) => {
                tracing::debug!(service = %svc.name, error = %e, "attempt failed");
                rec.attempt_failed(&e);
                if last || !e.retryable() {
                    return Outcome::Failed(n, e);
                }
                last_error = Some(e);
            }
        }
    }
    let n = order.len().saturating_sub(1);
    let e = last_error.unwrap_or_else(|| Error::new(Kind::Internal, "no attempt was made"));
    Outcome::Failed(n, e)
}

/// One attempt: send (the rest of a large body streamed from the client),
/// then await the answer head while watching the client. `None`: the
/// client hung up first; the attempt's connection is closed with it.
async fn exchange<'a>(
    w: &'a Worker,
    c: &mut Client,
    call: &Call<'a>,
    bytes: Vec<u8>,
    body: &mut Body,
) -> Result<Option<Response<'a>>, Error> {
    let lease = if body.is_whole() {
        exchange::send(&w.pool, w.next_addr(), call, bytes, &mut NoRest).await?
    } else {
        let mut rest = body.rest(c);
        exchange::send(&w.pool, w.next_addr(), call, bytes, &mut rest).await?
    };
    let head = std::pin::pin!(exchange::read_head(lease, call, w.buffer()));
    c.unless_gone_after(WATCH_AFTER, head).await.transpose()
}
