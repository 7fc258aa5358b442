//! Server-sent events framing: split a byte stream into whole events so a
//! relay never cuts one in the middle (PRODUCT.md §7).
//!
//! An event ends with a blank line. Lines end in LF, CRLF or CR (any mix),
//! so an event ends at `\n\n`, `\r\n\r\n`, `\r\r`, `\n\r\n`, `\r\n\n`, …
//! A terminator that ends in CR at the very end of the received data is
//! held until the next byte shows whether an LF follows (it belongs to the
//! same terminator); call [`SseSplitter::finish`] at the end of the stream.

/// Splits a stream of SSE bytes into whole events.
///
/// Whole events inside the data given to [`SseSplitter::push`] are passed on
/// as slices of that data; only an incomplete tail is copied, and completed
/// with the next push.
#[derive(Clone, Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    scan: Scan,
}

#[derive(Clone, Copy, Debug)]
struct Scan {
    /// The current line has no bytes yet.
    line_empty: bool,
    /// The last byte seen was a CR ending a line, whose LF may follow; the
    /// flag says whether that line was empty (then the event is complete).
    after_cr: Option<bool>,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            line_empty: true,
            after_cr: None,
        }
    }
}

impl Scan {
    /// Scans `s` (continuing from the bytes scanned before) and returns the
    /// offset just past the end of the first complete event, if any. After a
    /// `Some`, the scan state is at the start of a new event.
    #[inline]
    fn event_end(&mut self, s: &[u8]) -> Option<usize> {
        let mut i = 0;
        if let Some(was_empty) = self.after_cr {
            let &first = s.first()?;
            self.after_cr = None;
            self.line_empty = true;
            if first == b'\n' {
                i = 1;
            }
            if was_empty {
                return Some(i);
            }
        }
        loop {
            match memchr::memchr2(b'\r', b'\n', &s[i..]) {
                None => {
                    if i < s.len() {
                        self.line_empty = false;
                    }
                    return None;
                }
                Some(off) => {
                    let j = i + off;
                    let empty = self.line_empty && off == 0;
                    self.line_empty = true;
                    let end = if s[j] == b'\n' {
                        j + 1
                    } else if j + 1 < s.len() {
                        if s[j + 1] == b'\n' {
                            j + 2
                        } else {
                            j + 1
                        }
                    } else {
                        self.after_cr = Some(empty);
                        return None;
                    };
                    if empty {
                        return Some(end);
                    }
                    i = end;
                }
            }
        }
    }
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `data`; calls `on_event` with each complete event, its
    /// terminating blank line included, in order. A blank line with no
    /// field before it is passed on as an event of its own (it dispatches
    /// nothing for a client). Bytes are passed on exactly as received.
    pub fn push(&mut self, data: &[u8], mut on_event: impl FnMut(&[u8])) {
        let mut rest = data;
        if !self.buf.is_empty() {
            match self.scan.event_end(rest) {
                Some(end) => {
                    self.buf.extend_from_slice(&rest[..end]);
                    on_event(&self.buf);
                    self.buf.clear();
                    rest = &rest[end..];
                }
                None => {
                    self.buf.extend_from_slice(rest);
                    return;
                }
            }
        }
        while let Some(end) = self.scan.event_end(rest) {
            on_event(&rest[..end]);
            rest = &rest[end..];
        }
        self.buf.extend_from_slice(rest);
    }

    /// Bytes of an event not yet complete. A caller bounding event size
    /// checks its length after each push.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// At the end of the stream: passes on an event held back only because
    /// it ended in CR (see the module doc). Returns whether bytes of an
    /// incomplete event remain (a stream cut mid-event); they stay in
    /// [`SseSplitter::pending`].
    pub fn finish(&mut self, mut on_event: impl FnMut(&[u8])) -> bool {
        if self.scan.after_cr == Some(true) {
            on_event(&self.buf);
            self.buf.clear();
            self.scan = Scan::default();
        }
        !self.buf.is_empty()
    }

    /// Drops any pending bytes and starts afresh.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scan = Scan::default();
    }
}

/// The lines of an event (LF, CRLF or CR endings), without their endings.
pub fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

/// Splits a line into field name and value (one leading space of the value
/// stripped). Comments (lines starting with `:`) and blank lines give `None`.
pub fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.is_empty() || line[0] == b':' {
        return None;
    }
    Some(match memchr::memchr(b':', line) {
        Some(c) => {
            let value = &line[c + 1..];
            (&line[..c], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[][..]),
    })
}

/// The value of each `data` field of `event`, in order.
pub fn data_lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    lines(event).filter_map(|l| match field(l) {
        Some((b"data", value)) => Some(value),
        _ => None,
    })
}

/// The event type: the value of the last `event` field, if any.
pub fn event_name(event: &[u8]) -> Option<&[u8]> {
    lines(event)
        .filter_map(|l| match field(l) {
            Some((b"event", value)) => Some(value),
            _ => None,
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_with(stream: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut s = SseSplitter::new();
        let mut events = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
            s.push(&stream[start..end], |e| events.push(e.to_vec()));
            start = end;
        }
        s.finish(|e| events.push(e.to_vec()));
        (events, s.pending().to_vec())
    }

    fn check_splits(stream: &[u8], expected: &[&[u8]], tail: &[u8]) {
        let want: Vec<Vec<u8>> = expected.iter().map(|e| e.to_vec()).collect();
        assert_eq!(
            split_with(stream, &[]),
            (want.clone(), tail.to_vec()),
            "whole"
        );
        for k in 0..=stream.len() {
            assert_eq!(
                split_with(stream, &[k]),
                (want.clone(), tail.to_vec()),
                "split at {k}"
            );
        }
        let all: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(
            split_with(stream, &all),
            (want, tail.to_vec()),
            "byte by byte"
        );
    }

    #[test]
    fn lf_events() {
        check_splits(
            b"data: a\n\ndata: b\ndata: c\n\nevent: x\ndata: {}\n\ndata: partial",
            &[
                b"data: a\n\n",
                b"data: b\ndata: c\n\n",
                b"event: x\ndata: {}\n\n",
            ],
            b"data: partial",
        );
    }

    #[test]
    fn crlf_events() {
        check_splits(
            b"data: a\r\n\r\ndata: b\r\ndata: c\r\n\r\ndata: d\r\n\r",
            &[
                b"data: a\r\n\r\n",
                b"data: b\r\ndata: c\r\n\r\n",
                b"data: d\r\n\r",
            ],
            b"",
        );
    }

    #[test]
    fn cr_and_mixed_events() {
        check_splits(
            b"data: a\r\rdata: b\n\r\ndata: c\r\n\ndata: d\r\r\ndata: e\n\rdata: f\r\n\r\n",
            &[
                b"data: a\r\r",
                b"data: b\n\r\n",
                b"data: c\r\n\n",
                b"data: d\r\r\n",
                b"data: e\n\r",
                b"data: f\r\n\r\n",
            ],
            b"",
        );
        // A CR-terminated event at the very end is held until finish.
        let mut s = SseSplitter::new();
        let mut n = 0;
        s.push(b"data: a\r\r", |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(s.pending(), b"data: a\r\r");
        assert!(!s.finish(|e| {
            assert_eq!(e, b"data: a\r\r");
            n += 1
        }));
        assert_eq!(n, 1);
        assert!(s.pending().is_empty());
    }

    #[test]
    fn blank_lines_and_comments() {
        check_splits(
            b"\n: keep-alive\n\n\r\ndata: x\n\n",
            &[b"\n", b": keep-alive\n\n", b"\r\n", b"data: x\n\n"],
            b"",
        );
    }

    #[test]
    fn whole_events_are_borrowed_when_nothing_is_pending() {
        let data = b"data: a\n\ndata: b\n\ndata: c";
        let mut s = SseSplitter::new();
        let mut ptrs = Vec::new();
        s.push(data, |e| ptrs.push(e.as_ptr()));
        assert_eq!(ptrs, vec![data.as_ptr(), data[9..].as_ptr()]);
        assert_eq!(s.pending(), b"data: c");
        // The pending event is completed from the next push; the events
        // after it are borrowed again.
        let more = b"\n\ndata: d\n\n";
        let mut got = Vec::new();
        s.push(more, |e| {
            got.push((e.to_vec(), e.as_ptr() == more[2..].as_ptr()))
        });
        assert_eq!(
            got,
            vec![
                (b"data: c\n\n".to_vec(), false),
                (b"data: d\n\n".to_vec(), true)
            ]
        );
        assert!(s.pending().is_empty());
        assert!(!s.finish(|_| panic!("nothing held")));
    }

    #[test]
    fn finish_reports_a_cut_event() {
        let mut s = SseSplitter::new();
        s.push(b"data: a\n\ndata: trunc", |_| {});
        assert!(s.finish(|_| panic!("not complete")));
        assert_eq!(s.pending(), b"data: trunc");
        s.clear();
        assert!(s.pending().is_empty());
    }

    #[test]
    fn data_lines_and_event_name() {
        let e = b"event: message_start\r\ndata: {\"a\":1}\r\ndata:two\r\ndata\r\n: comment\r\ndatax: no\r\ndata:  spaced\r\n\r\n";
        let d: Vec<&[u8]> = data_lines(e).collect();
        assert_eq!(d, vec![&b"{\"a\":1}"[..], b"two", b"", b" spaced"]);
        assert_eq!(event_name(e), Some(&b"message_start"[..]));
        assert_eq!(event_name(b"data: x\n\n"), None);
        assert_eq!(event_name(b"event: a\nevent: b\n\n"), Some(&b"b"[..]));
        let d: Vec<&[u8]> = data_lines(b"data: [DONE]\r\r").collect();
        assert_eq!(d, vec![&b"[DONE]"[..]]);
        assert_eq!(data_lines(b": ping\n\n").count(), 0);
        let l: Vec<&[u8]> = lines(b"a\rb\r\nc\nd").collect();
        assert_eq!(l, vec![&b"a"[..], b"b", b"c", b"d"]);
    }
}
