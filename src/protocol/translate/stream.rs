//! Streams, event by event: each whole upstream SSE event in, zero or more
//! whole client events out. The state carries what the other protocol
//! says at a different moment (Anthropic's usage comes first and last,
//! OpenAI's in a final chunk; Anthropic opens and closes content blocks,
//! OpenAI just sends deltas).

use super::response::{anthropic_usage, openai_usage, stop_string, tool_call_id};
use super::{finish_reason, stop_reason, unix_now, Direction};
use crate::http::sse::{data_lines, event_name, lines};
use crate::protocol::anthropic as a;
use crate::protocol::openai as o;
use std::borrow::Cow;

/// Translates one upstream stream into the client's protocol.
pub struct StreamTranslator {
    state: State,
}

enum State {
    ChunksToEvents(ChunksToEvents),
    EventsToChunks(EventsToChunks),
}

/// Token counts seen in a stream so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

const ENDED_EARLY: &str = "the service's stream ended before the answer was complete";
const MALFORMED: &str = "the service sent a stream event that could not be translated";

impl StreamTranslator {
    /// `client_usage`: an OpenAI client asked for the usage chunk.
    pub fn new(direction: Direction, client_usage: bool) -> Self {
        let state = match direction {
            Direction::AnthropicToOpenai => State::ChunksToEvents(ChunksToEvents::default()),
            Direction::OpenaiToAnthropic => State::EventsToChunks(EventsToChunks {
                client_usage,
                created: unix_now(),
                ..Default::default()
            }),
        };
        StreamTranslator { state }
    }

    /// Feeds one whole upstream event; appends whole client events to `out`.
    pub fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        match &mut self.state {
            State::ChunksToEvents(s) => s.event(event, out),
            State::EventsToChunks(s) => s.event(event, out),
        }
    }

    /// The upstream stream ended cleanly: completes the client's stream, or
    /// ends it with an error event when the answer was not complete.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match &mut self.state {
            State::ChunksToEvents(s) => s.finish(out),
            State::EventsToChunks(s) => s.finish(out),
        }
    }

    /// The client's stream is complete (its last event was written).
    pub fn is_done(&self) -> bool {
        match &self.state {
            State::ChunksToEvents(s) => s.done,
            State::EventsToChunks(s) => s.done,
        }
    }

    pub fn usage(&self) -> Usage {
        match &self.state {
            State::ChunksToEvents(s) => s.usage.map_or_else(Usage::default, |u| Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
            }),
            State::EventsToChunks(s) => Usage {
                input_tokens: s.usage.prompt_tokens(),
                output_tokens: s.usage.output_tokens.unwrap_or(0),
            },
        }
    }
}

/// The data of an event: its `data` lines joined by LF (borrowed when there
/// is one). `None` for comments and blank events.
fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut it = data_lines(event);
    let first = it.next()?;
    match it.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for l in std::iter::once(second).chain(it) {
                joined.push(b'\n');
                joined.extend_from_slice(l);
            }
            Some(Cow::Owned(joined))
        }
    }
}

fn is_comment(event: &[u8]) -> bool {
    lines(event).any(|l| l.first() == Some(&b':'))
}

// ---------------------------------------------------------------------------
// OpenAI chunks → Anthropic events (an Anthropic client)

#[derive(Default)]
struct ChunksToEvents {
    started: bool,
    done: bool,
    /// The content block open now.
    open: Option<usize>,
    next_block: usize,
    /// OpenAI tool call index → Anthropic block index.
    tools: Vec<(u64, usize)>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<String>,
    usage: Option<o::Usage>,
}

impl ChunksToEvents {
    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = event_data(event) else {
            // A keep-alive comment stays a keep-alive.
            if is_comment(event) {
                a::Event::Ping.write(out);
            }
            return;
        };
        if data.as_ref() == b"[DONE]" {
            return self.complete(out);
        }
        let chunk: o::Chunk = match serde_json::from_slice(&data) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("untranslatable chunk: {e}");
                return self.fail("api_error", MALFORMED, out);
            }
        };
        if let Some(err) = &chunk.error {
            let kind = err.kind.as_deref().unwrap_or("api_error");
            return self.fail(kind, &err.message, out);
        }
        self.start(&chunk.id, &chunk.model, out);
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                let index = self.text_block(out);
                a::Event::ContentBlockDelta {
                    index,
                    delta: a::Delta::TextDelta { text },
                }
                .write(out);
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                let index = self.tool_block(call, out);
                if let Some(args) = call.function.arguments.as_deref().filter(|a| !a.is_empty()) {
                    a::Event::ContentBlockDelta {
                        index,
                        delta: a::Delta::InputJsonDelta { partial_json: args },
                    }
                    .write(out);
                }
            }
            if let Some(f) = choice.finish_reason.as_deref() {
                let seq = stop_string(choice.stop_reason);
                self.stop_reason = Some(stop_reason(f, seq.is_some()));
                self.stop_sequence = seq.map(Cow::into_owned);
            }
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        a::Event::MessageStart {
            message: a::Message {
                id: id.into(),
                kind: "message".into(),
                role: "assistant".into(),
                model: model.into(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                // OpenAI tells the prompt's size only at the end; the
                // final message_delta carries it.
                usage: a::Usage {
                    input_tokens: Some(0),
                    output_tokens: Some(0),
                    ..Default::default()
                },
            },
        }
        .write(out);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(index) = self.open.take() {
            a::Event::ContentBlockStop { index }.write(out);
        }
    }

    fn open_block(&mut self, block: a::Block<'_>, out: &mut Vec<u8>) -> usize {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(index);
        a::Event::ContentBlockStart {
            index,
            content_block: block,
        }
        .write(out);
        index
    }

    /// The open text block, opened if need be.
    fn text_block(&mut self, out: &mut Vec<u8>) -> usize {
        match self.open {
            Some(i) if !self.tools.iter().any(|&(_, b)| b == i) => i,
            _ => self.open_block(a::Block::text(""), out),
        }
    }

    /// The block of this tool call, opened at its first fragment.
    fn tool_block(&mut self, call: &o::ToolCall<'_>, out: &mut Vec<u8>) -> usize {
        let k = call.index.unwrap_or(0);
        if let Some(&(_, b)) = self.tools.iter().find(|&&(t, _)| t == k) {
            // Fragments of a call after another call began still belong
            // to its block (clients accumulate by index).
            return b;
        }
        let index = self.open_block(
            a::Block {
                kind: "tool_use".into(),
                id: Some(tool_call_id(call.id.as_ref(), k as usize)),
                name: Some(call.function.name.as_deref().unwrap_or("").into()),
                input: Some(empty_object()),
                ..Default::default()
            },
            out,
        );
        self.tools.push((k, index));
        index
    }

    /// The answer is complete: close it as Anthropic does.
    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start("", "", out);
        self.close_block(out);
        let usage = match self.usage {
            Some(u) => anthropic_usage(u),
            None => a::Usage {
                output_tokens: Some(0),
                ..Default::default()
            },
        };
        a::Event::MessageDelta {
            delta: a::MessageDelta {
                stop_reason: Some(self.stop_reason.unwrap_or("end_turn")),
                stop_sequence: self.stop_sequence.as_deref(),
            },
            usage,
        }
        .write(out);
        a::Event::MessageStop.write(out);
        self.done = true;
    }

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        a::Event::Error {
            error: a::ErrorDetail {
                kind: kind.into(),
                message: message.into(),
            },
        }
        .write(out);
        self.done = true;
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        // Some servers end with the finish chunk and no `[DONE]`.
        if self.stop_reason.is_some() {
            self.complete(out);
        } else {
            self.fail("api_error", ENDED_EARLY, out);
        }
    }
}

fn empty_object() -> &'static serde_json::value::RawValue {
    serde_json::from_str("{}").expect("valid JSON")
}

// ---------------------------------------------------------------------------
// Anthropic events → OpenAI chunks (an OpenAI client)

#[derive(Default)]
struct EventsToChunks {
    client_usage: bool,
    done: bool,
    id: String,
    model: String,
    created: u64,
    /// Anthropic block index → OpenAI tool call index.
    tools: Vec<(u64, u64)>,
    finish_reason: Option<&'static str>,
    usage: a::Usage,
}

impl EventsToChunks {
    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = event_data(event) else {
            if is_comment(event) || event_name(event) == Some(b"ping") {
                out.extend_from_slice(b": ping\n\n");
            }
            return;
        };
        let ev: a::EventIn = match serde_json::from_slice(&data) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("untranslatable event: {e}");
                return self.fail("api_error", MALFORMED, None, out);
            }
        };
        match ev.kind.as_ref() {
            "message_start" => {
                if let Some(m) = &ev.message {
                    self.id = m.id.to_string();
                    self.model = m.model.to_string();
                    self.merge_usage(&m.usage);
                }
                self.chunk(
                    o::ChunkDelta {
                        role: Some("assistant".into()),
                        content: Some("".into()),
                        tool_calls: None,
                    },
                    None,
                    out,
                );
            }
            "content_block_start" => {
                let Some(b) = &ev.content_block else { return };
                match b.kind.as_ref() {
                    "text" => {
                        if let Some(t) = b.text.as_deref().filter(|t| !t.is_empty()) {
                            self.text(t, out);
                        }
                    }
                    "tool_use" => {
                        let k = self.tools.len() as u64;
                        self.tools.push((ev.index.unwrap_or(0), k));
                        // A complete input in the start event (no deltas
                        // to follow) is sent as the arguments.
                        let args = b.input.map(|r| r.get()).filter(|r| !is_empty_object(r));
                        self.tool_delta(
                            o::ToolCall {
                                index: Some(k),
                                id: b.id.as_deref().map(Cow::Borrowed),
                                kind: Some("function".into()),
                                function: o::FunctionCall {
                                    name: b.name.as_deref().map(Cow::Borrowed),
                                    arguments: Some(args.unwrap_or("").into()),
                                },
                            },
                            out,
                        );
                    }
                    // thinking and server tool blocks: no OpenAI chunk.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(d) = &ev.delta else { return };
                match d.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                            self.text(t, out);
                        }
                    }
                    Some("input_json_delta") => {
                        let block = ev.index.unwrap_or(0);
                        let Some(&(_, k)) = self.tools.iter().find(|&&(b, _)| b == block) else {
                            return;
                        };
                        if let Some(p) = d.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.tool_delta(
                                o::ToolCall {
                                    index: Some(k),
                                    function: o::FunctionCall {
                                        name: None,
                                        arguments: Some(p.into()),
                                    },
                                    ..Default::default()
                                },
                                out,
                            );
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.merge_usage(u);
                }
                let reason = ev
                    .delta
                    .as_ref()
                    .and_then(|d| d.stop_reason.as_deref())
                    .map(finish_reason)
                    .unwrap_or("stop");
                self.finish_reason = Some(reason);
                self.chunk(o::ChunkDelta::default(), Some(reason), out);
            }
            "message_stop" => self.complete(out),
            // Keeps idle connections alive; OpenAI clients skip comments.
            "ping" => out.extend_from_slice(b": ping\n\n"),
            "error" => {
                let (kind, message) = match &ev.error {
                    Some(e) => (e.kind.as_ref(), e.message.as_ref()),
                    None => ("api_error", "the service reported an error"),
                };
                let code = (!kind.is_empty()).then_some(kind);
                self.fail("api_error", message, code, out);
            }
            // content_block_stop, unknown types: nothing to say.
            _ => {}
        }
    }

    /// Usage counts are totals: later ones replace earlier ones.
    fn merge_usage(&mut self, u: &a::Usage) {
        let mine = &mut self.usage;
        for (to, from) in [
            (&mut mine.input_tokens, u.input_tokens),
            (
                &mut mine.cache_creation_input_tokens,
                u.cache_creation_input_tokens,
            ),
            (&mut mine.cache_read_input_tokens, u.cache_read_input_tokens),
            (&mut mine.output_tokens, u.output_tokens),
        ] {
            if from.is_some() {
                *to = from;
            }
        }
    }

    fn chunk(&self, delta: o::ChunkDelta<'_>, finish: Option<&'static str>, out: &mut Vec<u8>) {
        let c = o::Chunk {
            id: Cow::Borrowed(&self.id),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: Cow::Borrowed(&self.model),
            choices: vec![o::ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(Cow::Borrowed),
                stop_reason: None,
            }],
            usage: None,
            error: None,
        };
        o::write_data(&c, out);
    }

    fn text(&self, text: &str, out: &mut Vec<u8>) {
        self.chunk(
            o::ChunkDelta {
                content: Some(text.into()),
                ..Default::default()
            },
            None,
            out,
        );
    }

    fn tool_delta(&self, call: o::ToolCall<'_>, out: &mut Vec<u8>) {
        self.chunk(
            o::ChunkDelta {
                tool_calls: Some(vec![call]),
                ..Default::default()
            },
            None,
            out,
        );
    }

    /// The answer is complete: the usage chunk if the client asked, `[DONE]`.
    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.client_usage {
            let c = o::Chunk {
                id: Cow::Borrowed(&self.id),
                object: "chat.completion.chunk".into(),
                created: self.created,
                model: Cow::Borrowed(&self.model),
                choices: Vec::new(),
                usage: Some(openai_usage(&self.usage)),
                error: None,
            };
            o::write_data(&c, out);
        }
        out.extend_from_slice(o::DONE);
        self.done = true;
    }

    fn fail(&mut self, kind: &str, message: &str, code: Option<&str>, out: &mut Vec<u8>) {
        let e = o::ErrorBodyOut {
            error: o::ErrorOut {
                message,
                kind,
                param: None,
                code,
            },
        };
        o::write_data(&e, out);
        out.extend_from_slice(o::DONE);
        self.done = true;
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.finish_reason.is_some() {
            self.complete(out);
        } else {
            self.fail("api_error", ENDED_EARLY, None, out);
        }
    }
}

fn is_empty_object(raw: &str) -> bool {
    raw.bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .eq(b"{}".iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `events` one by one, then ends the stream; returns the output.
    fn run(direction: Direction, client_usage: bool, events: &[&str], end: bool) -> String {
        let mut t = StreamTranslator::new(direction, client_usage);
        let mut out = Vec::new();
        for e in events {
            t.event(e.as_bytes(), &mut out);
        }
        if end {
            t.finish(&mut out);
        }
        String::from_utf8(out).unwrap()
    }

    fn chunk(choices: &str) -> String {
        format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":{choices}}}\n\n"
        )
    }

    #[test]
    fn openai_text_stream_to_anthropic_events() {
        let events = [
            chunk(r#"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#),
            chunk(r#"[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]"#),
            ": keep-alive\n\n".to_string(),
            chunk(r#"[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]"#),
            chunk(r#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#),
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n".to_string(),
            "data: [DONE]\n\n".to_string(),
        ];
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        assert_eq!(
            run(Direction::AnthropicToOpenai, false, &refs, true),
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"chatcmpl-1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"gpt-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n",
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
                "event: ping\ndata: {\"type\":\"ping\"}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":4,\"output_tokens\":2}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            )
        );
    }

    #[test]
    fn openai_tool_call_fragments_to_input_json_deltas() {
        let events = [
            chunk(
                r#"[{"index":0,"delta":{"role":"assistant","content":"Let me check."},"finish_reason":null}]"#,
            ),
            chunk(
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]"#,
            ),
            chunk(
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]"#,
            ),
            chunk(
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]"#,
            ),
            chunk(
                r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"now","arguments":"{}"}}]},"finish_reason":null}]"#,
            ),
            chunk(r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#),
        ];
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        // No [DONE] and no usage: the clean end completes the message.
        let out = run(Direction::AnthropicToOpenai, false, &refs, true);
        let body: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        let data: Vec<&str> = body
            .iter()
            .map(|e| e.split_once("\ndata: ").unwrap().1)
            .collect();
        assert_eq!(
            &data[1..],
            &[
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_A","name":"get_weather","input":{}}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
                r#"{"type":"content_block_stop","index":1}"#,
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_B","name":"now","input":{}}}"#,
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
                r#"{"type":"content_block_stop","index":2}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":0}}"#,
                r#"{"type":"message_stop"}"#,
            ]
        );
    }

    #[test]
    fn openai_stream_errors_and_early_ends_become_error_events() {
        let first = chunk(r#"[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]"#);
        let out = run(
            Direction::AnthropicToOpenai,
            false,
            &[
                &first,
                "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
                &first,
            ],
            true,
        );
        assert!(out.ends_with(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"server_error\",\"message\":\"overloaded\"}}\n\n"
        ), "{out}");
        assert_eq!(out.matches("text_delta").count(), 1);
        let out = run(Direction::AnthropicToOpenai, false, &[&first], true);
        assert!(out.ends_with(&format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"{ENDED_EARLY}\"}}}}\n\n"
        )), "{out}");
        let out = run(
            Direction::AnthropicToOpenai,
            false,
            &["data: {nope\n\n"],
            false,
        );
        assert!(
            out.starts_with("event: error\n") && out.contains(MALFORMED),
            "{out}"
        );
    }

    fn named(name: &str, data: &str) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn anthropic_stream() -> Vec<String> {
        vec![
            named(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
            ),
            named(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            named("ping", r#"{"type": "ping"}"#),
            named(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            ),
            named(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            named(
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            ),
            named(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            named(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}"#,
            ),
            named(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}"#,
            ),
            named(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            named(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}"#,
            ),
            named("message_stop", r#"{"type":"message_stop"}"#),
        ]
    }

    #[test]
    fn anthropic_events_to_openai_chunks() {
        let events = anthropic_stream();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let mut t = StreamTranslator::new(Direction::OpenaiToAnthropic, true);
        let mut out = Vec::new();
        for e in &refs {
            t.event(e.as_bytes(), &mut out);
        }
        assert!(t.is_done());
        assert_eq!(
            t.usage(),
            Usage {
                input_tokens: 12,
                output_tokens: 9
            }
        );
        let out = String::from_utf8(out).unwrap();
        let created = match &t.state {
            State::EventsToChunks(s) => s.created,
            _ => unreachable!(),
        };
        let head = format!(
            r#"{{"id":"msg_1","object":"chat.completion.chunk","created":{created},"model":"claude-x","choices":"#
        );
        let c = |rest: &str| format!("data: {head}{rest}}}\n\n");
        let want = [
            c(r#"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#),
            ": ping\n\n".to_string(),
            c(r#"[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]"#),
            c(r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]"#),
            c(r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Pa"}}]},"finish_reason":null}]"#),
            c(r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]},"finish_reason":null}]"#),
            c(r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#),
            c(r#"[],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}"#),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn anthropic_usage_chunk_only_when_asked() {
        let events = anthropic_stream();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let out = run(Direction::OpenaiToAnthropic, false, &refs, true);
        assert!(!out.contains("usage"), "{out}");
        assert!(
            out.ends_with("\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n"),
            "{out}"
        );
    }

    #[test]
    fn anthropic_error_event_and_early_end() {
        let events = anthropic_stream();
        let error = named(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let out = run(
            Direction::OpenaiToAnthropic,
            false,
            &[&events[0], &events[3], &error, &events[3]],
            true,
        );
        assert!(out.ends_with(
            "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"api_error\",\"code\":\"overloaded_error\"}}\n\ndata: [DONE]\n\n"
        ), "{out}");
        assert_eq!(out.matches("\"Hi\"").count(), 1);
        let out = run(
            Direction::OpenaiToAnthropic,
            false,
            &[&events[0], &events[3]],
            true,
        );
        assert!(out.ends_with(&format!(
            "data: {{\"error\":{{\"message\":\"{ENDED_EARLY}\",\"type\":\"api_error\",\"code\":null}}}}\n\ndata: [DONE]\n\n"
        )), "{out}");
    }

    #[test]
    fn multi_line_data_is_joined() {
        assert_eq!(
            event_data(b"data: {\"a\":\ndata: 1}\n\n").unwrap().as_ref(),
            b"{\"a\":\n1}"
        );
        assert!(event_data(b": c\n\n").is_none());
    }
}
