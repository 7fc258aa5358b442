//! Server-sent events from a byte stream, and what a load test reads from
//! each event: whether it carries content (a token), usage numbers, the
//! end of the stream, or an in-band error.
//!
//! Events are looked at with a few key scans, not a JSON parse: in JSON
//! text a quote inside a string is escaped, so `"key":` only ever matches
//! a real key.

use memchr::memmem;

/// Splits SSE bytes into events (`event:` name and joined `data:` lines).
/// Lines may end in LF, CR or CRLF; buffers are kept between events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// An incomplete line carried over from the previous feed.
    line: Vec<u8>,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last line ended in CR: an LF right after it belongs to it.
    skip_lf: bool,
}

impl SseParser {
    pub fn reset(&mut self) {
        self.line.clear();
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.skip_lf = false;
    }

    /// Feeds bytes; calls `on_event(name, data)` for each complete event.
    pub fn feed(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(&[u8], &[u8])) {
        while !bytes.is_empty() {
            if self.skip_lf {
                self.skip_lf = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\r', b'\n', bytes) {
                None => {
                    self.line.extend_from_slice(bytes);
                    return;
                }
                Some(i) => {
                    self.skip_lf = bytes[i] == b'\r';
                    if self.line.is_empty() {
                        self.on_line(&bytes[..i], on_event);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&bytes[..i]);
                        self.on_line(&line, on_event);
                        line.clear();
                        self.line = line;
                    }
                    bytes = &bytes[i + 1..];
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8], &[u8])) {
        if line.is_empty() {
            if self.has_data {
                on_event(&self.event, &self.data);
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {}
        }
    }
}

/// How the endpoint's stream events are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1/chat/completions`: `choices[].delta.content`.
    OpenAiChat,
    /// `/v1/completions`: `choices[].text`.
    OpenAiText,
    /// `/v1/messages`: named events, `content_block_delta`.
    Anthropic,
}

/// What one event means to the load test.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo {
    /// Carries generated output (a token, reasoning, tool-call arguments).
    pub content: bool,
    /// Ends the stream (`[DONE]`, `message_stop`).
    pub done: bool,
    /// An in-band error event.
    pub error: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// Reads one event.
pub fn classify(dialect: Dialect, event: &[u8], data: &[u8]) -> EventInfo {
    let mut info = EventInfo::default();
    match dialect {
        Dialect::OpenAiChat | Dialect::OpenAiText => {
            if data.trim_ascii() == b"[DONE]" {
                info.done = true;
                return info;
            }
            if value_at(data, b"error").is_some() && value_at(data, b"choices").is_none() {
                info.error = true;
                return info;
            }
            info.content = if dialect == Dialect::OpenAiChat {
                [
                    &b"content"[..],
                    b"reasoning_content",
                    b"reasoning",
                    b"arguments",
                ]
                .iter()
                .any(|k| nonempty_string(data, k))
            } else {
                nonempty_string(data, b"text")
            };
            if value_at(data, b"usage").is_some_and(|v| !v.starts_with(b"null")) {
                info.input_tokens = number(data, b"prompt_tokens");
                info.output_tokens = number(data, b"completion_tokens");
            }
        }
        Dialect::Anthropic => {
            let kind = if event.is_empty() {
                string_value(data, b"type").unwrap_or(b"")
            } else {
                event
            };
            match kind {
                b"content_block_delta" => {
                    info.content = [&b"text"[..], b"thinking", b"partial_json"]
                        .iter()
                        .any(|k| nonempty_string(data, k));
                }
                b"message_start" => info.input_tokens = number(data, b"input_tokens"),
                b"message_delta" => info.output_tokens = number(data, b"output_tokens"),
                b"message_stop" => info.done = true,
                b"error" => info.error = true,
                _ => {}
            }
        }
    }
    info
}

/// Usage numbers of a whole (non-streamed) JSON answer: OpenAI's
/// `prompt_tokens` / `completion_tokens` or Anthropic's `input_tokens` /
/// `output_tokens`, inside `usage`.
pub fn body_usage(body: &[u8]) -> (Option<u64>, Option<u64>) {
    let Some(u) = value_at(body, b"usage") else {
        return (None, None);
    };
    let input = number(u, b"prompt_tokens").or_else(|| number(u, b"input_tokens"));
    let output = number(u, b"completion_tokens").or_else(|| number(u, b"output_tokens"));
    (input, output)
}

/// The bytes after the first `"key":` (whitespace skipped), if any.
pub fn value_at<'a>(data: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while from < data.len() {
        let i = from + find_quoted(&data[from..], key)?;
        let mut j = i + key.len() + 2;
        while j < data.len() && data[j].is_ascii_whitespace() {
            j += 1;
        }
        if data.get(j) == Some(&b':') {
            j += 1;
            while j < data.len() && data[j].is_ascii_whitespace() {
                j += 1;
            }
            return Some(&data[j..]);
        }
        from = i + 1;
    }
    None
}

/// Finds `"key"` in `data`.
fn find_quoted(data: &[u8], key: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + memmem::find(&data[from..], key)?;
        if i > 0 && data[i - 1] == b'"' && data.get(i + key.len()) == Some(&b'"') {
            return Some(i - 1);
        }
        from = i + 1;
    }
}

/// Whether some `"key":` holds a non-empty string.
fn nonempty_string(data: &[u8], key: &[u8]) -> bool {
    let mut rest = data;
    while let Some(v) = value_at(rest, key) {
        if v.len() >= 2 && v[0] == b'"' && v[1] != b'"' {
            return true;
        }
        // Look past this occurrence.
        let consumed = data.len() - v.len();
        rest = &data[consumed..];
    }
    false
}

/// The string value of the first `"key":`, unescaped parts only.
fn string_value<'a>(data: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let v = value_at(data, key)?.strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', v)?;
    Some(&v[..end])
}

/// The unsigned integer value of the first `"key":`.
pub fn number(data: &[u8], key: &[u8]) -> Option<u64> {
    let v = value_at(data, key)?;
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&v[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut |e: &[u8], d: &[u8]| {
                out.push((
                    String::from_utf8_lossy(e).into_owned(),
                    String::from_utf8_lossy(d).into_owned(),
                ))
            });
        }
        out
    }

    #[test]
    fn splits_events_across_feeds_and_line_endings() {
        let all = b"data: a\n\nevent: x\r\ndata: b\r\ndata:c\r\n\r\n: comment\n\ndata: d\r\rid: 1\ndata: e\n\n";
        let whole = events(&[all]);
        let want = vec![
            (String::new(), "a".to_string()),
            ("x".to_string(), "b\nc".to_string()),
            (String::new(), "d".to_string()),
            (String::new(), "e".to_string()),
        ];
        assert_eq!(whole, want);
        // Byte by byte gives the same events.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(events(&bytes), want);
        // A CR at the end of one feed, its LF at the start of the next.
        assert_eq!(
            events(&[b"data: a\r", b"\n\r", b"\n"]),
            vec![(String::new(), "a".to_string())]
        );
    }

    #[test]
    fn openai_chat_events() {
        let d = Dialect::OpenAiChat;
        let role = br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert!(!classify(d, b"", role).content);
        let tok = br#"{"choices":[{"index":0,"delta":{"content" : "Hi"},"finish_reason":null}]}"#;
        assert!(classify(d, b"", tok).content);
        let reason = br#"{"choices":[{"delta":{"content":null,"reasoning_content":"hm"}}]}"#;
        assert!(classify(d, b"", reason).content);
        let quoted = br#"{"choices":[{"delta":{"content":"\"content\": \"\""}}]}"#;
        assert!(classify(d, b"", quoted).content);
        let usage = br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}"#;
        let u = classify(d, b"", usage);
        assert!(!u.content);
        assert_eq!((u.input_tokens, u.output_tokens), (Some(12), Some(34)));
        let nulls = br#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#;
        assert_eq!(classify(d, b"", nulls).output_tokens, None);
        assert!(classify(d, b"", b"[DONE]").done);
        let err = br#"{"error":{"message":"upstream reset","type":"server_error"}}"#;
        assert!(classify(d, b"", err).error);
        let text = br#"{"choices":[{"text":"a","index":0}]}"#;
        assert!(classify(Dialect::OpenAiText, b"", text).content);
        assert!(!classify(Dialect::OpenAiText, b"", br#"{"choices":[{"text":""}]}"#).content);
    }

    #[test]
    fn anthropic_events() {
        let d = Dialect::Anthropic;
        let start =
            br#"{"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}"#;
        assert_eq!(classify(d, b"message_start", start).input_tokens, Some(9));
        assert_eq!(classify(d, b"message_start", start).output_tokens, None);
        let delta = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert!(classify(d, b"content_block_delta", delta).content);
        // Without event names, the data's type decides.
        assert!(classify(d, b"", delta).content);
        let md = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#;
        assert_eq!(classify(d, b"message_delta", md).output_tokens, Some(5));
        assert!(classify(d, b"message_stop", b"{}").done);
        assert!(classify(d, b"error", br#"{"type":"error"}"#).error);
        assert_eq!(
            classify(d, b"ping", br#"{"type":"ping"}"#),
            EventInfo::default()
        );
    }

    #[test]
    fn whole_body_usage() {
        let oa = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":7,"total_tokens":10}}"#;
        assert_eq!(body_usage(oa), (Some(3), Some(7)));
        let an = br#"{"content":[{"type":"text","text":"x"}],"usage":{"input_tokens":4,"output_tokens":2}}"#;
        assert_eq!(body_usage(an), (Some(4), Some(2)));
        let emb = br#"{"data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(body_usage(emb), (Some(5), None));
        assert_eq!(body_usage(b"{\"ok\":true}"), (None, None));
        assert_eq!(number(br#"{"n": 18446744073709551616}"#, b"n"), None);
    }
}
