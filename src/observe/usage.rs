//! Token usage read from LLM responses without a full parse: a JSON
//! body's `usage` object, or each SSE event's (OpenAI's final usage chunk,
//! Anthropic's `message_start` and `message_delta`).
//!
//! Each usage object seen overwrites the fields it carries: OpenAI reports
//! totals once, Anthropic reports input in `message_start` and cumulative
//! output in `message_delta`, so the last value is the answer in both.

use crate::extract::top_level_members;
use memchr::memmem;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

/// A non-negative JSON integer (`12`, not `1.5e3`, `"12"` or `-1`).
fn integer(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    // At most 19 digits: no overflow.
    v.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

impl Usage {
    /// Folds in the token counts of one `usage` object.
    fn read_usage(&mut self, obj: &[u8]) {
        const NAMES: [&[u8]; 4] = [
            b"prompt_tokens",
            b"input_tokens",
            b"completion_tokens",
            b"output_tokens",
        ];
        top_level_members(obj, &NAMES, |n, v| {
            if let Some(tokens) = integer(v) {
                match n {
                    0 | 1 => self.input = Some(tokens),
                    _ => self.output = Some(tokens),
                }
            }
        });
    }

    /// Folds in the usage of one whole JSON object: its top-level `usage`,
    /// or its `message.usage` (Anthropic's `message_start`).
    pub fn scan_json(&mut self, body: &[u8]) {
        let mut usage = None;
        let mut message = None;
        top_level_members(body, &[b"usage", b"message"], |n, v| {
            if v.first() == Some(&b'{') {
                match n {
                    0 => usage = Some(v),
                    _ => message = Some(v),
                }
            }
        });
        if usage.is_none() {
            if let Some(m) = message {
                top_level_members(m, &[b"usage"], |_, v| {
                    if v.first() == Some(&b'{') {
                        usage = Some(v);
                    }
                });
            }
        }
        if let Some(u) = usage {
            self.read_usage(u);
        }
    }

    /// Folds in the usage of one whole SSE event (its `data:` lines).
    /// Events without the word `"usage"` — nearly all — cost one scan.
    pub fn scan_event(&mut self, event: &[u8]) {
        if memmem::find(event, b"\"usage\"").is_none() {
            return;
        }
        for line in event.split(|&b| b == b'\n') {
            if let Some(data) = line.strip_prefix(b"data:") {
                self.scan_json(data);
            }
        }
    }

    /// Folds in the usage of a JSON body of which only the last bytes are
    /// at hand: the last `"usage": {...}` in them (top-level `usage` comes
    /// last in OpenAI, Anthropic and DashScope answers).
    pub fn scan_tail(&mut self, tail: &[u8]) {
        let Some(at) = memmem::rfind(tail, b"\"usage\"") else {
            return;
        };
        let rest = &tail[at + 7..];
        let rest = rest.trim_ascii_start();
        if let Some(obj) = rest.strip_prefix(b":") {
            let obj = obj.trim_ascii_start();
            if obj.first() == Some(&b'{') {
                self.read_usage(obj);
            }
        }
    }
}

/// The last bytes of a response body, kept to read its usage at the end
/// (the whole body when it is small).
#[derive(Default)]
pub struct BodyTail {
    buf: Vec<u8>,
    total: u64,
}

impl BodyTail {
    const CAP: usize = 16 * 1024;

    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if data.len() >= Self::CAP {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - Self::CAP..]);
            return;
        }
        let over = (self.buf.len() + data.len()).saturating_sub(Self::CAP);
        if over > 0 {
            self.buf.drain(..over);
        }
        self.buf.extend_from_slice(data);
    }

    /// The usage of the body pushed so far.
    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        if self.total == self.buf.len() as u64 {
            u.scan_json(&self.buf);
        } else {
            u.scan_tail(&self.buf);
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Usage {
        let mut u = Usage::default();
        u.scan_json(body.as_bytes());
        u
    }

    #[test]
    fn openai_body() {
        let u = json(
            r#"{"id":"x","choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 99}"}}],
               "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}"#,
        );
        assert_eq!(u.input, Some(12));
        assert_eq!(u.output, Some(5));
    }

    #[test]
    fn anthropic_body_and_nested_decoys() {
        let u = json(
            r#"{"content":[{"type":"tool_use","input":{"usage":{"input_tokens":1000}}}],
               "usage":{"input_tokens":7,"output_tokens":3}}"#,
        );
        assert_eq!((u.input, u.output), (Some(7), Some(3)));
        // No top-level usage: nothing, whatever nested objects say.
        let u = json(r#"{"data":[{"usage":{"input_tokens":5}}]}"#);
        assert_eq!(u, Usage::default());
    }

    #[test]
    fn bad_values_are_ignored() {
        let u = json(r#"{"usage":{"prompt_tokens":-1,"completion_tokens":"4"}}"#);
        assert_eq!(u, Usage::default());
        let u = json(r#"{"usage":null}"#);
        assert_eq!(u, Usage::default());
        let u = json(r#"not json"#);
        assert_eq!(u, Usage::default());
    }

    #[test]
    fn openai_stream_final_chunk() {
        let mut u = Usage::default();
        for e in [
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\n",
            "data: [DONE]\n\n",
        ] {
            u.scan_event(e.as_bytes());
        }
        assert_eq!((u.input, u.output), (Some(4), Some(9)));
    }

    #[test]
    fn anthropic_stream_start_and_delta() {
        let mut u = Usage::default();
        for e in [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":6}}\n\n",
        ] {
            u.scan_event(e.as_bytes());
        }
        assert_eq!((u.input, u.output), (Some(11), Some(6)));
    }

    #[test]
    fn tail_of_a_large_body() {
        let mut t = BodyTail::default();
        t.push(b"{\"data\":[");
        let filler = vec![b'1'; 40_000];
        t.push(&filler);
        t.push(b"],\"usage\":{\"prompt_tokens\":321,\"total_tokens\":321}}");
        let u = t.usage();
        assert_eq!((u.input, u.output), (Some(321), None));

        let mut t = BodyTail::default();
        t.push(b"{\"usage\":{\"input_tokens\":2,");
        t.push(b"\"output_tokens\":8}}");
        assert_eq!(t.usage().output, Some(8));
    }
}
