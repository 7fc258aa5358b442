//! Request bodies: Anthropic Messages ⇄ OpenAI chat completions.
//!
//! The client's body is read into borrowed wire types, the upstream's
//! body built from them and written once. A body that cannot be read, or
//! holds something the other protocol cannot carry, is a 400 for the
//! client (nothing is forwarded).

use super::{bad_request, borrow};
use crate::error::Error;
use crate::protocol::anthropic as a;
use crate::protocol::json::{TextOrList, TextOrObject};
use crate::protocol::openai as o;
use crate::provider::Provider;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Anthropic requires `max_tokens`; used when an OpenAI client sent none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// What the OpenAI-speaking upstream needs to be told.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenaiTarget {
    /// Ask streams for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Send the limit as `max_completion_tokens` (OpenAI's own API, where
    /// reasoning models refuse `max_tokens`) rather than `max_tokens`.
    pub max_completion_tokens: bool,
}

impl OpenaiTarget {
    pub fn for_provider(p: &Provider) -> Self {
        OpenaiTarget {
            include_usage: p.stream_usage,
            max_completion_tokens: matches!(p.kind, "openai" | "azure_openai"),
        }
    }
}

/// A translated OpenAI → Anthropic request.
#[derive(Debug)]
pub struct ToAnthropic {
    pub body: Vec<u8>,
    /// The client asked for a usage chunk (`stream_options.include_usage`).
    pub client_usage: bool,
}

fn to_vec<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // The wire types serialize infallibly (no non-string map keys).
    serde_json::to_vec(v).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Anthropic client → OpenAI upstream

/// An Anthropic Messages body → an OpenAI chat completions body for `model`.
pub fn anthropic_to_openai(
    body: &[u8],
    model: &str,
    target: OpenaiTarget,
) -> Result<Vec<u8>, Error> {
    let req: a::Request = serde_json::from_slice(body)
        .map_err(|e| bad_request(format_args!("invalid Messages request: {e}")))?;

    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(o::ChatMessage {
            role: "system".into(),
            content: Some(TextOrList::Text(system_text(system)?)),
            ..Default::default()
        });
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role.as_ref() {
            "user" => user_turn(&m.content, &mut messages),
            "assistant" => assistant_turn(&m.content, &mut messages),
            other => Err(bad_request(format_args!(
                "messages[{i}].role: unknown role {other:?}"
            ))),
        }
        .map_err(|e| at(e, i))?;
    }

    let has_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty());
    let tools = match &req.tools {
        Some(tools) => Some(
            tools
                .iter()
                .map(openai_tool)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let tool_choice = req
        .tool_choice
        .as_ref()
        .map(openai_tool_choice)
        .transpose()?;
    let no_parallel = req
        .tool_choice
        .as_ref()
        .and_then(|c| c.disable_parallel_tool_use)
        == Some(true);

    let stream = req.stream == Some(true);
    let out = o::ChatRequest {
        model: model.into(),
        messages,
        max_tokens: req.max_tokens.filter(|_| !target.max_completion_tokens),
        max_completion_tokens: req.max_tokens.filter(|_| target.max_completion_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req
            .stop_sequences
            .as_ref()
            .map(|s| TextOrList::List(s.iter().map(borrow).collect())),
        n: None,
        stream: req.stream.filter(|s| *s),
        stream_options: (stream && target.include_usage).then_some(o::StreamOptions {
            include_usage: true,
        }),
        tools,
        tool_choice,
        parallel_tool_calls: (has_tools && no_parallel).then_some(false),
        user: req
            .metadata
            .as_ref()
            .and_then(|m| m.user_id.as_ref())
            .map(borrow),
    };
    Ok(to_vec(&out))
}

/// Prefixes a message error with its position.
fn at(e: Error, i: usize) -> Error {
    if e.message.starts_with("messages[") {
        e
    } else {
        bad_request(format_args!("messages[{i}]: {}", e.message))
    }
}

/// The system prompt as one string: text blocks joined by newlines.
fn system_text<'b>(system: &'b TextOrList<'_, a::Block<'_>>) -> Result<Cow<'b, str>, Error> {
    match system {
        TextOrList::Text(t) => Ok(borrow(t)),
        TextOrList::List(blocks) => {
            let texts = blocks
                .iter()
                .map(|b| match (b.kind.as_ref(), &b.text) {
                    ("text", Some(t)) => Ok(t.as_ref()),
                    (kind, _) => Err(bad_request(format_args!(
                        "system: only text blocks are allowed, not {kind:?}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(join(&texts))
        }
    }
}

fn join<'b>(texts: &[&'b str]) -> Cow<'b, str> {
    match texts {
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(texts.join("\n")),
    }
}

/// An Anthropic image source as an OpenAI image URL (a data URL for
/// base64 images).
fn image_url<'b>(source: Option<&'b a::ImageSource<'_>>) -> Result<Cow<'b, str>, Error> {
    let Some(s) = source else {
        return Err(bad_request("image block without source"));
    };
    match (s.kind.as_ref(), &s.media_type, &s.data, &s.url) {
        ("base64", Some(media), Some(data), _) => Ok(Cow::Owned(format!("data:{media};base64,{data}"))),
        ("url", _, _, Some(url)) => Ok(borrow(url)),
        (kind, ..) => Err(bad_request(format_args!(
            "image source of type {kind:?} cannot be translated (base64 with media_type and data, or url)"
        ))),
    }
}

fn image_part<'b>(b: &'b a::Block<'_>) -> Result<o::Part<'b>, Error> {
    Ok(o::Part {
        kind: "image_url".into(),
        text: None,
        image_url: Some(o::ImageUrl {
            url: image_url(b.source.as_ref())?,
        }),
    })
}

fn text_of<'b>(b: &'b a::Block<'_>) -> Result<&'b str, Error> {
    b.text
        .as_deref()
        .ok_or_else(|| bad_request("text block without text"))
}

/// A user turn: tool results become `tool` messages (first: OpenAI wants
/// them right after the assistant's tool calls), the rest one `user`
/// message.
fn user_turn<'b>(
    content: &'b TextOrList<'_, a::Block<'_>>,
    out: &mut Vec<o::ChatMessage<'b>>,
) -> Result<(), Error> {
    let blocks = match content {
        TextOrList::Text(t) => {
            out.push(o::ChatMessage {
                role: "user".into(),
                content: Some(TextOrList::Text(borrow(t))),
                ..Default::default()
            });
            return Ok(());
        }
        TextOrList::List(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b.kind.as_ref() {
            "text" => parts.push(o::Part::text(text_of(b)?)),
            "image" => parts.push(image_part(b)?),
            "tool_result" => out.push(tool_message(b, &mut parts)?),
            other => return Err(unknown_block(other)),
        }
    }
    if !parts.is_empty() {
        out.push(o::ChatMessage {
            role: "user".into(),
            content: Some(parts_content(parts)),
            ..Default::default()
        });
    }
    Ok(())
}

/// A lone text part as a plain string, which every server accepts.
fn parts_content(mut parts: Vec<o::Part<'_>>) -> TextOrList<'_, o::Part<'_>> {
    if parts.len() == 1 && parts[0].kind == "text" {
        if let Some(t) = parts.pop().and_then(|p| p.text) {
            return TextOrList::Text(t);
        }
    }
    TextOrList::List(parts)
}

/// A `tool_result` block as a `tool` message; images in it (which tool
/// messages cannot hold) go to `images` for the user message after it.
fn tool_message<'b>(
    b: &'b a::Block<'_>,
    images: &mut Vec<o::Part<'b>>,
) -> Result<o::ChatMessage<'b>, Error> {
    let id = b
        .tool_use_id
        .as_ref()
        .ok_or_else(|| bad_request("tool_result block without tool_use_id"))?;
    let text = match &b.content {
        None => Cow::Borrowed(""),
        Some(TextOrList::Text(t)) => borrow(t),
        Some(TextOrList::List(blocks)) => {
            let mut texts = Vec::new();
            for inner in blocks {
                match inner.kind.as_ref() {
                    "text" => texts.push(text_of(inner)?),
                    "image" => images.push(image_part(inner)?),
                    other => return Err(unknown_block(other)),
                }
            }
            join(&texts)
        }
    };
    Ok(o::ChatMessage {
        role: "tool".into(),
        content: Some(TextOrList::Text(text)),
        tool_call_id: Some(borrow(id)),
        ..Default::default()
    })
}

/// An assistant turn: text joined into `content`, `tool_use` blocks as
/// `tool_calls` (ids kept), thinking dropped (OpenAI has no input for it).
fn assistant_turn<'b>(
    content: &'b TextOrList<'_, a::Block<'_>>,
    out: &mut Vec<o::ChatMessage<'b>>,
) -> Result<(), Error> {
    let blocks = match content {
        TextOrList::Text(t) => {
            out.push(o::ChatMessage {
                role: "assistant".into(),
                content: Some(TextOrList::Text(borrow(t))),
                ..Default::default()
            });
            return Ok(());
        }
        TextOrList::List(blocks) => blocks,
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.kind.as_ref() {
            "text" => texts.push(text_of(b)?),
            "tool_use" => calls.push(o::ToolCall {
                index: None,
                id: Some(borrow(
                    b.id.as_ref()
                        .ok_or_else(|| bad_request("tool_use block without id"))?,
                )),
                kind: Some("function".into()),
                function: o::FunctionCall {
                    name: Some(borrow(
                        b.name
                            .as_ref()
                            .ok_or_else(|| bad_request("tool_use block without name"))?,
                    )),
                    arguments: Some(Cow::Borrowed(b.input.map_or("{}", RawValue::get))),
                },
            }),
            "thinking" | "redacted_thinking" => {}
            other => return Err(unknown_block(other)),
        }
    }
    let content = match (texts.is_empty(), calls.is_empty()) {
        (true, false) => None,
        _ => Some(TextOrList::Text(join(&texts))),
    };
    out.push(o::ChatMessage {
        role: "assistant".into(),
        content,
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    });
    Ok(())
}

fn unknown_block(kind: &str) -> Error {
    bad_request(format_args!(
        "content block type {kind:?} is unknown or cannot be translated to the OpenAI protocol"
    ))
}

fn openai_tool<'b>(t: &'b a::Tool<'_>) -> Result<o::Tool<'b>, Error> {
    match t.kind.as_deref() {
        None | Some("custom") => {}
        Some(kind) => {
            return Err(bad_request(format_args!(
                "tools: server tool {kind:?} ({}) cannot be translated to the OpenAI protocol",
                t.name
            )))
        }
    }
    Ok(o::Tool {
        kind: "function".into(),
        function: Some(o::FunctionDef {
            name: borrow(&t.name),
            description: t.description.as_ref().map(borrow),
            parameters: t.input_schema,
        }),
    })
}

fn openai_tool_choice<'b>(
    c: &'b a::ToolChoice<'_>,
) -> Result<TextOrObject<'b, o::NamedToolChoice<'b>>, Error> {
    Ok(match c.kind.as_ref() {
        "auto" => TextOrObject::Text("auto".into()),
        "any" => TextOrObject::Text("required".into()),
        "none" => TextOrObject::Text("none".into()),
        "tool" => TextOrObject::Object(o::NamedToolChoice {
            kind: "function".into(),
            function: Some(o::FunctionName {
                name: borrow(
                    c.name
                        .as_ref()
                        .ok_or_else(|| bad_request("tool_choice of type tool needs a name"))?,
                ),
            }),
        }),
        other => {
            return Err(bad_request(format_args!(
                "tool_choice: unknown type {other:?}"
            )))
        }
    })
}

// ---------------------------------------------------------------------------
// OpenAI client → Anthropic upstream

/// An OpenAI chat completions body → an Anthropic Messages body for `model`.
pub fn openai_to_anthropic(body: &[u8], model: &str) -> Result<ToAnthropic, Error> {
    let req: o::ChatRequest = serde_json::from_slice(body)
        .map_err(|e| bad_request(format_args!("invalid chat completions request: {e}")))?;
    if req.n.is_some_and(|n| n > 1) {
        return Err(bad_request(
            "n greater than 1 cannot be translated to the Anthropic protocol",
        ));
    }

    let mut system: Vec<Cow<'_, str>> = Vec::new();
    let mut messages: Vec<a::MessageParam<'_>> = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role.as_ref() {
            "system" | "developer" => {
                system.extend(texts_of(m.content.as_ref()).map_err(|e| at(e, i))?);
                continue;
            }
            "user" => (
                "user",
                user_blocks(m.content.as_ref()).map_err(|e| at(e, i))?,
            ),
            "assistant" => ("assistant", assistant_blocks(m).map_err(|e| at(e, i))?),
            "tool" => ("user", vec![tool_result(m).map_err(|e| at(e, i))?]),
            other => {
                return Err(bad_request(format_args!(
                "messages[{i}].role: role {other:?} cannot be translated to the Anthropic protocol"
            )))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic alternates roles; tool results of one turn share one
        // user message.
        match messages.last_mut() {
            Some(last) if last.role == role => match &mut last.content {
                TextOrList::List(l) => l.extend(blocks),
                TextOrList::Text(_) => unreachable!("built as lists"),
            },
            _ => messages.push(a::MessageParam {
                role: role.into(),
                content: TextOrList::List(blocks),
            }),
        }
    }
    for m in &mut messages {
        collapse_text(&mut m.content);
    }

    let tools = match &req.tools {
        Some(tools) => Some(
            tools
                .iter()
                .map(anthropic_tool)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let mut tool_choice = match (&req.tool_choice, has_tools) {
        (Some(c), true) => Some(anthropic_tool_choice(c)?),
        _ => None,
    };
    if has_tools && req.parallel_tool_calls == Some(false) {
        let c = tool_choice.get_or_insert_with(|| a::ToolChoice {
            kind: "auto".into(),
            ..Default::default()
        });
        if c.kind != "none" {
            c.disable_parallel_tool_use = Some(true);
        }
    }

    let out = a::Request {
        model: model.into(),
        max_tokens: Some(
            req.max_completion_tokens
                .or(req.max_tokens)
                .unwrap_or(DEFAULT_MAX_TOKENS),
        ),
        system: match system.len() {
            0 => None,
            1 => system.pop().map(TextOrList::Text),
            _ => Some(TextOrList::List(
                system.into_iter().map(a::Block::text).collect(),
            )),
        },
        messages,
        metadata: req.user.as_ref().map(|u| a::Metadata {
            user_id: Some(borrow(u)),
        }),
        stop_sequences: req.stop.as_ref().map(|s| match s {
            TextOrList::Text(t) => vec![borrow(t)],
            TextOrList::List(l) => l.iter().map(borrow).collect(),
        }),
        stream: req.stream.filter(|s| *s),
        temperature: req.temperature,
        top_p: req.top_p,
        tools,
        tool_choice,
    };
    Ok(ToAnthropic {
        body: to_vec(&out),
        client_usage: req.stream_options.is_some_and(|s| s.include_usage),
    })
}

/// A single text block as a plain string.
fn collapse_text<'b>(content: &mut TextOrList<'b, a::Block<'b>>) {
    if let TextOrList::List(l) = content {
        if l.len() == 1 && l[0].kind == "text" {
            if let Some(t) = l.pop().and_then(|b| b.text) {
                *content = TextOrList::Text(t);
            }
        }
    }
}

/// The texts of a system/developer message.
fn texts_of<'b>(
    content: Option<&'b TextOrList<'_, o::Part<'_>>>,
) -> Result<Vec<Cow<'b, str>>, Error> {
    match content {
        None => Ok(Vec::new()),
        Some(TextOrList::Text(t)) => Ok(vec![borrow(t)]),
        Some(TextOrList::List(parts)) => parts
            .iter()
            .map(|p| match (p.kind.as_ref(), &p.text) {
                ("text", Some(t)) => Ok(borrow(t)),
                (kind, _) => Err(bad_request(format_args!(
                    "only text parts are allowed here, not {kind:?}"
                ))),
            })
            .collect(),
    }
}

fn user_blocks<'b>(
    content: Option<&'b TextOrList<'_, o::Part<'_>>>,
) -> Result<Vec<a::Block<'b>>, Error> {
    match content {
        None => Ok(Vec::new()),
        Some(TextOrList::Text(t)) => Ok(vec![a::Block::text(borrow(t))]),
        Some(TextOrList::List(parts)) => parts.iter().map(user_block).collect(),
    }
}

fn user_block<'b>(p: &'b o::Part<'_>) -> Result<a::Block<'b>, Error> {
    match (p.kind.as_ref(), &p.text, &p.image_url) {
        ("text", Some(t), _) => Ok(a::Block::text(borrow(t))),
        ("image_url", _, Some(img)) => Ok(a::Block {
            kind: "image".into(),
            source: Some(image_source(&img.url)?),
            ..Default::default()
        }),
        (kind, ..) => Err(bad_request(format_args!(
            "content part type {kind:?} is unknown or cannot be translated to the Anthropic protocol"
        ))),
    }
}

/// A data URL as a base64 source, any other URL as a url source.
fn image_source<'b>(url: &'b str) -> Result<a::ImageSource<'b>, Error> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| bad_request("image data URL must be base64 (data:TYPE;base64,DATA)"))?;
        return Ok(a::ImageSource {
            kind: "base64".into(),
            media_type: Some(media.into()),
            data: Some(data.into()),
            url: None,
        });
    }
    Ok(a::ImageSource {
        kind: "url".into(),
        url: Some(url.into()),
        ..Default::default()
    })
}

fn assistant_blocks<'b>(m: &'b o::ChatMessage<'_>) -> Result<Vec<a::Block<'b>>, Error> {
    let mut blocks: Vec<a::Block<'b>> = texts_of(m.content.as_ref())?
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(a::Block::text)
        .collect();
    for (k, call) in m.tool_calls.iter().flatten().enumerate() {
        let id = call
            .id
            .as_ref()
            .ok_or_else(|| bad_request(format_args!("tool_calls[{k}] has no id")))?;
        let name = call
            .function
            .name
            .as_ref()
            .ok_or_else(|| bad_request(format_args!("tool_calls[{k}] has no function name")))?;
        blocks.push(a::Block {
            kind: "tool_use".into(),
            id: Some(borrow(id)),
            name: Some(borrow(name)),
            input: Some(arguments(call.function.arguments.as_deref(), k)?),
            ..Default::default()
        });
    }
    Ok(blocks)
}

/// Tool call arguments (JSON text in a string) as the raw `input` object.
fn arguments(args: Option<&str>, k: usize) -> Result<&RawValue, Error> {
    let args = args
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("{}");
    match serde_json::from_str::<&RawValue>(args) {
        Ok(raw) if raw.get().starts_with('{') => Ok(raw),
        _ => Err(bad_request(format_args!(
            "tool_calls[{k}].function.arguments must be a JSON object"
        ))),
    }
}

fn tool_result<'b>(m: &'b o::ChatMessage<'_>) -> Result<a::Block<'b>, Error> {
    let id = m
        .tool_call_id
        .as_ref()
        .ok_or_else(|| bad_request("tool message without tool_call_id"))?;
    let content = match m.content.as_ref() {
        None => None,
        Some(TextOrList::Text(t)) => Some(TextOrList::Text(borrow(t))),
        Some(list) => Some(TextOrList::List(
            texts_of(Some(list))?
                .into_iter()
                .map(a::Block::text)
                .collect(),
        )),
    };
    Ok(a::Block {
        kind: "tool_result".into(),
        tool_use_id: Some(borrow(id)),
        content,
        ..Default::default()
    })
}

/// An empty object schema for a function declared without parameters.
const EMPTY_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;

fn anthropic_tool<'b>(t: &'b o::Tool<'_>) -> Result<a::Tool<'b>, Error> {
    let f = match (t.kind.as_ref(), &t.function) {
        ("function", Some(f)) => f,
        (kind, _) => {
            return Err(bad_request(format_args!(
                "tools: tool type {kind:?} cannot be translated to the Anthropic protocol"
            )))
        }
    };
    Ok(a::Tool {
        kind: None,
        name: borrow(&f.name),
        description: f.description.as_ref().map(borrow),
        input_schema: Some(match f.parameters {
            Some(p) => p,
            None => serde_json::from_str(EMPTY_SCHEMA).expect("valid JSON"),
        }),
    })
}

fn anthropic_tool_choice<'b>(
    c: &'b TextOrObject<'_, o::NamedToolChoice<'_>>,
) -> Result<a::ToolChoice<'b>, Error> {
    let (kind, name) = match c {
        TextOrObject::Text(t) => match t.as_ref() {
            "auto" => ("auto", None),
            "required" => ("any", None),
            "none" => ("none", None),
            other => {
                return Err(bad_request(format_args!(
                    "tool_choice: unknown value {other:?}"
                )))
            }
        },
        TextOrObject::Object(n) => match (n.kind.as_ref(), &n.function) {
            ("function", Some(f)) => ("tool", Some(borrow(&f.name))),
            _ => {
                return Err(bad_request(
                    "tool_choice must name a function: {\"type\":\"function\",\"function\":{\"name\":...}}",
                ))
            }
        },
    };
    Ok(a::ToolChoice {
        kind: kind.into(),
        name,
        disable_parallel_tool_use: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a2o(body: &str) -> String {
        String::from_utf8(
            anthropic_to_openai(body.as_bytes(), "gpt-x", OpenaiTarget::default()).unwrap(),
        )
        .unwrap()
    }

    fn o2a(body: &str) -> String {
        String::from_utf8(
            openai_to_anthropic(body.as_bytes(), "claude-x")
                .unwrap()
                .body,
        )
        .unwrap()
    }

    #[test]
    fn anthropic_plain_request() {
        assert_eq!(
            a2o(
                r#"{"model":"claude","max_tokens":64,"system":"be brief","temperature":0.25,"top_p":0.9,
                "stop_sequences":["END"],"metadata":{"user_id":"u-1"},
                "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},
                            {"role":"user","content":"bye"}]}"#
            ),
            r#"{"model":"gpt-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"bye"}],"max_tokens":64,"temperature":0.25,"top_p":0.9,"stop":["END"],"user":"u-1"}"#
        );
    }

    #[test]
    fn anthropic_system_blocks_images_and_streaming() {
        let body = r#"{"model":"c","max_tokens":5,"stream":true,
            "system":[{"type":"text","text":"one"},{"type":"text","text":"two","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[
                {"type":"text","text":"look"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0K"}},
                {"type":"image","source":{"type":"url","url":"https://x.test/a.jpg"}}]}]}"#;
        let target = OpenaiTarget {
            include_usage: true,
            max_completion_tokens: true,
        };
        let out = anthropic_to_openai(body.as_bytes(), "gpt-x", target).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"gpt-x","messages":[{"role":"system","content":"one\ntwo"},{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0K"}},{"type":"image_url","image_url":{"url":"https://x.test/a.jpg"}}]}],"max_completion_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn anthropic_tools_calls_and_results_keep_ids() {
        assert_eq!(
            a2o(r#"{"model":"c","max_tokens":9,
                "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
                "tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true},
                "messages":[
                  {"role":"user","content":"weather?"},
                  {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},
                     {"type":"text","text":"Checking."},
                     {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city": "Paris"}}]},
                  {"role":"user","content":[
                     {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18C"}]},
                     {"type":"text","text":"and tomorrow?"}]}]}"#),
            r#"{"model":"gpt-x","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","content":"18C","tool_call_id":"toolu_1"},{"role":"user","content":"and tomorrow?"}],"max_tokens":9,"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}"#
        );
    }

    #[test]
    fn anthropic_tool_choice_modes_and_tool_only_turns() {
        for (choice, want) in [
            ("auto", r#""auto""#),
            ("any", r#""required""#),
            ("none", r#""none""#),
        ] {
            let out = a2o(&format!(
                r#"{{"model":"c","max_tokens":1,"tools":[{{"name":"f","input_schema":{{"type":"object"}}}}],
                "tool_choice":{{"type":"{choice}"}},"messages":[
                {{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"f","input":{{}}}}]}},
                {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","content":"ok","is_error":true}}]}}]}}"#
            ));
            assert_eq!(
                out,
                format!(
                    r#"{{"model":"gpt-x","messages":[{{"role":"assistant","tool_calls":[{{"id":"t1","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]}},{{"role":"tool","content":"ok","tool_call_id":"t1"}}],"max_tokens":1,"tools":[{{"type":"function","function":{{"name":"f","parameters":{{"type":"object"}}}}}}],"tool_choice":{want}}}"#
                )
            );
        }
    }

    #[test]
    fn anthropic_bad_bodies_are_400s() {
        let bad = |body: &str| {
            let e = anthropic_to_openai(body.as_bytes(), "m", OpenaiTarget::default()).unwrap_err();
            assert_eq!(e.status(), 400);
            e.message
        };
        assert!(bad(r#"{"model":"c","messages":"hi"}"#).contains("invalid Messages request"));
        assert!(bad("not json").contains("invalid Messages request"));
        let m =
            bad(r#"{"model":"c","messages":[{"role":"user","content":[{"type":"hologram"}]}]}"#);
        assert!(
            m.starts_with("messages[0]: content block type \"hologram\""),
            "{m}"
        );
        let m = bad(r#"{"model":"c","messages":[{"role":"robot","content":"x"}]}"#);
        assert!(m.contains("unknown role"), "{m}");
        let m = bad(
            r#"{"model":"c","messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
        );
        assert!(m.contains("server tool"), "{m}");
        let m = bad(
            r#"{"model":"c","messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#,
        );
        assert!(m.contains("image source"), "{m}");
    }

    #[test]
    fn openai_plain_request() {
        assert_eq!(
            o2a(
                r#"{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
                "max_tokens":20,"temperature":0.5,"top_p":1,"stop":"END","user":"u-9","stream":true,
                "stream_options":{"include_usage":false},"presence_penalty":0.1}"#
            ),
            r#"{"model":"claude-x","max_tokens":20,"system":"be brief","messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"u-9"},"stop_sequences":["END"],"stream":true,"temperature":0.5,"top_p":1}"#
        );
        let t = openai_to_anthropic(
            br#"{"model":"g","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
            "c",
        )
        .unwrap();
        assert!(t.client_usage);
        assert_eq!(
            String::from_utf8(t.body).unwrap(),
            r#"{"model":"c","max_tokens":4096,"messages":[],"stream":true}"#
        );
    }

    #[test]
    fn openai_parts_images_and_system_list() {
        assert_eq!(
            o2a(
                r#"{"model":"g","max_completion_tokens":7,"stop":["a","b"],"messages":[
                {"role":"developer","content":[{"type":"text","text":"rule one"}]},
                {"role":"system","content":"rule two"},
                {"role":"user","content":[{"type":"text","text":"see"},
                   {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4A==","detail":"low"}},
                   {"type":"image_url","image_url":{"url":"https://x.test/b.png"}}]}]}"#
            ),
            r#"{"model":"claude-x","max_tokens":7,"system":[{"type":"text","text":"rule one"},{"type":"text","text":"rule two"}],"messages":[{"role":"user","content":[{"type":"text","text":"see"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4A=="}},{"type":"image","source":{"type":"url","url":"https://x.test/b.png"}}]}],"stop_sequences":["a","b"]}"#
        );
    }

    #[test]
    fn openai_tools_calls_and_results_keep_ids() {
        assert_eq!(
            o2a(r#"{"model":"g","messages":[
                {"role":"user","content":"weather in Paris and Rome?"},
                {"role":"assistant","content":null,"tool_calls":[
                   {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                   {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":""}}]},
                {"role":"tool","tool_call_id":"call_1","content":"18C"},
                {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"21C"}]},
                {"role":"user","content":"thanks"}],
                "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
                         {"type":"function","function":{"name":"now"}}],
                "tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}"#),
            r#"{"model":"claude-x","max_tokens":4096,"messages":[{"role":"user","content":"weather in Paris and Rome?"},{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"call_2","name":"get_weather","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"18C"},{"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"21C"}]},{"type":"text","text":"thanks"}]}],"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},{"name":"now","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}}"#
        );
    }

    #[test]
    fn openai_tool_choice_modes() {
        for (choice, want) in [
            (r#""auto""#, r#"{"type":"auto"}"#),
            (r#""required""#, r#"{"type":"any"}"#),
            (r#""none""#, r#"{"type":"none"}"#),
        ] {
            let out = o2a(&format!(
                r#"{{"model":"g","messages":[],"tools":[{{"type":"function","function":{{"name":"f"}}}}],"tool_choice":{choice}}}"#
            ));
            assert!(
                out.ends_with(&format!(r#""tool_choice":{want}}}"#)),
                "{out}"
            );
        }
        // Without tools a tool_choice means nothing to Anthropic.
        assert_eq!(
            o2a(r#"{"model":"g","messages":[],"tool_choice":"auto"}"#),
            r#"{"model":"claude-x","max_tokens":4096,"messages":[]}"#
        );
    }

    #[test]
    fn openai_bad_bodies_are_400s() {
        let bad = |body: &str| {
            let e = openai_to_anthropic(body.as_bytes(), "m").unwrap_err();
            assert_eq!(e.status(), 400);
            e.message
        };
        assert!(bad(r#"{"model":"g"}"#).contains("invalid chat completions request"));
        assert!(bad(r#"{"model":"g","messages":[],"n":2}"#).contains("n greater than 1"));
        let m = bad(
            r#"{"model":"g","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
        );
        assert!(
            m.starts_with("messages[0]: content part type \"input_audio\""),
            "{m}"
        );
        let m = bad(
            r#"{"model":"g","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#,
        );
        assert!(m.contains("must be a JSON object"), "{m}");
        let m = bad(r#"{"model":"g","messages":[{"role":"tool","content":"x"}]}"#);
        assert!(m.contains("tool_call_id"), "{m}");
        let m = bad(r#"{"model":"g","messages":[],"tools":[{"type":"code_interpreter"}]}"#);
        assert!(m.contains("code_interpreter"), "{m}");
    }
}
