//! Token usage read from an answer as it passes: the last
//! `prompt_tokens`/`input_tokens` and `completion_tokens`/`output_tokens`
//! numbers seen (OpenAI, Anthropic and DashScope spellings; Anthropic's
//! stream gives input in `message_start` and the final output in
//! `message_delta`, OpenAI's in its last chunk).
//!
//! A byte scan, no JSON parse: keys are found by their closing `_tokens"`,
//! so a key inside a string value (whose quotes are escaped) never matches.
//! Input may arrive in any pieces; the end of each piece is carried over.

/// Bytes carried between pieces: enough for the longest key, `: ` and a
/// 20-digit number.
const CARRY: usize = 64;
/// Whitespace read on each side of the colon.
const MAX_WS: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct UsageScan {
    pub input: Option<u64>,
    pub output: Option<u64>,
    /// The last bytes of the pieces so far (at most `CARRY`).
    carry: Vec<u8>,
    /// Bytes of all pieces so far.
    consumed: u64,
    /// Stream offset before which matches were already recorded.
    next: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Input,
    Output,
}

impl UsageScan {
    /// Input plus output tokens seen so far.
    pub fn total(&self) -> u64 {
        self.input
            .unwrap_or(0)
            .saturating_add(self.output.unwrap_or(0))
    }

    /// Scans one whole unit (an SSE event, a whole body).
    pub fn whole(&mut self, bytes: &[u8]) {
        self.scan(bytes, None, true);
    }

    /// Scans the next piece of a body that arrives in pieces.
    pub fn piece(&mut self, bytes: &[u8]) {
        if !self.carry.is_empty() {
            // Keys that start in the carried bytes and run into this piece.
            let base = self.consumed - self.carry.len() as u64;
            let mut joined = std::mem::take(&mut self.carry);
            let carried = joined.len();
            joined.extend_from_slice(&bytes[..bytes.len().min(CARRY)]);
            self.scan(&joined[..], Some((base, carried)), false);
            joined.truncate(carried);
            self.carry = joined;
        }
        self.scan(bytes, Some((self.consumed, usize::MAX)), false);
        self.consumed += bytes.len() as u64;
        self.carry
            .extend_from_slice(&bytes[bytes.len().saturating_sub(CARRY)..]);
        let extra = self.carry.len().saturating_sub(CARRY);
        self.carry.drain(..extra);
    }

    /// Records every `"key": N` in `b`. `at`: the stream offset of `b`
    /// and how far into `b` a match may start (for pieces). `complete`: a
    /// number running to the end of `b` is whole.
    fn scan(&mut self, b: &[u8], at: Option<(u64, usize)>, complete: bool) {
        for end in memchr::memmem::find_iter(b, b"_tokens\"") {
            let Some((key, start)) = key_before(b, end) else {
                continue;
            };
            if let Some((base, starts_before)) = at {
                if start >= starts_before {
                    break;
                }
                if base + (start as u64) < self.next {
                    continue;
                }
            }
            let mut i = skip_ws(b, end + 8);
            if b.get(i) != Some(&b':') {
                continue;
            }
            i = skip_ws(b, i + 1);
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 19 || (i + digits == b.len() && !complete) {
                continue;
            }
            let n = std::str::from_utf8(&b[i..i + digits])
                .ok()
                .and_then(|s| s.parse().ok());
            match key {
                Key::Input => self.input = n.or(self.input),
                Key::Output => self.output = n.or(self.output),
            }
            if let Some((base, _)) = at {
                self.next = base + start as u64 + 1;
            }
        }
    }
}

/// Past at most `MAX_WS` whitespace bytes from `i` (upstreams write none
/// or one; the bound keeps every match within `CARRY` bytes).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    let stop = (i + MAX_WS).min(b.len());
    while i < stop && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The key whose `_tokens"` ends at `end`, and where its opening quote is.
fn key_before(b: &[u8], end: usize) -> Option<(Key, usize)> {
    const KEYS: [(&[u8], Key); 4] = [
        (b"\"prompt", Key::Input),
        (b"\"input", Key::Input),
        (b"\"completion", Key::Output),
        (b"\"output", Key::Output),
    ];
    KEYS.iter().find_map(|(k, key)| {
        let start = end.checked_sub(k.len())?;
        (&b[start..end] == *k).then_some((*key, start))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_anthropic_usage() {
        let mut u = UsageScan::default();
        u.whole(br#"data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":3}}}"#);
        assert_eq!((u.input, u.output, u.total()), (Some(12), Some(7), 19));

        let mut u = UsageScan::default();
        u.whole(br#"data: {"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}"#);
        u.whole(br#"data: {"type":"message_delta","usage":{"output_tokens": 42}}"#);
        assert_eq!((u.input, u.output), (Some(5), Some(42)));
    }

    #[test]
    fn keys_inside_strings_do_not_count() {
        let mut u = UsageScan::default();
        u.whole(br#"{"content":"say \"prompt_tokens\": 999","usage":{"input_tokens":2,"output_tokens":3}}"#);
        assert_eq!(u.total(), 5);
    }

    #[test]
    fn any_split_gives_the_same_numbers() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1234,"completion_tokens":56789}}"#;
        for piece in 1..body.len() {
            let mut u = UsageScan::default();
            for part in body.chunks(piece) {
                u.piece(part);
            }
            assert_eq!(
                (u.input, u.output),
                (Some(1234), Some(56789)),
                "piece {piece}"
            );
        }
    }
}
