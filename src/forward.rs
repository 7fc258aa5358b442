//! What a request carries upstream: the body a service gets (the client's
//! own, byte-spliced, never parsed — or translated into the protocol the
//! service speaks, PRODUCT.md §6), the upstream path, and the request head
//! (the client's headers minus credentials, framing and hop-by-hop ones,
//! plus the service's auth, the trace and forwarding headers).

use crate::attempt::{NotSent, Plan, To};
use crate::client::{Body, Client};
use crate::config::catalog::{Body as BodyKind, Protocol, RouteDef};
use crate::error::{Error, Kind};
use crate::extract;
use crate::http::head::{self, Framing, Method, RequestHead};
use crate::http::write::{BodyHeader, HeadWriter};
use crate::multipart::{self, MultipartModel};
use crate::observe::trace::{self, SpanId};
use crate::protocol::translate::{request as translate_request, Direction};
use crate::provider::Auth;
use crate::request::Reshape;
use crate::snapshot::{ModelApi, Service, Target};
use crate::upstream::Endpoint;
use crate::worker::Worker;
use std::borrow::Cow;
use std::time::Duration;

/// What the gateway read from the request body.
pub struct ModelRequest {
    pub model: Option<String>,
    pub stream: bool,
    pub fields: Option<extract::Fields>,
    /// A multipart form's `model` field.
    pub form: Option<MultipartModel>,
}

/// What one attempt sends, and how its answer is reshaped for the client.
pub struct Outgoing {
    /// `None`: the held body as the client sent it.
    pub body: Option<Vec<u8>>,
    pub path: String,
    pub reshape: Reshape,
}

impl Outgoing {
    pub fn body<'a>(&'a self, held: &'a [u8]) -> &'a [u8] {
        self.body.as_deref().unwrap_or(held)
    }
}

/// What every attempt's head takes from the client's request.
pub struct Origin<'a> {
    pub head: &'a RequestHead,
    pub request_id: &'a str,
    pub route: &'a RouteDef,
    /// The peer is a trusted proxy: its forwarding headers are kept.
    pub trusted: bool,
}

/// One attempt's side of the head.
pub struct Hop<'a> {
    pub svc: &'a Service,
    pub endpoint: &'a Endpoint,
    pub path: &'a str,
    pub key: usize,
    pub framing: BodyHeader,
    pub trace: (&'a trace::Context, SpanId),
}

/// Plain HTTP requests (JSON, SSE, multipart, pass-through bodies).
pub struct HttpPlan<'r> {
    pub w: &'r Worker,
    pub api: &'r ModelApi,
    pub origin: Origin<'r>,
    pub forward_path: &'r str,
    pub query: Option<&'r str>,
    pub request: &'r ModelRequest,
    /// The reshaping the latest attempt's answer needs.
    pub reshape: Reshape,
}

impl Plan for HttpPlan<'_> {
    type Prepared = Outgoing;

    fn prepare(
        &mut self,
        c: &Client,
        body: &Body,
        target: &Target,
        svc: &Service,
    ) -> Result<Outgoing, NotSent> {
        let held = body.held(&c.inbuf);
        let request = self.request;
        let model = target
            .model
            .as_deref()
            .or(request.model.as_deref())
            .unwrap_or("");
        let protocol = self.api.protocol;
        if let Some(form) = &request.form {
            let body = multipart::outgoing_body(held, form, target.model.as_deref());
            return Ok(Outgoing {
                body: owned(body),
                path: upstream_target(svc, protocol, self.forward_path, self.query, model),
                reshape: Reshape::None,
            });
        }
        let route = self.origin.route;
        let direction = Direction::for_attempt(protocol, route, svc.provider, &svc.name)
            .map_err(NotSent::Skip)?;
        let Some(direction) = direction else {
            let (body, reshape) =
                native_body(held, body.is_whole(), request, target, svc, self.api);
            let path = upstream_target(svc, protocol, self.forward_path, self.query, model);
            return Ok(Outgoing {
                body: owned(body),
                path,
                reshape,
            });
        };
        if !body.is_whole() {
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
            Direction::OpenaiToAnthropic => translate_request::openai_to_anthropic(held, model)
                .map(|t| (t.body, t.client_usage)),
        }
        .map_err(NotSent::Refuse)?;
        let path = upstream_target(
            svc,
            direction.upstream(),
            &direction.upstream_path(self.forward_path),
            self.query,
            model,
        );
        Ok(Outgoing {
            body: Some(body),
            path,
            reshape: Reshape::Translate {
                direction,
                client_usage,
            },
        })
    }

    fn wire(&mut self, c: &Client, body: &Body, out: Outgoing, to: To<'_>, bytes: &mut Vec<u8>) {
        let To {
            svc,
            endpoint,
            trace,
        } = to;
        self.reshape = out.reshape;
        let send = out.body(body.held(&c.inbuf));
        let framing = match body.rest_len() {
            None if self.origin.head.framing == Framing::None => BodyHeader::Omit,
            None => BodyHeader::Length(send.len() as u64),
            Some(Some(rest)) => BodyHeader::Length(send.len() as u64 + rest),
            Some(None) => BodyHeader::Chunked,
        };
        bytes.reserve(512 + send.len());
        let hop = Hop {
            svc,
            endpoint,
            path: &out.path,
            key: self.w.next_key(),
            framing,
            trace,
        };
        request_head(bytes, c, &self.origin, &hop);
        if framing == BodyHeader::Chunked && !send.is_empty() {
            crate::http::body::write_chunk_header(send.len(), bytes);
            bytes.extend_from_slice(send);
            bytes.extend_from_slice(b"\r\n");
        } else {
            bytes.extend_from_slice(send);
        }
    }

    fn method(&self) -> Method {
        self.origin.head.method
    }

    fn first_packet(&self) -> Option<Duration> {
        self.api
            .first_packet_timeout
            .filter(|_| self.request.stream)
    }
}

fn owned(body: Cow<'_, [u8]>) -> Option<Vec<u8>> {
    match body {
        Cow::Borrowed(_) => None,
        Cow::Owned(b) => Some(b),
    }
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
pub fn upstream_target(
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

/// Client headers never forwarded: framing (rewritten), the client's own
/// credentials (the service's key replaces them), ones the gateway sets.
fn dropped(name: &[u8]) -> bool {
    const DROP: [&[u8]; 9] = [
        // The admin debug marker is for this gateway only.
        crate::shared::DEBUG_HEADER.as_bytes(),
        b"host",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"x-request-id",
        b"expect",
        b"traceparent",
    ];
    head::is_hop_by_hop(name) || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// The forwarding headers a client may send (PRODUCT.md §7).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forwarding {
    For,
    Host,
    Proto,
    /// `Forwarded`, `X-Real-IP`: passed on from trusted proxies only.
    Other,
}

fn forwarding(name: &[u8]) -> Option<Forwarding> {
    // Most headers are ruled out by their length or first letter.
    match (name.len(), name.first().map(u8::to_ascii_lowercase)) {
        (15, Some(b'x')) if name.eq_ignore_ascii_case(b"x-forwarded-for") => Some(Forwarding::For),
        (16, Some(b'x')) if name.eq_ignore_ascii_case(b"x-forwarded-host") => {
            Some(Forwarding::Host)
        }
        (17, Some(b'x')) if name.eq_ignore_ascii_case(b"x-forwarded-proto") => {
            Some(Forwarding::Proto)
        }
        (9, Some(b'x')) if name.eq_ignore_ascii_case(b"x-real-ip") => Some(Forwarding::Other),
        (9, Some(b'f')) if name.eq_ignore_ascii_case(b"forwarded") => Some(Forwarding::Other),
        _ => None,
    }
}

/// The service's own credential: its `key`-th key (round robin), in the
/// header its provider reads.
pub fn service_key(h: &mut HeadWriter<'_>, svc: &Service, key: usize) {
    if svc.keys.is_empty() {
        return;
    }
    let key = svc.keys[key % svc.keys.len()].as_bytes();
    match svc.provider.auth {
        Auth::Bearer => h.header_parts(b"authorization", &[b"Bearer ", key]),
        Auth::ApiKey => h.header(b"api-key", key),
        Auth::XApiKey => h.header(b"x-api-key", key),
    };
}

/// Writes the head of one attempt's request to `out`.
pub fn request_head(out: &mut Vec<u8>, c: &Client, origin: &Origin<'_>, hop: &Hop<'_>) {
    let (head, svc, trace) = (origin.head, hop.svc, hop.trace.0);
    let inbuf = &c.inbuf[..];
    let mut h = HeadWriter::request(out, &inbuf[head.method_range.clone()], hop.path.as_bytes());
    h.header(b"host", hop.endpoint.authority.as_bytes());
    let json = matches!(origin.route.body, BodyKind::Json);
    // From a trusted proxy: the X-Forwarded-For it sent, and whether it
    // set the host and proto.
    let (mut prior_for, mut has_host, mut has_proto) = (None, false, false);
    for hp in &head.headers {
        let name = &inbuf[hp.name.clone()];
        if let Some(f) = forwarding(name) {
            if !origin.trusted {
                continue;
            }
            match f {
                Forwarding::For => {
                    prior_for = Some(&inbuf[hp.value.clone()]);
                    continue;
                }
                Forwarding::Host => has_host = true,
                Forwarding::Proto => has_proto = true,
                Forwarding::Other => {}
            }
        } else if dropped(name)
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
    service_key(&mut h, svc, hop.key);
    for (name, value) in svc.provider.fixed_headers {
        if !svc.headers.iter().any(|(n, _)| n == name) {
            h.header(name.as_bytes(), value.as_bytes());
        }
    }
    for (name, value) in &svc.headers {
        h.header(name.as_bytes(), value.as_bytes());
    }
    h.header(b"x-request-id", origin.request_id.as_bytes());
    h.header(b"traceparent", &trace.traceparent(hop.trace.1));
    match prior_for {
        Some(prior) => h.header_parts(b"x-forwarded-for", &[prior, b", ", c.peer_ip.as_bytes()]),
        None => h.header(b"x-forwarded-for", c.peer_ip.as_bytes()),
    };
    if !has_proto {
        let proto: &[u8] = if c.tls.is_some() { b"https" } else { b"http" };
        h.header(b"x-forwarded-proto", proto);
    }
    if let (false, Some(host)) = (has_host, head.host.clone()) {
        h.header(b"x-forwarded-host", &inbuf[host]);
    }
    h.body(hop.framing);
    h.finish();
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
