//! Anthropic Messages API wire types: the parts the gateway reads or
//! writes when it translates. Fields borrow from the body they were read
//! from; parts passed through unchanged (tool input, schemas, numbers) stay
//! raw JSON text. Blocks are one flat struct keyed by `type`, so a tool's
//! raw `input` survives deserialization (serde's tagged enums buffer).

use super::json::TextOrList;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

type Str<'a> = Cow<'a, str>;

/// `POST /v1/messages` body.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Request<'a> {
    #[serde(borrow, default)]
    pub model: Str<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub system: Option<TextOrList<'a, Block<'a>>>,
    #[serde(borrow)]
    pub messages: Vec<MessageParam<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<Str<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct MessageParam<'a> {
    #[serde(borrow)]
    pub role: Str<'a>,
    #[serde(borrow)]
    pub content: TextOrList<'a, Block<'a>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Metadata<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Str<'a>>,
}

/// A content block: `text`, `image`, `tool_use`, `tool_result`, `thinking`...
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Block<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageSource<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<TextOrList<'a, Block<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

impl<'a> Block<'a> {
    pub fn text(text: impl Into<Str<'a>>) -> Self {
        Block {
            kind: "text".into(),
            text: Some(text.into()),
            ..Block::default()
        }
    }
}

/// An image: `{"type":"base64","media_type","data"}` or `{"type":"url","url"}`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ImageSource<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Str<'a>>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Tool<'a> {
    /// Absent or `custom` for client tools; server tools name a version.
    #[serde(
        borrow,
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<&'a RawValue>,
}

/// `{"type": "auto" | "any" | "tool" | "none", "name"?, "disable_parallel_tool_use"?}`
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ToolChoice<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Str<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Deserialize, Serialize)]
pub struct Message<'a> {
    #[serde(borrow, default)]
    pub id: Str<'a>,
    #[serde(rename = "type", default = "message_type")]
    pub kind: Str<'static>,
    #[serde(default = "assistant")]
    pub role: Str<'static>,
    #[serde(borrow, default)]
    pub model: Str<'a>,
    #[serde(borrow, default)]
    pub content: Vec<Block<'a>>,
    #[serde(borrow, default)]
    pub stop_reason: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub stop_sequence: Option<Str<'a>>,
    #[serde(default)]
    pub usage: Usage,
}

fn message_type() -> Str<'static> {
    "message".into()
}

fn assistant() -> Str<'static> {
    "assistant".into()
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

impl Usage {
    /// Every prompt token, cached or not (OpenAI's `prompt_tokens`).
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens.unwrap_or(0)
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }
}

/// `{"type":"error","error":{"type","message"}}`
#[derive(Debug, Deserialize, Serialize)]
pub struct ErrorBody<'a> {
    #[serde(rename = "type", default = "error_type")]
    pub kind: Str<'static>,
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
}

fn error_type() -> Str<'static> {
    "error".into()
}

#[derive(Debug, Deserialize, Serialize)]
pub struct ErrorDetail<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Str<'a>,
    #[serde(borrow, default)]
    pub message: Str<'a>,
}

/// One upstream stream event's data, whatever its type (flat: every field
/// any event type has).
#[derive(Debug, Deserialize)]
pub struct EventIn<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Str<'a>,
    #[serde(borrow, default)]
    pub message: Option<Message<'a>>,
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(borrow, default)]
    pub content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    pub delta: Option<DeltaIn<'a>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(borrow, default)]
    pub error: Option<ErrorDetail<'a>>,
}

/// A `content_block_delta` or `message_delta` delta.
#[derive(Debug, Default, Deserialize)]
pub struct DeltaIn<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub text: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub partial_json: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub stop_reason: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub stop_sequence: Option<Str<'a>>,
}

/// One stream event written to a client; its `type` is also the SSE event
/// name.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDelta<'a>,
        usage: Usage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorDetail<'a>,
    },
}

impl Event<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Ping => "ping",
            Event::Error { .. } => "error",
        }
    }

    /// Appends the whole SSE event: `event: NAME\ndata: JSON\n\n`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.name().as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Writing to a Vec cannot fail; the types hold no maps with
        // non-string keys.
        let _ = serde_json::to_writer(&mut *out, self);
        out.extend_from_slice(b"\n\n");
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Debug, Serialize)]
pub struct MessageDelta<'a> {
    pub stop_reason: Option<&'a str>,
    pub stop_sequence: Option<&'a str>,
}
