//! DashScope asynchronous jobs (image, video): a submit with
//! `X-DashScope-Async: enable` answers a task id, and every later
//! `/api/v1/tasks/{id}` (and its sub-paths, `/cancel`) must reach the
//! service that accepted the task, whatever the Model API's selection
//! would pick now.
//!
//! The memory task id → service is `crate::tasks::TaskMap`, outside the
//! snapshot, so it survives reloads; the service is kept by name and
//! looked up in the snapshot of the poll.

use crate::config::catalog::{Protocol, RouteDef};
use crate::http::body::ChunkedDecoder;
use crate::http::head::{Framing, Method, RequestHead};
use crate::snapshot::{ModelApi, Selection, Service, Snapshot, Target};
use crate::tasks::TaskMap;
use crate::upstream::exchange::Response;
use serde::Deserialize;
use std::borrow::Cow;
use std::time::Duration;

/// Largest submit answer read to find its task id; larger answers are
/// relayed without being remembered.
const MAX_SUBMIT_ANSWER: usize = 64 * 1024;
/// Longest task id remembered.
const MAX_TASK_ID: usize = 128;

/// Whether this request submits an asynchronous DashScope job.
pub fn is_async_submit(api: &ModelApi, head: &RequestHead, buf: &[u8]) -> bool {
    api.protocol == Protocol::Dashscope
        && head.method == Method::Post
        && head
            .header(buf, "x-dashscope-async")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"enable"))
}

/// The task id a `/api/v1/tasks/{id}` path (or a sub-path) names.
pub fn polled_task(path: &str) -> Option<&str> {
    const TASKS: &str = "/api/v1/tasks/";
    let rest = &path[path.rfind(TASKS)? + TASKS.len()..];
    let id = rest.split('/').next().unwrap_or("");
    valid_id(id).then_some(id)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TASK_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#'))
}

/// For a poll of a remembered task: the one target to send it to (no
/// fallback: no other service knows the task). `None` for other requests,
/// unknown ids, and services this Model API no longer uses.
pub async fn poll_target(
    tasks: &TaskMap,
    snap: &Snapshot,
    api_index: usize,
    route: &RouteDef,
    forward_path: &str,
) -> Option<Target> {
    let api = &snap.apis[api_index];
    if route.name != "tasks" || api.protocol != Protocol::Dashscope {
        return None;
    }
    let name = tasks.find(polled_task(forward_path)?).await?;
    let service = snap.services.iter().position(|s| *s.name == *name)?;
    uses_service(api, service).then_some(Target {
        service,
        model: None,
    })
}

/// Whether `service` is among the Model API's targets (selection or
/// fallback): a poll never reaches a service its API does not use.
fn uses_service(api: &ModelApi, service: usize) -> bool {
    let selected = match &api.selection {
        Selection::Single(t) => t.service == service,
        Selection::ByModel(rules) => rules.iter().any(|(_, t)| t.service == service),
        Selection::ByWeight { targets, .. } => targets.iter().any(|t| t.service == service),
    };
    selected || api.fallback.iter().any(|t| t.service == service)
}

#[derive(Deserialize)]
struct SubmitAnswer<'a> {
    #[serde(borrow)]
    output: Option<SubmitOutput<'a>>,
}

#[derive(Deserialize)]
struct SubmitOutput<'a> {
    #[serde(borrow)]
    task_id: Option<Cow<'a, str>>,
}

/// `output.task_id` of a submit's answer. A bounded, borrowed parse: it
/// runs only for async submits, whose answers are a few hundred bytes.
pub fn submit_task_id(body: &[u8]) -> Option<Cow<'_, str>> {
    let answer: SubmitAnswer<'_> = serde_json::from_slice(body).ok()?;
    let id = answer.output?.task_id?;
    valid_id(&id).then_some(id)
}

/// After a submit's answer head arrived: reads the rest of its (small)
/// body into `resp.buf`, where the relay finds it, and remembers the
/// task id → `svc`. Answers that are not 2xx, streams, too large, or not
/// framed by length or chunks are relayed without being remembered.
pub async fn remember_submit(tasks: &TaskMap, svc: &Service, resp: &mut Response<'_>) {
    let streamed = resp
        .head
        .header(&resp.buf, "content-type")
        .is_some_and(|v| v.starts_with(b"text/event-stream"));
    if !(200..300).contains(&resp.head.status) || streamed {
        return;
    }
    let start = resp.head.head_len;
    let body = match resp.head.framing {
        Framing::Length(n) if n as usize <= MAX_SUBMIT_ANSWER => {
            let end = start + n as usize;
            while resp.buf.len() < end {
                if !read_more(resp, svc.timeout).await {
                    return;
                }
            }
            Cow::Borrowed(&resp.buf[start..end])
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::new(MAX_SUBMIT_ANSWER as u64);
            let mut decoded = Vec::new();
            let mut pos = start;
            loop {
                let progress =
                    match decoder.decode(&resp.buf[pos..], |d| decoded.extend_from_slice(d)) {
                        Ok(p) => p,
                        Err(_) => return,
                    };
                pos += progress.consumed;
                if progress.done {
                    break;
                }
                if !read_more(resp, svc.timeout).await {
                    return;
                }
            }
            Cow::Owned(decoded)
        }
        _ => return,
    };
    match submit_task_id(&body) {
        Some(id) => tasks.insert(&id, &svc.name),
        None => tracing::debug!(service = %svc.name, "async submit answer has no output.task_id"),
    }
}

/// Appends upstream bytes to `resp.buf`; false on end, error or timeout
/// (the relay then meets the same condition and ends the answer).
async fn read_more(resp: &mut Response<'_>, timeout: Duration) -> bool {
    matches!(resp.lease.conn().read_append(&mut resp.buf, timeout).await, Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_from_paths_and_answers() {
        assert_eq!(polled_task("/api/v1/tasks/abc-1"), Some("abc-1"));
        assert_eq!(
            polled_task("/base/api/v1/tasks/abc-1/cancel"),
            Some("abc-1")
        );
        assert_eq!(polled_task("/api/v1/tasks"), None);
        assert_eq!(polled_task("/api/v1/tasks/"), None);
        assert_eq!(
            polled_task(&format!("/api/v1/tasks/{}", "x".repeat(200))),
            None
        );

        let answer =
            br#"{"request_id":"r","output":{"task_status":"PENDING","task_id":"86ecf553-d340"}}"#;
        assert_eq!(submit_task_id(answer).as_deref(), Some("86ecf553-d340"));
        let escaped = br#"{"output":{"task_id":"a\u002db"}}"#;
        assert_eq!(submit_task_id(escaped).as_deref(), Some("a-b"));
        for bad in [
            &br#"{"output":{"task_status":"FAILED"}}"#[..],
            br#"{"code":"InvalidParameter","message":"m"}"#,
            br#"{"output":{"task_id":42}}"#,
            br#"{"output":{"task_id":"a/b"}}"#,
            br#"{"output":{"task_id":""}}"#,
            b"not json",
        ] {
            assert_eq!(
                submit_task_id(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
