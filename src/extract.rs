//! Reading the few request-body fields the gateway needs, without a full
//! JSON parse.
//!
//! The gateway buffers a (bounded) request body and needs only the top-level
//! `"model"` string and `"stream"` flag (plus the span of `stream_options`,
//! to add `include_usage` to OpenAI streaming requests). [`extract`] walks the
//! top-level object once: strings are skipped with `memchr2` on `"`/`\`,
//! nested objects and arrays by bracket counting outside strings, so a
//! `"model"` key inside `messages` or inside a string value never matches.
//! Duplicate top-level keys: the last one wins (as in serde_json and
//! simd-json).
//!
//! Rewrites splice bytes into a copy of the body ([`rewrite_into`]): the rest
//! of the body is copied verbatim, never re-serialized.
//!
//! Validation is complete for the top level (structure, keys, scalar tokens,
//! the model string's escapes and UTF-8) and structural only for nested
//! values (brackets balanced and matched, strings closed); the upstream sees
//! the body unchanged and judges the rest.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use memchr::memmem;

/// The top-level fields read from a JSON request body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The top-level `"model"` string, if there is one.
    pub model: Option<ModelField>,
    /// `true` only when the (last) top-level `"stream"` value is the literal `true`.
    pub stream: bool,
    /// Span of the (last) top-level `"stream_options"` value, whatever its type.
    pub stream_options: Option<Range<usize>>,
    /// Span of the top-level object, from its `{` to its `}` inclusive.
    pub object: Range<usize>,
}

/// Where the top-level model string sits in the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelField {
    /// The whole string literal, quotes included.
    pub span: Range<usize>,
    /// The literal holds at least one backslash escape.
    pub escaped: bool,
}

impl ModelField {
    /// The model name, JSON-unescaped. Borrowed from `body` unless escaped.
    ///
    /// `body` must be the body this field was extracted from (a different
    /// body yields garbage or an empty string, never a panic).
    pub fn value<'a>(&self, body: &'a [u8]) -> Cow<'a, str> {
        let raw = match body.get(self.span.start + 1..self.span.end.saturating_sub(1)) {
            Some(raw) if self.span.end >= self.span.start + 2 => raw,
            _ => return Cow::Borrowed(""),
        };
        if !self.escaped {
            return String::from_utf8_lossy(raw);
        }
        let mut out = String::with_capacity(raw.len());
        match unescape_into(raw, &mut out) {
            Ok(()) => Cow::Owned(out),
            Err(()) => String::from_utf8_lossy(raw),
        }
    }

    /// The raw literal content between the quotes (still escaped).
    pub fn raw<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.span.start + 1..self.span.end.saturating_sub(1))
            .unwrap_or(&[])
    }
}

/// Why [`extract`] could not read the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtractError {
    /// Not a JSON object, or malformed at the top level.
    NotJson,
    /// The top-level `model` is present but not a string.
    ModelNotString,
    /// The body ended inside the object.
    Truncated,
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExtractError::NotJson => "request body is not a valid JSON object",
            ExtractError::ModelNotString => "\"model\" must be a string",
            ExtractError::Truncated => "request body ends inside the JSON object",
        })
    }
}

impl std::error::Error for ExtractError {}

type Res<T> = Result<T, ExtractError>;

const fn table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

static WS: [bool; 256] = table(b" \t\r\n");
/// Bytes that end a scalar token.
static DELIM: [bool; 256] = table(b" \t\r\n,}]:");

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && WS[b[i] as usize] {
        i += 1;
    }
    i
}

/// `b[i] == '"'`. Returns the index just past the closing quote.
///
/// Looks for each `"` eight bytes at a time (SWAR) over the first bytes,
/// then with `memchr`, and decides whether it is escaped by the parity of
/// the backslashes just before it, so escapes other than `\"` (the common
/// `\n`) cost nothing.
#[inline]
fn string_end(b: &[u8], i: usize) -> Res<usize> {
    let first = i + 1;
    let mut j = first;
    loop {
        let p = match find_quote(b, j) {
            Some(p) => p,
            None => return Err(ExtractError::Truncated),
        };
        let mut q = p;
        while q > first && b[q - 1] == b'\\' {
            q -= 1;
        }
        if (p - q) % 2 == 0 {
            return Ok(p + 1);
        }
        j = p + 1;
    }
}

/// Index of the first `"` at or after `j`.
#[inline]
fn find_quote(b: &[u8], mut j: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    // Strings are mostly short: a few words inline before calling memchr.
    let inline_end = j + 32;
    while j + 8 <= b.len() && j < inline_end {
        let w = u64::from_le_bytes(b[j..j + 8].try_into().unwrap()) ^ QUOTES;
        // The lowest flagged byte is exact (borrows only run upwards).
        let z = w.wrapping_sub(ONES) & !w & HIGHS;
        if z != 0 {
            return Some(j + (z.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    memchr::memchr(b'"', b.get(j..)?).map(|k| j + k)
}

/// Deepest nesting whose bracket kinds are checked; deeper values are only
/// counted.
const CHECKED_DEPTH: usize = 1024;

/// `b[i]` is `{` or `[`. Returns the index just past the matching bracket.
/// Only structural bytes are visited (see [`Structural`]).
fn nested_end(b: &[u8], i: usize) -> Res<usize> {
    // One bit per level: 1 = object, 0 = array.
    let mut kinds = [0u64; CHECKED_DEPTH / 64];
    let mut depth = 0usize;
    for at in Structural::new(b, i) {
        let c = b[at];
        match c {
            b'{' | b'[' => {
                if depth < CHECKED_DEPTH {
                    let bit = 1u64 << (depth % 64);
                    if c == b'{' {
                        kinds[depth / 64] |= bit;
                    } else {
                        kinds[depth / 64] &= !bit;
                    }
                }
                depth += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Err(ExtractError::NotJson);
                }
                depth -= 1;
                if depth < CHECKED_DEPTH {
                    let is_obj = kinds[depth / 64] & (1u64 << (depth % 64)) != 0;
                    if is_obj != (c == b'}') {
                        return Err(ExtractError::NotJson);
                    }
                }
                if depth == 0 {
                    return Ok(at + 1);
                }
            }
            // A quote opening a string, or a backslash outside strings
            // (left to the upstream to judge).
            _ => {}
        }
    }
    Err(ExtractError::Truncated)
}

/// The structural bytes of a JSON text outside strings, in order: brackets
/// and the quotes that open strings. Walks 16-byte blocks by their masks
/// (see [`structural_mask`]), so the bytes inside strings, most of a
/// value, cost nothing one by one. A backslash inside a string hides the
/// byte after it, so an escaped quote never ends the string.
struct Structural<'a> {
    b: &'a [u8],
    /// Start and length of the current block, and its bits not yet seen.
    p: usize,
    n: usize,
    m: u32,
    in_string: bool,
    /// The first byte of the next block is escaped.
    escaped: bool,
}

impl<'a> Structural<'a> {
    /// Starts at `b[at]`, outside any string.
    fn new(b: &'a [u8], at: usize) -> Self {
        let mut scan = Structural {
            b,
            p: 0,
            n: 0,
            m: 0,
            in_string: false,
            escaped: false,
        };
        scan.seek(at);
        scan
    }

    /// Goes on from `b[at]`, outside any string (`next` reads the block).
    fn seek(&mut self, at: usize) {
        (self.p, self.n, self.m) = (at, 0, 0);
        self.in_string = false;
        self.escaped = false;
    }
}

impl Iterator for Structural<'_> {
    /// The index of the next structural byte outside strings.
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            while self.m == 0 {
                self.p += self.n;
                if self.p >= self.b.len() {
                    return None;
                }
                (self.m, self.n) = structural_mask(self.b, self.p);
                if self.escaped {
                    self.m &= !1;
                    self.escaped = false;
                }
            }
            let k = self.m.trailing_zeros() as usize;
            self.m &= self.m - 1;
            let c = self.b[self.p + k];
            if self.in_string {
                match c {
                    b'"' => self.in_string = false,
                    b'\\' if k + 1 < self.n => self.m &= !(1 << (k + 1)),
                    b'\\' => self.escaped = true,
                    _ => {}
                }
                continue;
            }
            self.in_string = c == b'"';
            return Some(self.p + k);
        }
    }
}

/// Bytes [`Structural`] stops at.
static STRUCTURAL: [bool; 256] = table(b"\"\\{}[]");

/// For the block of up to 16 bytes at `b[p..]`: bit `k` is set when
/// `b[p + k]` is structural, and the block's length.
#[inline]
fn structural_mask(b: &[u8], p: usize) -> (u32, usize) {
    match b.get(p..p + 16) {
        Some(block) => (structural_mask16(block.try_into().expect("16 bytes")), 16),
        // The last bytes of a longer buffer: the 16 bytes ending there,
        // shifted past the ones already seen.
        None if b.len() >= 16 => {
            let last = &b[b.len() - 16..];
            let m = structural_mask16(last.try_into().expect("16 bytes"));
            (m >> (16 - (b.len() - p)), b.len() - p)
        }
        None => {
            let tail = &b[p..];
            let m = tail.iter().enumerate().fold(0u32, |m, (k, &c)| {
                m | (u32::from(STRUCTURAL[c as usize]) << k)
            });
            (m, tail.len())
        }
    }
}

/// One compare per structural byte kind over all 16 bytes at once (SSE2 is
/// part of x86-64; elsewhere the same mask a byte at a time).
#[inline]
fn structural_mask16(block: &[u8; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline, and the unaligned
        // load reads exactly the 16 bytes of `block`.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            let eq = |v, c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // `[` `]` are `{` `}` with bit 5 clear: one compare finds both.
            let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let m = _mm_or_si128(
                _mm_or_si128(eq(v, b'"'), eq(v, b'\\')),
                _mm_or_si128(eq(folded, b'{'), eq(folded, b'}')),
            );
            _mm_movemask_epi8(m) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        structural_mask16_bytes(block)
    }
}

/// [`structural_mask16`] a byte at a time: the portable reference.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn structural_mask16_bytes(block: &[u8; 16]) -> u32 {
    block
        .iter()
        .enumerate()
        .fold(0, |m, (k, &c)| m | (u32::from(STRUCTURAL[c as usize]) << k))
}

/// A scalar token starting at `b[i]`: returns its end. Literals must be
/// exact; numbers are checked for their character set only.
#[inline]
fn scalar_end(b: &[u8], i: usize) -> Res<usize> {
    let mut j = i;
    while j < b.len() && !DELIM[b[j] as usize] {
        j += 1;
    }
    if j == b.len() {
        return Err(ExtractError::Truncated);
    }
    let tok = &b[i..j];
    let ok = match tok.first() {
        Some(b't') => tok == b"true",
        Some(b'f') => tok == b"false",
        Some(b'n') => tok == b"null",
        Some(b'-' | b'0'..=b'9') => tok
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')),
        _ => false,
    };
    if ok {
        Ok(j)
    } else {
        Err(ExtractError::NotJson)
    }
}

/// Any value starting at `b[i]` (not whitespace). Returns its end.
#[inline]
fn value_end(b: &[u8], i: usize) -> Res<usize> {
    match b[i] {
        b'"' => Ok(string_end(b, i)?),
        b'{' | b'[' => nested_end(b, i),
        _ => scalar_end(b, i),
    }
}

/// One member of an object, as seen by [`walk_object`].
struct Member {
    /// The key's content between the quotes, still escaped.
    key: Range<usize>,
    value: Range<usize>,
}

impl Member {
    #[inline]
    fn key_is(&self, b: &[u8], name: &str) -> bool {
        let raw = &b[self.key.clone()];
        if raw == name.as_bytes() {
            return true;
        }
        // An escaped spelling is at most six bytes per character.
        if raw.len() > 6 * name.len() || memchr::memchr(b'\\', raw).is_none() {
            return false;
        }
        let mut s = String::new();
        unescape_into(raw, &mut s).is_ok() && s == name
    }
}

/// Walks the object whose `{` is at `b[i]`, calling `f` for each member.
/// Returns the index just past its `}`.
fn walk_object(b: &[u8], i: usize, mut f: impl FnMut(&Member) -> Res<()>) -> Res<usize> {
    debug_assert_eq!(b[i], b'{');
    let mut i = skip_ws(b, i + 1);
    if i == b.len() {
        return Err(ExtractError::Truncated);
    }
    if b[i] == b'}' {
        return Ok(i + 1);
    }
    loop {
        if b[i] != b'"' {
            return Err(ExtractError::NotJson);
        }
        let kend = string_end(b, i)?;
        let key = i + 1..kend - 1;
        i = skip_ws(b, kend);
        if i == b.len() {
            return Err(ExtractError::Truncated);
        }
        if b[i] != b':' {
            return Err(ExtractError::NotJson);
        }
        i = skip_ws(b, i + 1);
        if i == b.len() {
            return Err(ExtractError::Truncated);
        }
        let vend = value_end(b, i)?;
        f(&Member {
            key,
            value: i..vend,
        })?;
        i = skip_ws(b, vend);
        if i == b.len() {
            return Err(ExtractError::Truncated);
        }
        match b[i] {
            b',' => {
                i = skip_ws(b, i + 1);
                if i == b.len() {
                    return Err(ExtractError::Truncated);
                }
            }
            b'}' => return Ok(i + 1),
            _ => return Err(ExtractError::NotJson),
        }
    }
}

/// Calls `f(n, value)` for each top-level member of the JSON object in `b`
/// whose key is spelled exactly `names[n]`, in order (so the last call for
/// a name is the last duplicate). Best effort and cheap, for reading
/// `usage` from answers: only structural bytes are visited (as in
/// [`nested_end`]) and nothing else is validated; a malformed body yields
/// the members found before the damage.
pub fn top_level_members<'a>(b: &'a [u8], names: &[&[u8]], mut f: impl FnMut(usize, &'a [u8])) {
    let start = skip_ws(b, 0);
    if b.get(start) != Some(&b'{') {
        return;
    }
    let mut depth = 0usize;
    let mut scan = Structural::new(b, start);
    while let Some(at) = scan.next() {
        match b[at] {
            b'"' if depth == 1 => {
                if let Some((which, value)) = member_named(b, at, names) {
                    f(which, &b[value.clone()]);
                    scan.seek(value.end);
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// `b[at]` opens a string at the top level of an object: when it is the
/// key `names[n]`, `n` and the span of its value.
fn member_named(b: &[u8], at: usize, names: &[&[u8]]) -> Option<(usize, Range<usize>)> {
    let key = b.get(at + 1..)?;
    // Most strings here are other keys and values: their length (where the
    // closing quote would be) and first byte rule them out before a compare.
    let (which, name) = names.iter().enumerate().find(|(_, name)| {
        key.get(name.len()) == Some(&b'"')
            && key.first() == name.first()
            && key[..name.len()].iter().eq(name.iter())
    })?;
    let colon = skip_ws(b, at + name.len() + 2);
    if b.get(colon) != Some(&b':') {
        return None;
    }
    let v = skip_ws(b, colon + 1);
    if v >= b.len() {
        return None;
    }
    Some((which, v..value_end(b, v).ok()?))
}

enum ModelState {
    Absent,
    Str(ModelField),
    NotStr,
}

/// Reads the top-level `model` and `stream` (and the `stream_options` span)
/// of a JSON object body. Leading whitespace and a UTF-8 BOM are skipped;
/// only whitespace may follow the object.
pub fn extract(body: &[u8]) -> Result<Fields, ExtractError> {
    scan(body, false)
}

/// Like [`extract`], for the first bytes of a body too large to hold:
/// when the prefix ends inside the object, the fields seen so far are
/// returned if `model` was among them, else `Truncated`.
pub fn extract_prefix(prefix: &[u8]) -> Result<Fields, ExtractError> {
    scan(prefix, true)
}

fn scan(body: &[u8], prefix: bool) -> Result<Fields, ExtractError> {
    let b = body;
    let mut i = 0;
    if b.starts_with(b"\xEF\xBB\xBF") {
        i = 3;
    }
    i = skip_ws(b, i);
    if i == b.len() || b[i] != b'{' {
        return Err(ExtractError::NotJson);
    }
    let start = i;
    let mut model = ModelState::Absent;
    let mut stream = false;
    let mut stream_options = None;
    let end = walk_object(b, start, |m| {
        // Most keys are none of the three: rule them out by length, unless
        // escaped (rare).
        let k = &b[m.key.clone()];
        if matches!(k.len(), 5 | 6 | 14) || (k.len() <= 84 && memchr::memchr(b'\\', k).is_some()) {
            if m.key_is(b, "model") {
                model = if b[m.value.start] == b'"' {
                    validate_string(&b[m.value.start + 1..m.value.end - 1])?;
                    ModelState::Str(ModelField {
                        span: m.value.clone(),
                        escaped: memchr::memchr(b'\\', &b[m.value.clone()]).is_some(),
                    })
                } else {
                    ModelState::NotStr
                };
            } else if m.key_is(b, "stream") {
                stream = &b[m.value.clone()] == b"true";
            } else if m.key_is(b, "stream_options") {
                stream_options = Some(m.value.clone());
            }
        }
        Ok(())
    });
    let end = match end {
        Err(ExtractError::Truncated) if prefix && matches!(model, ModelState::Str(_)) => b.len(),
        other => other?,
    };
    if !prefix && skip_ws(b, end) != b.len() {
        return Err(ExtractError::NotJson);
    }
    let model = match model {
        ModelState::Absent => None,
        ModelState::Str(f) => Some(f),
        ModelState::NotStr => return Err(ExtractError::ModelNotString),
    };
    Ok(Fields {
        model,
        stream,
        stream_options,
        object: start..end,
    })
}

fn hex4(raw: &[u8], i: usize) -> Result<u32, ()> {
    let h = raw.get(i..i + 4).ok_or(())?;
    let mut v = 0u32;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(()),
        };
        v = v * 16 + d as u32;
    }
    Ok(v)
}

/// JSON-unescapes the content of a string literal (without quotes).
/// Errors on invalid UTF-8, raw control characters, bad escapes and lone
/// surrogates.
fn unescape_into(raw: &[u8], out: &mut String) -> Result<(), ()> {
    let s = std::str::from_utf8(raw).map_err(|_| ())?;
    let mut rest = s;
    while let Some(p) = rest.find(|c: char| c == '\\' || c < ' ') {
        out.push_str(&rest[..p]);
        let r = rest.as_bytes();
        if r[p] != b'\\' {
            return Err(());
        }
        let (ch, used) = match r.get(p + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => {
                let hi = hex4(r, p + 2)?;
                match hi {
                    0xD800..=0xDBFF => {
                        if r.get(p + 6) != Some(&b'\\') || r.get(p + 7) != Some(&b'u') {
                            return Err(());
                        }
                        let lo = hex4(r, p + 8)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(());
                        }
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        (char::from_u32(c).ok_or(())?, 12)
                    }
                    0xDC00..=0xDFFF => return Err(()),
                    _ => (char::from_u32(hi).ok_or(())?, 6),
                }
            }
            _ => return Err(()),
        };
        out.push(ch);
        rest = &rest[p + used..];
    }
    out.push_str(rest);
    Ok(())
}

/// Checks a string literal's content without building the value.
fn validate_string(raw: &[u8]) -> Res<()> {
    if memchr::memchr(b'\\', raw).is_none() {
        // The common case: plain UTF-8 without control characters.
        if raw.iter().any(|&c| c < 0x20) || std::str::from_utf8(raw).is_err() {
            return Err(ExtractError::NotJson);
        }
        return Ok(());
    }
    let mut s = String::new();
    unescape_into(raw, &mut s).map_err(|_| ExtractError::NotJson)
}

/// Appends `s` as a JSON string literal, quotes included.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut from = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[from..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&b[from..]);
    out.push(b'"');
}

/// What [`rewrite_into`] changes in a body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rewrite<'s> {
    /// Replace the top-level model with this name (inserted first in the
    /// object when the body has none).
    pub model: Option<&'s str>,
    /// Make `stream_options.include_usage` true (OpenAI streaming requests).
    pub include_usage: bool,
}

enum Insert<'s> {
    Bytes(&'static [u8]),
    JsonString(&'s str),
}

struct Splice<'s> {
    at: Range<usize>,
    parts: [Option<Insert<'s>>; 3],
}

/// Whether the object spanning `obj` (braces included) has no members.
fn object_is_empty(b: &[u8], obj: &Range<usize>) -> bool {
    skip_ws(b, obj.start + 1) + 1 >= obj.end
}

/// Writes `body` with the edits of `rw` into `out` (cleared first), in one
/// pass: every byte not edited is copied verbatim. Returns whether the
/// client had asked for usage itself (`stream_options.include_usage` was
/// already `true`); always `false` when `rw.include_usage` is off.
///
/// `fields` must come from [`extract`] on this `body`.
pub fn rewrite_into(body: &[u8], fields: &Fields, rw: &Rewrite<'_>, out: &mut Vec<u8>) -> bool {
    // At most: model, stream_options, and several include_usage keys.
    let mut splices: Vec<Splice<'_>> = Vec::new();
    let open = fields.object.start + 1;
    let empty = object_is_empty(body, &fields.object);
    let mut head_members = 0; // members inserted right after `{`
    let mut client_asked = false;

    if let Some(m) = rw.model {
        match &fields.model {
            Some(f) => splices.push(Splice {
                at: f.span.clone(),
                parts: [Some(Insert::JsonString(m)), None, None],
            }),
            None => {
                splices.push(Splice {
                    at: open..open,
                    parts: [
                        Some(Insert::Bytes(b"\"model\":")),
                        Some(Insert::JsonString(m)),
                        None,
                    ],
                });
                head_members += 1;
            }
        }
    }
    if rw.include_usage {
        match &fields.stream_options {
            None => {
                splices.push(Splice {
                    at: open..open,
                    parts: [
                        Some(Insert::Bytes(
                            b"\"stream_options\":{\"include_usage\":true}",
                        )),
                        None,
                        None,
                    ],
                });
                head_members += 1;
            }
            Some(so) if body[so.start] == b'{' => {
                let mut last_true = None;
                let mut non_true = Vec::new();
                let walked = walk_object(body, so.start, |m| {
                    if m.key_is(body, "include_usage") {
                        let is_true = &body[m.value.clone()] == b"true";
                        last_true = Some(is_true);
                        if !is_true {
                            non_true.push(m.value.clone());
                        }
                    }
                    Ok(())
                });
                match (walked, last_true) {
                    (Ok(_), Some(true)) => client_asked = true,
                    (Ok(_), Some(false)) => {
                        for v in non_true {
                            splices.push(Splice {
                                at: v,
                                parts: [Some(Insert::Bytes(b"true")), None, None],
                            });
                        }
                    }
                    (Ok(_), None) => {
                        let at = so.start + 1;
                        let inner_empty = object_is_empty(body, so);
                        splices.push(Splice {
                            at: at..at,
                            parts: [
                                Some(Insert::Bytes(b"\"include_usage\":true")),
                                if inner_empty {
                                    None
                                } else {
                                    Some(Insert::Bytes(b","))
                                },
                                None,
                            ],
                        });
                    }
                    // Not reachable for a body that passed `extract`.
                    (Err(_), _) => splices.push(Splice {
                        at: so.clone(),
                        parts: [Some(Insert::Bytes(b"{\"include_usage\":true}")), None, None],
                    }),
                }
            }
            Some(so) => splices.push(Splice {
                at: so.clone(),
                parts: [Some(Insert::Bytes(b"{\"include_usage\":true}")), None, None],
            }),
        }
    }

    // Members inserted after `{` are separated by commas, and followed by
    // one unless the object was empty.
    if head_members > 0 {
        let mut seen = 0;
        for s in splices.iter_mut().filter(|s| s.at == (open..open)) {
            seen += 1;
            if seen < head_members || !empty {
                let slot = s.parts.iter_mut().find(|p| p.is_none()).unwrap();
                *slot = Some(Insert::Bytes(b","));
            }
        }
    }
    splices.sort_by_key(|s| (s.at.start, s.at.end));

    out.clear();
    let extra: usize = rw.model.map_or(0, |m| m.len() + 16) + 48;
    out.reserve(body.len() + extra);
    let mut pos = 0;
    for s in &splices {
        out.extend_from_slice(&body[pos..s.at.start]);
        for p in s.parts.iter().flatten() {
            match p {
                Insert::Bytes(b) => out.extend_from_slice(b),
                Insert::JsonString(m) => write_json_string(out, m),
            }
        }
        pos = s.at.end;
    }
    out.extend_from_slice(&body[pos..]);
    client_asked
}

/// Body with the top-level model string replaced: one splice, the rest
/// copied verbatim. `new_model` is JSON-escaped.
pub fn rewrite_model(body: &[u8], field: &ModelField, new_model: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + new_model.len() + 2);
    out.extend_from_slice(&body[..field.span.start]);
    write_json_string(&mut out, new_model);
    out.extend_from_slice(&body[field.span.end..]);
    out
}

/// For OpenAI streaming requests: the body with
/// `"stream_options":{"include_usage":true}` (inserted after the `{`, or
/// merged into an existing `stream_options` object, overriding a non-true
/// `include_usage`), and whether the client had asked for usage itself.
pub fn with_include_usage(body: &[u8], fields: &Fields) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let asked = rewrite_into(
        body,
        fields,
        &Rewrite {
            model: None,
            include_usage: true,
        },
        &mut out,
    );
    (out, asked)
}

// ---------------------------------------------------------------------------
// multipart/form-data

/// The `boundary` parameter of a `multipart/*` content type (quotes removed).
pub fn multipart_boundary(content_type: &[u8]) -> Option<&[u8]> {
    let mut parts = ParamIter::new(content_type);
    let media = trim(parts.next()?);
    if media.len() < 10 || !media[..10].eq_ignore_ascii_case(b"multipart/") {
        return None;
    }
    for p in parts {
        let (name, value) = split_param(p)?;
        if name.eq_ignore_ascii_case(b"boundary") {
            let v = unquote_raw(value);
            return if v.is_empty() || v.len() > 200 {
                None
            } else {
                Some(v)
            };
        }
    }
    None
}

/// Splits a header value on `;` outside quoted strings.
struct ParamIter<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> ParamIter<'a> {
    fn new(s: &'a [u8]) -> Self {
        ParamIter { rest: Some(s) }
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut quoted = false;
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b';' if !quoted => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(s)
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

fn split_param(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = memchr::memchr(b'=', p)?;
    Some((trim(&p[..eq]), trim(&p[eq + 1..])))
}

/// A parameter value without its quotes (escapes left as they are).
fn unquote_raw(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Compares a (possibly quoted, backslash-escaped) parameter value to `want`.
fn param_value_is(v: &[u8], want: &[u8]) -> bool {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        let inner = &v[1..v.len() - 1];
        if memchr::memchr(b'\\', inner).is_none() {
            return inner == want;
        }
        let mut it = inner.iter();
        let mut w = want.iter();
        while let Some(&c) = it.next() {
            let c = if c == b'\\' {
                match it.next() {
                    Some(&c) => c,
                    None => return false,
                }
            } else {
                c
            };
            if w.next() != Some(&c) {
                return false;
            }
        }
        w.next().is_none()
    } else {
        v == want
    }
}

/// Finds the next delimiter line (`--boundary` at a line start) at or after
/// `from`. Returns (index of the `--`, index of the line break before it
/// (`\r` or `\n`), or the `--` index itself at the start of the body).
fn next_delimiter(body: &[u8], finder: &memmem::Finder<'_>, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while at < body.len() {
        let k = at + finder.find(&body[at..])?;
        at = k + 1;
        if k < 2 || &body[k - 2..k] != b"--" {
            continue;
        }
        let dash = k - 2;
        if dash == 0 {
            return Some((0, 0));
        }
        if body[dash - 1] == b'\n' {
            let lb = if dash >= 2 && body[dash - 2] == b'\r' {
                dash - 2
            } else {
                dash - 1
            };
            return Some((dash, lb));
        }
    }
    None
}

/// For a multipart/form-data body: the content of the form field `name`,
/// if that part lies wholly within `body`.
pub fn multipart_field<'a>(body: &'a [u8], boundary: &[u8], name: &str) -> Option<&'a [u8]> {
    if boundary.is_empty() {
        return None;
    }
    let finder = memmem::Finder::new(boundary);
    let (mut dash, _) = next_delimiter(body, &finder, 0)?;
    loop {
        let after = dash + 2 + boundary.len();
        if body.get(after..after + 2) == Some(b"--") {
            return None; // close delimiter
        }
        // Rest of the delimiter line (transport padding), then headers.
        let nl = after + memchr::memchr(b'\n', body.get(after..)?)?;
        let headers_start = nl + 1;
        let (headers_end, content_start) = headers_end(body, headers_start)?;
        let wanted = part_is_named(&body[headers_start..headers_end], name.as_bytes());
        let (next_dash, content_end) = next_delimiter(body, &finder, content_start)?;
        if wanted {
            return Some(&body[content_start..content_end.max(content_start)]);
        }
        dash = next_dash;
    }
}

/// From the start of a part's headers: (end of the header block, start of
/// the content). Accepts CRLF or bare LF line ends.
fn headers_end(body: &[u8], start: usize) -> Option<(usize, usize)> {
    let mut line = start;
    loop {
        let rest = body.get(line..)?;
        if rest.starts_with(b"\r\n") {
            return Some((line, line + 2));
        }
        if rest.starts_with(b"\n") {
            return Some((line, line + 1));
        }
        line += memchr::memchr(b'\n', rest)? + 1;
    }
}

fn part_is_named(headers: &[u8], name: &[u8]) -> bool {
    for line in headers.split(|&c| c == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if !trim(&line[..colon]).eq_ignore_ascii_case(b"content-disposition") {
            continue;
        }
        let mut params = ParamIter::new(&line[colon + 1..]);
        if !params
            .next()
            .is_some_and(|d| trim(d).eq_ignore_ascii_case(b"form-data"))
        {
            return false;
        }
        for p in params {
            if let Some((k, v)) = split_param(p) {
                if k.eq_ignore_ascii_case(b"name") {
                    return param_value_is(v, name);
                }
            }
        }
        return false;
    }
    false
}

/// What [`multipart_scan`] found in a multipart/form-data body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultipartScan {
    /// Content span of the first part named as asked, when that part lies
    /// wholly within the scanned bytes.
    pub field: Option<Range<usize>>,
    /// The close delimiter was seen (always so for a whole body).
    pub closed: bool,
}

/// Why a multipart/form-data body is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultipartError {
    /// No `--boundary` delimiter line.
    NoDelimiter,
    /// A delimiter line with something other than padding after it.
    BadDelimiterLine,
    /// A part header line without `name: value`, or headers never ending.
    BadPartHeaders,
    /// A part without `Content-Disposition: form-data` (RFC 7578 §4.2).
    NotFormData,
    /// The body ends before the close delimiter.
    Unclosed,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultipartError::NoDelimiter => "no boundary delimiter in the body",
            MultipartError::BadDelimiterLine => "malformed boundary delimiter line",
            MultipartError::BadPartHeaders => "malformed part headers",
            MultipartError::NotFormData => "a part has no Content-Disposition: form-data",
            MultipartError::Unclosed => "the body ends before the closing boundary",
        })
    }
}

impl std::error::Error for MultipartError {}

/// Checks the structure of a multipart/form-data body (or, with `whole`
/// false, of the first bytes of one) and finds the part named `name`.
/// A prefix may end anywhere: what it holds must be well formed so far.
pub fn multipart_scan(
    body: &[u8],
    boundary: &[u8],
    name: &str,
    whole: bool,
) -> Result<MultipartScan, MultipartError> {
    let mut scan = MultipartScan::default();
    if boundary.is_empty() {
        return Err(MultipartError::NoDelimiter);
    }
    // Where a prefix runs out, the scan stops; a whole body must not.
    let cut = |e: MultipartError, scan: MultipartScan| if whole { Err(e) } else { Ok(scan) };
    let finder = memmem::Finder::new(boundary);
    let Some((mut dash, _)) = next_delimiter(body, &finder, 0) else {
        return Err(MultipartError::NoDelimiter);
    };
    loop {
        let after = dash + 2 + boundary.len();
        let Some(two) = body.get(after..after + 2) else {
            return cut(MultipartError::Unclosed, scan);
        };
        if two == b"--" {
            scan.closed = true;
            return Ok(scan);
        }
        let Some(nl) = memchr::memchr(b'\n', &body[after..]).map(|n| after + n) else {
            return cut(MultipartError::Unclosed, scan);
        };
        let padding = &body[after..nl];
        let padding = padding.strip_suffix(b"\r").unwrap_or(padding);
        if !padding.iter().all(|&c| c == b' ' || c == b'\t') {
            return Err(MultipartError::BadDelimiterLine);
        }
        let headers_start = nl + 1;
        let Some((headers_stop, content_start)) = headers_end(body, headers_start) else {
            return cut(MultipartError::BadPartHeaders, scan);
        };
        let headers = &body[headers_start..headers_stop];
        check_part_headers(headers)?;
        let wanted = scan.field.is_none() && part_is_named(headers, name.as_bytes());
        let Some((next_dash, content_end)) = next_delimiter(body, &finder, content_start) else {
            return cut(MultipartError::Unclosed, scan);
        };
        if wanted {
            scan.field = Some(content_start..content_end.max(content_start));
        }
        dash = next_dash;
    }
}

/// Each header line is `name: value` with a token name, and one of them
/// is `Content-Disposition: form-data`.
fn check_part_headers(headers: &[u8]) -> Result<(), MultipartError> {
    let mut form_data = false;
    for line in headers.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = memchr::memchr(b':', line).ok_or(MultipartError::BadPartHeaders)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&c| c.is_ascii_graphic()) {
            return Err(MultipartError::BadPartHeaders);
        }
        if name.eq_ignore_ascii_case(b"content-disposition") {
            let kind = ParamIter::new(&line[colon + 1..]).next().map(trim);
            form_data = kind.is_some_and(|k| k.eq_ignore_ascii_case(b"form-data"));
        }
    }
    if form_data {
        Ok(())
    } else {
        Err(MultipartError::NotFormData)
    }
}

/// The body with the content `span` of one part replaced by `value`: one
/// splice, the rest copied verbatim.
pub fn splice(body: &[u8], span: &Range<usize>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(value);
    out.extend_from_slice(&body[span.end..]);
    out
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
