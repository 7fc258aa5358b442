//! Answers for the non-chat scenarios the gateway proxies: OpenAI image
//! edits and variations (multipart; the answer echoes the model and the
//! image it saw), ComfyUI's REST routes (the answer names the method and
//! path), and OpenAI's `other` routes (files with multipart upload and
//! content download, batches, fine-tuning, model deletion).

use serde_json::{json, Value};

use super::api::{error_reply, Body, Proto, Reply};
use super::http::Request;
use super::State;

/// One part of a multipart/form-data body.
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub data: &'a [u8],
}

/// FNV-1a 64 of `data`, as 16 hex digits: lets a test check that a
/// large upload arrived intact without echoing it back.
pub fn fnv_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits a multipart/form-data body; `None` when it is not one (no
/// boundary, no delimiter, a part without headers, no close delimiter).
pub fn parse_multipart<'a>(req: &'a Request) -> Option<Vec<Part<'a>>> {
    let ct = req.header("content-type")?;
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return None;
    }
    let boundary = param(ct, "boundary")?;
    let delim = format!("--{boundary}").into_bytes();
    let body = &req.body[..];
    let mut at = find(body, &delim, 0)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delim.len();
        if body.get(after..after + 2)? == b"--" {
            return Some(parts);
        }
        let headers_end = find(body, b"\r\n\r\n", after)?;
        let headers = std::str::from_utf8(&body[after..headers_end]).ok()?;
        let disposition = headers
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then_some(v)
            })?
            .to_string();
        let start = headers_end + 4;
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delim);
        let end = find(body, &next_delim, start)?;
        parts.push(Part {
            name: param(&disposition, "name")?,
            filename: param(&disposition, "filename"),
            data: &body[start..end],
        });
        at = end + 2;
    }
}

fn field<'a>(parts: &'a [Part<'_>], name: &str) -> Option<&'a Part<'a>> {
    parts.iter().find(|p| p.name == name)
}

fn text(p: Option<&Part<'_>>) -> Value {
    p.map(|p| Value::String(String::from_utf8_lossy(p.data).into_owned()))
        .unwrap_or(Value::Null)
}

/// The answers of this module, or `None` for paths it does not serve.
pub fn handle(state: &State, req: &Request) -> Option<Reply> {
    let p = req.path.as_str();
    let m = req.method.as_str();
    if m == "POST" && (p.ends_with("/images/edits") || p.ends_with("/images/variations")) {
        return Some(image_edit(state, req));
    }
    if let Some(r) = comfyui(state, req) {
        return Some(r);
    }
    if let Some(rest) = p.strip_prefix("/v1/files") {
        if rest.is_empty() || rest.starts_with('/') {
            return Some(files(state, req, rest.trim_start_matches('/')));
        }
    }
    let other = ["/v1/batches", "/v1/fine_tuning"]
        .iter()
        .any(|c| p == *c || p.starts_with(&format!("{c}/")));
    if other || (p.starts_with("/v1/models/") && m != "GET") {
        return Some(echo(state, req, Value::Null));
    }
    None
}

/// `{"method", "path", "served_by", "body_bytes", "body_fnv"}` plus `extra`'s fields.
fn echo(state: &State, req: &Request, extra: Value) -> Reply {
    let mut v = json!({
        "method": req.method, "path": req.target, "served_by": state.cfg.name,
        "body_bytes": req.body.len(), "body_fnv": fnv_hex(&req.body),
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    Reply::json(200, &v)
}

fn image_edit(state: &State, req: &Request) -> Reply {
    let Some(parts) = parse_multipart(req) else {
        return error_reply(
            state,
            Proto::OpenAi,
            400,
            "mock-llm: expected a multipart/form-data body",
        );
    };
    let Some(image) = field(&parts, "image").or_else(|| field(&parts, "image[]")) else {
        return error_reply(state, Proto::OpenAi, 400, "mock-llm: 'image' is required");
    };
    Reply::json(
        200,
        &json!({
            "created": 0,
            "data": [{"url": "http://mock/edit.png"}],
            "model": text(field(&parts, "model")),
            "prompt": text(field(&parts, "prompt")),
            "image_bytes": image.data.len(),
            "image_fnv": fnv_hex(image.data),
            "fields": parts.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            "served_by": state.cfg.name,
        }),
    )
}

/// ComfyUI's REST routes, at the root of its server.
fn comfyui(state: &State, req: &Request) -> Option<Reply> {
    let p = req.path.as_str();
    let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let get = req.method == "GET";
    let post = req.method == "POST";
    let served = match segs.as_slice() {
        ["embeddings" | "extensions" | "features" | "models" | "workflow_templates"] => get,
        ["view" | "system_stats" | "object_info" | "userdata"] => get,
        ["models" | "object_info", x] => get && !x.is_empty(),
        ["view_metadata", ..] => get,
        ["v2", "userdata"] => get,
        ["prompt" | "history" | "queue" | "users"] => get || post,
        ["history", x] => get && !x.is_empty(),
        ["interrupt" | "free"] => post,
        ["userdata", x] => !x.is_empty() && (get || post || req.method == "DELETE"),
        ["userdata", x, "move", y] => post && !x.is_empty() && !y.is_empty(),
        ["upload", "image" | "mask"] => post,
        _ => false,
    };
    if !served {
        return None;
    }
    if segs[0] == "upload" {
        let Some(parts) = parse_multipart(req) else {
            return Some(error_reply(
                state,
                Proto::OpenAi,
                400,
                "mock-llm: expected a multipart/form-data upload",
            ));
        };
        let Some(image) = field(&parts, "image") else {
            return Some(error_reply(
                state,
                Proto::OpenAi,
                400,
                "mock-llm: 'image' is required",
            ));
        };
        let extra = json!({"comfyui": true, "name": image.filename, "subfolder": "",
                           "type": "input", "image_bytes": image.data.len(),
                           "image_fnv": fnv_hex(image.data)});
        return Some(echo(state, req, extra));
    }
    Some(echo(state, req, json!({"comfyui": true})))
}

/// `/v1/files[/{id}[/content]]`.
fn files(state: &State, req: &Request, rest: &str) -> Reply {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("POST", []) => {
            let Some(parts) = parse_multipart(req) else {
                return error_reply(
                    state,
                    Proto::OpenAi,
                    400,
                    "mock-llm: expected a multipart/form-data upload",
                );
            };
            let Some(file) = field(&parts, "file") else {
                return error_reply(state, Proto::OpenAi, 400, "mock-llm: 'file' is required");
            };
            Reply::json(
                200,
                &json!({"id": format!("file-{}", state.next_id()), "object": "file",
                        "bytes": file.data.len(), "filename": file.filename,
                        "purpose": text(field(&parts, "purpose")), "sha": fnv_hex(file.data),
                        "served_by": state.cfg.name}),
            )
        }
        ("GET", []) => Reply::json(
            200,
            &json!({"object": "list", "data": [], "served_by": state.cfg.name}),
        ),
        ("GET", [id]) => Reply::json(
            200,
            &json!({"id": id, "object": "file", "served_by": state.cfg.name}),
        ),
        ("DELETE", [id]) => Reply::json(
            200,
            &json!({"id": id, "object": "file", "deleted": true, "served_by": state.cfg.name}),
        ),
        ("GET", [id, "content"]) => Reply {
            status: 200,
            content_type: "application/octet-stream",
            headers: Vec::new(),
            body: Body::Full(file_content(id)),
            tokens: None,
        },
        _ => error_reply(
            state,
            Proto::OpenAi,
            404,
            &format!("mock-llm: no route for {} {}", req.method, req.path),
        ),
    }
}

/// The deterministic content of file `id`: its name repeated to 3000 bytes.
pub fn file_content(id: &str) -> Vec<u8> {
    id.bytes().chain(*b"\n").cycle().take(3000).collect()
}
