//! Content moderation of a Model API: `deny` phrases (case-insensitive,
//! one Aho-Corasick automaton) and `re:` regular expressions (one
//! `RegexSet`), checked on the prompt's text and, with `check_response`, on
//! the answer's; an optional moderation service that answers OpenAI's
//! `/v1/moderations` shape, asked about the prompt before it is forwarded.
//!
//! Text is only parsed out of bodies when moderation is on for the Model
//! API. Streamed answers are checked event by event on the text they
//! carry, with the end of the previous text kept ([`ResponseCheck`]), so a
//! phrase split across two events is still caught; the event that
//! completes a match is never sent.

use crate::config::catalog::Protocol;
use crate::config::raw::ModerationSpec;
use crate::config::Problems;
use crate::error::{Error, Kind};
use crate::http::head::Method;
use crate::http::write::{BodyHeader, HeadWriter};
use crate::provider::Auth;
use crate::snapshot::Service;
use crate::upstream::exchange::{exchange, Request};
use crate::upstream::whole::read_whole;
use crate::worker::Worker;
use aho_corasick::AhoCorasick;
use regex::RegexSet;
use serde_json::Value;
use std::sync::Arc;

/// Text kept from earlier events for regular expressions spanning events.
const REGEX_TAIL: usize = 256;
/// Largest moderation service answer read.
const SERVICE_ANSWER_CAP: usize = 1 << 20;

/// A Model API's compiled moderation settings.
pub struct Policy {
    /// Lower-cased phrases; matched against lower-cased text.
    phrases: Option<AhoCorasick>,
    longest_phrase: usize,
    regexes: Option<RegexSet>,
    pub check_response: bool,
    /// Index of the moderation service in the snapshot.
    pub service: Option<usize>,
}

impl Policy {
    /// Validates `spec` (field path `at`); `service` resolves a service
    /// name to its index and whether it speaks OpenAI's protocol remotely.
    pub fn compile(
        at: &str,
        spec: &ModerationSpec,
        service: impl Fn(&str) -> Option<(usize, bool)>,
        p: &mut Problems,
    ) -> Option<Arc<Policy>> {
        let mut phrases = Vec::new();
        let mut patterns = Vec::new();
        for (i, d) in spec.deny.iter().enumerate() {
            match d.strip_prefix("re:") {
                Some(re) => match regex::Regex::new(re) {
                    Ok(_) => patterns.push(re.to_string()),
                    Err(e) => p.error(format!("{at}.deny[{i}]"), format!("invalid regex: {e}")),
                },
                None if d.trim().is_empty() => {
                    p.error(format!("{at}.deny[{i}]"), "phrase must not be empty")
                }
                None => phrases.push(d.to_lowercase()),
            }
        }
        let service = match &spec.service {
            None => None,
            Some(name) => match service(name) {
                Some((i, true)) => Some(i),
                Some((_, false)) => {
                    p.error(
                        format!("{at}.service"),
                        format!("service {name:?} must be a remote service speaking the openai protocol (/v1/moderations)"),
                    );
                    None
                }
                None => {
                    p.error(format!("{at}.service"), format!("unknown service {name:?}"));
                    None
                }
            },
        };
        if !spec.enabled || (phrases.is_empty() && patterns.is_empty() && service.is_none()) {
            return None;
        }
        let longest_phrase = phrases.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        let phrases = (!phrases.is_empty())
            .then(|| AhoCorasick::new(&phrases))
            .and_then(|r| {
                r.map_err(|e| p.error(format!("{at}.deny"), e.to_string()))
                    .ok()
            });
        let regexes = (!patterns.is_empty())
            .then(|| RegexSet::new(&patterns))
            .and_then(|r| {
                r.map_err(|e| p.error(format!("{at}.deny"), e.to_string()))
                    .ok()
            });
        Some(Arc::new(Policy {
            phrases,
            longest_phrase,
            regexes,
            check_response: spec.check_response,
            service,
        }))
    }

    /// Whether a deny rule matches `text`.
    pub fn denies(&self, text: &str) -> bool {
        if text.is_empty() {
            return false;
        }
        if let Some(ac) = &self.phrases {
            if ac.is_match(&text.to_lowercase()) {
                return true;
            }
        }
        self.regexes.as_ref().is_some_and(|r| r.is_match(text))
    }

    /// Characters of earlier text to keep so that any phrase, and a regex
    /// match of up to `REGEX_TAIL` characters, spanning events is found.
    fn tail_chars(&self) -> usize {
        self.longest_phrase
            .saturating_sub(1)
            .max(if self.regexes.is_some() {
                REGEX_TAIL
            } else {
                0
            })
    }
}

pub fn prompt_blocked() -> Error {
    Error::new(Kind::ContentFilter, "prompt blocked by content moderation")
}

pub fn answer_blocked() -> Error {
    Error::new(
        Kind::ContentFilter,
        "response blocked by content moderation",
    )
}

/// Appends the text of a message `content` (a string, or parts with
/// `text`, or tool results with their own `content`).
fn content_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(parts) => parts.iter().for_each(|p| content_text(p, out)),
        Value::Object(o) => {
            for key in ["text", "content", "prompt", "messages"] {
                if let Some(v) = o.get(key) {
                    content_text(v, out);
                }
            }
        }
        _ => {}
    }
}

/// All text of a request: every message's content (OpenAI messages and
/// content parts; Anthropic `system` and messages), a completion `prompt`,
/// an `input` (embeddings, DashScope).
pub fn prompt_text(body: &[u8]) -> Result<String, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::new(Kind::BadRequest, format!("request body is not JSON: {e}")))?;
    let mut out = String::new();
    if let Some(messages) = v.get("messages").and_then(Value::as_array) {
        for m in messages {
            if let Some(c) = m.get("content") {
                content_text(c, &mut out);
            }
        }
    }
    for key in ["system", "prompt", "input"] {
        if let Some(x) = v.get(key) {
            content_text(x, &mut out);
        }
    }
    Ok(out)
}

/// Checks a prompt before it is forwarded: deny rules, then the
/// moderation service. `whole`: the body is held whole (a prompt too
/// large to hold cannot be checked, so it is refused).
pub async fn check_prompt(
    w: &Worker,
    services: &[Service],
    policy: Option<&Policy>,
    body: &[u8],
    whole: bool,
    request_id: &str,
) -> Result<(), Error> {
    let Some(policy) = policy else {
        return Ok(());
    };
    if !whole {
        return Err(Error::new(
            Kind::BodyTooLarge,
            "request body too large for content moderation",
        ));
    }
    let text = prompt_text(body)?;
    if policy.denies(&text) {
        return Err(prompt_blocked());
    }
    if let Some(i) = policy.service {
        if ask_service(w, &services[i], &text, request_id).await? {
            return Err(prompt_blocked());
        }
    }
    Ok(())
}

/// Asks a moderation service whether `text` is flagged.
async fn ask_service(
    w: &Worker,
    svc: &Service,
    text: &str,
    request_id: &str,
) -> Result<bool, Error> {
    let up = svc.endpoint().expect("moderation service is remote");
    let body = serde_json::to_vec(&serde_json::json!({ "input": text })).unwrap_or_default();
    let path = format!(
        "{}{}",
        up.base_path,
        svc.provider.upstream_path(
            Protocol::Openai,
            "/v1/moderations",
            "",
            svc.api_version.as_deref()
        )
    );
    let mut bytes = Vec::with_capacity(512 + body.len());
    let mut h = HeadWriter::request(&mut bytes, b"POST", path.as_bytes());
    h.header(b"host", up.authority.as_bytes());
    h.header(b"content-type", b"application/json");
    if let Some(key) = svc.keys.get(w.next_key() % svc.keys.len().max(1)) {
        match svc.provider.auth {
            Auth::Bearer => h.header_parts(b"authorization", &[b"Bearer ", key.as_bytes()]),
            Auth::ApiKey => h.header(b"api-key", key.as_bytes()),
            Auth::XApiKey => h.header(b"x-api-key", key.as_bytes()),
        };
    }
    for (name, value) in &svc.headers {
        h.header(name.as_bytes(), value.as_bytes());
    }
    h.header(b"x-request-id", request_id.as_bytes());
    h.body(BodyHeader::Length(body.len() as u64));
    h.finish();
    bytes.extend_from_slice(&body);
    let mut req = Request {
        bytes,
        method: Method::Post,
        rest: None,
        first_packet: None,
    };
    let unavailable = |e: Error| {
        Error::new(
            e.kind,
            format!("moderation service {}: {}", svc.name, e.message),
        )
    };
    let resp = exchange(w, svc, &mut req).await.map_err(unavailable)?;
    let answer = read_whole(resp, &svc.name, svc.timeout, SERVICE_ANSWER_CAP)
        .await
        .map_err(unavailable)?;
    let status = answer.head.status;
    if answer.reusable {
        w.pool.put(&up.pool_key, answer.conn);
    }
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

/// The text an answer carries, in the client's protocol: a whole JSON
/// body, or (`event`) one SSE event's data.
fn answer_text(protocol: Protocol, v: &Value, out: &mut String) {
    let s = |v: Option<&Value>, out: &mut String| {
        if let Some(t) = v.and_then(Value::as_str) {
            out.push_str(t);
        }
    };
    match protocol {
        Protocol::Anthropic => {
            // Whole message: content blocks; stream: text deltas.
            if let Some(blocks) = v.get("content").and_then(Value::as_array) {
                for b in blocks {
                    s(b.get("text"), out);
                }
            }
            s(v.pointer("/delta/text"), out);
            s(v.pointer("/content_block/text"), out);
        }
        _ => {
            if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                for c in choices {
                    if let Some(m) = c.get("message").or_else(|| c.get("delta")) {
                        match m.get("content") {
                            Some(Value::Array(parts)) => {
                                for p in parts {
                                    s(p.get("text"), out);
                                }
                            }
                            other => s(other, out),
                        }
                        s(m.get("refusal"), out);
                    }
                    s(c.get("text"), out);
                }
            }
            // DashScope's native answers.
            s(v.pointer("/output/text"), out);
        }
    }
}

/// The moderation of one answer, fed as it is relayed.
pub struct ResponseCheck {
    policy: Arc<Policy>,
    protocol: Protocol,
    /// The end of the text seen so far, for matches spanning events.
    tail: String,
    text: String,
}

impl ResponseCheck {
    pub fn new(policy: Arc<Policy>, protocol: Protocol) -> Self {
        ResponseCheck {
            policy,
            protocol,
            tail: String::new(),
            text: String::new(),
        }
    }

    /// Whether `event` (one whole SSE event) may be sent.
    pub fn event(&mut self, event: &[u8]) -> bool {
        self.text.clear();
        self.text.push_str(&self.tail);
        let fresh = self.text.len();
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if let Ok(v) = serde_json::from_slice::<Value>(data) {
                answer_text(self.protocol, &v, &mut self.text);
            }
        }
        if self.text.len() == fresh {
            return true;
        }
        if self.policy.denies(&self.text) {
            return false;
        }
        let keep = self.policy.tail_chars();
        let start = self
            .text
            .char_indices()
            .rev()
            .nth(keep.saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        self.tail.clear();
        if keep > 0 {
            self.tail.push_str(&self.text[start..]);
        }
        true
    }

    /// Whether a whole (non-streamed) JSON answer may be sent.
    pub fn whole(&mut self, body: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return true;
        };
        self.text.clear();
        answer_text(self.protocol, &v, &mut self.text);
        !self.policy.denies(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str]) -> Arc<Policy> {
        let spec = ModerationSpec {
            enabled: true,
            deny: deny.iter().map(|s| s.to_string()).collect(),
            check_response: true,
            service: None,
        };
        let mut p = Problems::default();
        let policy = Policy::compile("m", &spec, |_| None, &mut p).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        policy
    }

    #[test]
    fn phrases_are_case_insensitive_and_regexes_match() {
        let p = policy(&["Forbidden Phrase", "re:secret-[0-9]+", "ÉCOLE"]);
        assert!(p.denies("a FORBIDDEN phrase here"));
        assert!(p.denies("the secret-42 code"));
        assert!(
            !p.denies("the SECRET-42 code"),
            "regexes keep their own case rules"
        );
        assert!(p.denies("une école"));
        assert!(!p.denies("forbidden, phrase"));
    }

    #[test]
    fn bad_rules_are_field_errors() {
        let spec = ModerationSpec {
            enabled: true,
            deny: vec!["ok".into(), "re:(".into(), " ".into()],
            check_response: false,
            service: Some("nope".into()),
        };
        let mut p = Problems::default();
        Policy::compile("model_apis[1].moderation", &spec, |_| None, &mut p);
        let errs: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        assert!(errs[0].starts_with("model_apis[1].moderation.deny[1]: invalid regex"));
        assert!(errs[1].starts_with("model_apis[1].moderation.deny[2]: phrase must not be empty"));
        assert!(errs[2].starts_with("model_apis[1].moderation.service: unknown service"));
    }

    #[test]
    fn prompt_text_covers_both_protocols() {
        let openai = br#"{"model":"m","messages":[{"role":"system","content":"sys one"},
            {"role":"user","content":[{"type":"text","text":"part two"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        let t = prompt_text(openai).unwrap();
        assert!(t.contains("sys one") && t.contains("part two") && !t.contains("url"));
        let anthropic = br#"{"model":"m","system":[{"type":"text","text":"be nice"}],"messages":[
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"deep three"}]}]}]}"#;
        let t = prompt_text(anthropic).unwrap();
        assert!(t.contains("be nice") && t.contains("deep three"));
        assert!(prompt_text(b"nope").is_err());
    }

    #[test]
    fn a_phrase_split_across_events_is_caught() {
        let ev = |t: &str| {
            format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[{"index":0,"delta":{"content":t}}]})
            )
        };
        let mut c = ResponseCheck::new(policy(&["from mock"]), Protocol::Openai);
        assert!(c.event(ev("Hello").as_bytes()));
        assert!(c.event(ev(" from").as_bytes()));
        assert!(c.event(b"data: [DONE]\n\n"));
        assert!(!c.event(ev(" mock-llm").as_bytes()));

        let aev = |t: &str| {
            format!(
                "event: content_block_delta\ndata: {}\n\n",
                serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}})
            )
        };
        let mut c = ResponseCheck::new(policy(&["re:secret-[0-9]+"]), Protocol::Anthropic);
        assert!(c.event(aev("the secret").as_bytes()));
        assert!(c.event(aev("-").as_bytes()));
        assert!(!c.event(aev("7 is").as_bytes()));
    }

    #[test]
    fn whole_answers_in_both_protocols() {
        let mut c = ResponseCheck::new(policy(&["bad word"]), Protocol::Openai);
        assert!(
            !c.whole(br#"{"choices":[{"message":{"role":"assistant","content":"a BAD word"}}]}"#)
        );
        assert!(c.whole(br#"{"choices":[{"message":{"role":"assistant","content":"fine"}}]}"#));
        let mut c = ResponseCheck::new(policy(&["bad word"]), Protocol::Anthropic);
        assert!(!c.whole(br#"{"content":[{"type":"text","text":"bad word"}]}"#));
    }
}
