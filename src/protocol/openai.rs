//! OpenAI chat completions wire types: the parts the gateway reads or
//! writes when it translates. Fields borrow from the body they were read
//! from; parts passed through unchanged (schemas, numbers) stay raw JSON.

use super::json::{TextOrList, TextOrObject};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

type Str<'a> = Cow<'a, str>;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow, default)]
    pub model: Str<'a>,
    #[serde(borrow)]
    pub messages: Vec<ChatMessage<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<TextOrList<'a, Str<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<TextOrObject<'a, NamedToolChoice<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Str<'a>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// A message of any role (`system`, `developer`, `user`, `assistant`,
/// `tool`), and the assistant message of an answer.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ChatMessage<'a> {
    #[serde(borrow, default)]
    pub role: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<TextOrList<'a, Part<'a>>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<Str<'a>>,
}

/// A content part: `text`, `image_url`, ...
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Part<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl<'a>>,
}

impl<'a> Part<'a> {
    pub fn text(text: impl Into<Str<'a>>) -> Self {
        Part {
            kind: "text".into(),
            text: Some(text.into()),
            image_url: None,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ImageUrl<'a> {
    #[serde(borrow)]
    pub url: Str<'a>,
}

/// A tool call; in stream deltas `index` says which call a fragment
/// belongs to and only the first fragment has `id` and `name`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ToolCall<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Str<'a>>,
    #[serde(
        borrow,
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub function: FunctionCall<'a>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Str<'a>>,
    /// JSON text of the arguments, as a string.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Str<'a>>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Tool<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef<'a>>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct FunctionDef<'a> {
    #[serde(borrow)]
    pub name: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawValue>,
}

/// `{"type":"function","function":{"name"}}`
#[derive(Debug, Deserialize, Serialize)]
pub struct NamedToolChoice<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionName<'a>>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct FunctionName<'a> {
    #[serde(borrow)]
    pub name: Str<'a>,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Deserialize, Serialize)]
pub struct ChatCompletion<'a> {
    #[serde(borrow, default)]
    pub id: Str<'a>,
    #[serde(default = "completion_object")]
    pub object: Str<'static>,
    #[serde(default)]
    pub created: u64,
    #[serde(borrow, default)]
    pub model: Str<'a>,
    #[serde(borrow, default)]
    pub choices: Vec<Choice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn completion_object() -> Str<'static> {
    "chat.completion".into()
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Choice<'a> {
    #[serde(default)]
    pub index: u64,
    #[serde(borrow, default)]
    pub message: ChatMessage<'a>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Str<'a>>,
    /// vLLM: the stop string that ended the answer (or a token id).
    #[serde(borrow, default, skip_serializing)]
    pub stop_reason: Option<&'a RawValue>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

/// One `chat.completion.chunk`, read from an upstream or written to a
/// client.
#[derive(Debug, Deserialize, Serialize)]
pub struct Chunk<'a> {
    #[serde(borrow, default)]
    pub id: Str<'a>,
    #[serde(default = "chunk_object")]
    pub object: Str<'static>,
    #[serde(default)]
    pub created: u64,
    #[serde(borrow, default)]
    pub model: Str<'a>,
    #[serde(borrow, default)]
    pub choices: Vec<ChunkChoice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Some servers end a failed stream with an error object instead.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail<'a>>,
}

fn chunk_object() -> Str<'static> {
    "chat.completion.chunk".into()
}

#[derive(Debug, Deserialize, Serialize)]
pub struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: u64,
    #[serde(borrow, default)]
    pub delta: ChunkDelta<'a>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing)]
    pub stop_reason: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ChunkDelta<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Str<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

/// `{"error":{"message","type","param","code"}}`
#[derive(Debug, Deserialize, Serialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ErrorDetail<'a> {
    #[serde(borrow, default)]
    pub message: Str<'a>,
    #[serde(borrow, rename = "type", default)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub param: Option<&'a RawValue>,
    /// A string on OpenAI, sometimes a number elsewhere.
    #[serde(borrow, default)]
    pub code: Option<&'a RawValue>,
}

/// An error written to a client: `{"error":{...}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBodyOut<'a> {
    pub error: ErrorOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorOut<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// `Some(None)` writes `"param":null` (whole answers); stream error
    /// events leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<Option<&'a str>>,
    pub code: Option<&'a str>,
}

/// Appends `data: JSON\n\n`.
pub fn write_data<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    // Writing to a Vec cannot fail for these types.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Whether an SSE event is the usage-only chunk that
/// `stream_options.include_usage` adds at the end (`"choices": []` with
/// `usage`), for hiding it from a client that did not ask. Other chunks are
/// told apart by a byte scan; only a candidate is parsed.
pub fn is_usage_only_chunk(event: &[u8]) -> bool {
    if !has_empty_choices(event) {
        return false;
    }
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        choices: Option<Vec<&'a RawValue>>,
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    let mut data = crate::http::sse::data_lines(event);
    let (Some(d), None) = (data.next(), data.next()) else {
        return false;
    };
    matches!(
        serde_json::from_slice::<Probe>(d),
        Ok(Probe { choices: Some(c), usage: Some(_) }) if c.is_empty()
    )
}

/// `"choices"` followed by `:` and `[]` (whitespace allowed). Inside a JSON
/// string the quotes would be escaped, so a match is a key.
fn has_empty_choices(event: &[u8]) -> bool {
    const KEY: &[u8] = b"\"choices\"";
    // Built once: making a searcher costs more than scanning one event.
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let skip_ws = |mut i: usize| {
        while i < event.len() && event[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    FINDER.find_iter(event).any(|at| {
        let i = skip_ws(at + KEY.len());
        if event.get(i) != Some(&b':') {
            return false;
        }
        let i = skip_ws(i + 1);
        if event.get(i) != Some(&b'[') {
            return false;
        }
        event.get(skip_ws(i + 1)) == Some(&b']')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_only_chunks_are_found() {
        let usage = br#"data: {"id":"c","object":"chat.completion.chunk","choices": [ ],"usage":{"prompt_tokens":1}}

"#;
        assert!(is_usage_only_chunk(usage));
        assert!(!is_usage_only_chunk(
            br#"data: {"id":"c","choices":[{"index":0,"delta":{"content":"\"choices\":[]"}}],"usage":null}

"#
        ));
        assert!(!is_usage_only_chunk(
            b"data: {\"choices\":[],\"usage\":null}\n\n"
        ));
        assert!(!is_usage_only_chunk(b"data: [DONE]\n\n"));
        assert!(!is_usage_only_chunk(
            br#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}

"#
        ));
    }
}
