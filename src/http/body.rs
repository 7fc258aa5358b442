//! Message bodies: a strict, incremental, zero-copy chunked decoder
//! (RFC 9112 §7.1), the chunk framing writer, and a Content-Length helper.
//!
//! The decoder never copies payload: `decode` hands out slices of its input.
//! It keeps only a few integers of state, so input may be split anywhere.

use std::fmt;

/// The last chunk with an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// What follows the data of every chunk.
pub const CHUNK_DATA_END: &[u8] = b"\r\n";

/// Longest chunk-size line (size, extensions, excluding CRLF) accepted.
pub const MAX_CHUNK_LINE: u32 = 4096;
/// Largest trailer section (from after the last chunk's size line to the
/// final CRLF included) accepted.
pub const MAX_TRAILER_BYTES: u32 = 8 * 1024;

/// Why a chunked body is malformed. Every one of them ends the message: the
/// connection cannot be reused (400 for a request body; for a response body
/// the stream to the client is ended with an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk size is not 1+ hex digits, overflows 64 bits, or is
    /// followed by something other than `;` or CRLF.
    InvalidSize,
    /// A chunk extension is not `;token[=token|quoted-string]`, holds bare
    /// CR/LF or control bytes, or the size line exceeds [`MAX_CHUNK_LINE`].
    InvalidExtension,
    /// A line (size line, chunk data, trailer, final line) does not end in
    /// CRLF exactly.
    MissingCrlf,
    /// The decoded payload would exceed `max_total` (413).
    TooLarge,
    /// The trailer section exceeds [`MAX_TRAILER_BYTES`].
    TrailerTooLarge,
    /// A trailer line is not `token ":" field-value`.
    InvalidTrailer,
}

impl ChunkError {
    /// The status to answer a client whose request body failed this way.
    pub fn status(&self) -> u16 {
        match self {
            ChunkError::TooLarge => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::InvalidExtension => "invalid chunk extension",
            ChunkError::MissingCrlf => "missing CRLF in chunked body",
            ChunkError::TooLarge => "chunked body too large",
            ChunkError::TrailerTooLarge => "chunked trailer section too large",
            ChunkError::InvalidTrailer => "invalid trailer field",
        })
    }
}

impl std::error::Error for ChunkError {}

/// What one [`ChunkedDecoder::decode`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used. All of the input unless `done`: then the bytes
    /// from `consumed` on belong to the next message.
    pub consumed: usize,
    /// The final CRLF of the body has been read.
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits.
    Size,
    /// After `;`: expecting an extension name.
    ExtNameStart,
    ExtName,
    /// After `=`: expecting a token or a quoted-string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,
    /// After the closing quote.
    ExtAfterQuoted,
    /// CR of the size line seen, expecting LF.
    SizeLf,
    /// In chunk data; `size` bytes remain.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Incremental decoder of a chunked body. Feed it input as it arrives; it
/// calls back with payload slices borrowed from the input.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    max_total: u64,
    total: u64,
    /// Chunk size being read, then the data bytes left in the chunk.
    size: u64,
    line_len: u32,
    trailer_len: u32,
}

impl ChunkedDecoder {
    /// A decoder that refuses more than `max_total` payload bytes in all.
    pub fn new(max_total: u64) -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            max_total,
            total: 0,
            size: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// Whether the whole body (last chunk, trailers, final CRLF) was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes decoded so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Feeds `input`; calls `on_data` with each non-empty slice of decoded
    /// payload (borrowed from `input`). Returns how many input bytes were
    /// consumed: all of them unless the body ended, in which case the bytes
    /// after its final CRLF belong to the next message. After an error the
    /// decoder must not be used again (the connection is done).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<Progress, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Data => {
                    let take = self.size.min((input.len() - i) as u64) as usize;
                    on_data(&input[i..i + take]);
                    i += take;
                    self.size -= take as u64;
                    self.total += take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Done => break,
                _ => {
                    self.step(input[i])?;
                    i += 1;
                }
            }
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    #[inline]
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        match self.state {
            SizeStart | Size | ExtNameStart | ExtName | ExtValueStart | ExtToken | ExtQuoted
            | ExtQuotedPair | ExtAfterQuoted => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE && b != b'\r' {
                    return Err(if matches!(self.state, SizeStart | Size) {
                        ChunkError::InvalidSize
                    } else {
                        ChunkError::InvalidExtension
                    });
                }
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_BYTES {
                    return Err(ChunkError::TrailerTooLarge);
                }
            }
            SizeLf | Data | DataCr | DataLf | Done => {}
        }
        self.state = match self.state {
            SizeStart => match hex_value(b) {
                Some(d) => {
                    self.size = u64::from(d);
                    Size
                }
                None => return Err(ChunkError::InvalidSize),
            },
            Size => match hex_value(b) {
                Some(d) => {
                    if self.size > u64::MAX >> 4 {
                        return Err(ChunkError::InvalidSize);
                    }
                    self.size = (self.size << 4) | u64::from(d);
                    Size
                }
                None => {
                    let next = match b {
                        b';' => ExtNameStart,
                        b'\r' => SizeLf,
                        _ => return Err(ChunkError::InvalidSize),
                    };
                    // `total` counts every completed chunk here.
                    if self.size > self.max_total - self.total {
                        return Err(ChunkError::TooLarge);
                    }
                    next
                }
            },
            ExtNameStart => {
                if !is_tchar(b) {
                    return Err(ChunkError::InvalidExtension);
                }
                ExtName
            }
            ExtName => match b {
                b'=' => ExtValueStart,
                b';' => ExtNameStart,
                b'\r' => SizeLf,
                _ if is_tchar(b) => ExtName,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtValueStart => match b {
                b'"' => ExtQuoted,
                _ if is_tchar(b) => ExtToken,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtToken => match b {
                b';' => ExtNameStart,
                b'\r' => SizeLf,
                _ if is_tchar(b) => ExtToken,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtQuoted => match b {
                b'"' => ExtAfterQuoted,
                b'\\' => ExtQuotedPair,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => ExtQuoted,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtQuotedPair => match b {
                b'\t' | b' '..=0x7e | 0x80..=0xff => ExtQuoted,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtAfterQuoted => match b {
                b';' => ExtNameStart,
                b'\r' => SizeLf,
                _ => return Err(ChunkError::InvalidExtension),
            },
            SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                self.line_len = 0;
                if self.size == 0 {
                    self.trailer_len = 0;
                    TrailerStart
                } else {
                    Data
                }
            }
            DataCr => {
                if b != b'\r' {
                    return Err(ChunkError::MissingCrlf);
                }
                DataLf
            }
            DataLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                SizeStart
            }
            TrailerStart => match b {
                b'\r' => FinalLf,
                _ if is_tchar(b) => TrailerName,
                _ => return Err(ChunkError::InvalidTrailer),
            },
            TrailerName => match b {
                b':' => TrailerValue,
                _ if is_tchar(b) => TrailerName,
                _ => return Err(ChunkError::InvalidTrailer),
            },
            TrailerValue => match b {
                b'\r' => TrailerLf,
                b'\t' | b' '..=0x7e | 0x80..=0xff => TrailerValue,
                _ => return Err(ChunkError::InvalidTrailer),
            },
            TrailerLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                TrailerStart
            }
            FinalLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                Done
            }
            // `decode` handles these without calling `step`.
            Data | Done => unreachable!("step in {:?}", self.state),
        };
        Ok(())
    }
}

/// Appends the size line of a chunk of `len` bytes (`{len:x}\r\n`). Write
/// the data and [`CHUNK_DATA_END`] after it; end the body with
/// [`LAST_CHUNK`]. `len` must not be 0 (that is the last chunk).
pub fn write_chunk_header(len: usize, out: &mut Vec<u8>) {
    debug_assert!(len > 0, "a zero-length chunk ends the body: use LAST_CHUNK");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 18];
    let mut i = 16;
    let mut n = len;
    loop {
        i -= 1;
        tmp[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    tmp[16] = b'\r';
    tmp[17] = b'\n';
    out.extend_from_slice(&tmp[i..]);
}

/// A Content-Length body: tells which part of the input belongs to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthBody {
    remaining: u64,
}

impl LengthBody {
    pub fn new(len: u64) -> Self {
        LengthBody { remaining: len }
    }

    /// Body bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Splits `input` into (body bytes, bytes after the body) and counts the
    /// body bytes as read.
    pub fn split<'a>(&mut self, input: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let take = self.remaining.min(input.len() as u64) as usize;
        self.remaining -= take as u64;
        input.split_at(take)
    }
}

#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// tchar (RFC 9110 §5.6.2).
#[inline]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` in one call: (payload, progress).
    fn whole(input: &[u8], max: u64) -> Result<(Vec<u8>, Progress), ChunkError> {
        let mut d = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let p = d.decode(input, |s| out.extend_from_slice(s))?;
        assert_eq!(d.is_done(), p.done);
        assert_eq!(d.total(), out.len() as u64);
        Ok((out, p))
    }

    /// Decodes `input` fed in the pieces given by `cuts`; returns the
    /// payload and the absolute end offset (when done).
    fn pieces(
        input: &[u8],
        cuts: &[usize],
        max: u64,
    ) -> Result<(Vec<u8>, Option<usize>), ChunkError> {
        let mut d = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            let p = d.decode(&input[start..end], |s| {
                assert!(!s.is_empty());
                out.extend_from_slice(s)
            })?;
            if p.done {
                return Ok((out, Some(start + p.consumed)));
            }
            assert_eq!(p.consumed, end - start);
            start = end;
        }
        Ok((out, None))
    }

    fn expect_same_everywhere(
        input: &[u8],
        max: u64,
    ) -> Result<(Vec<u8>, Option<usize>), ChunkError> {
        let reference = pieces(input, &[], max);
        // Every single split point.
        for k in 0..=input.len() {
            assert_eq!(pieces(input, &[k], max), reference, "split at {k}");
        }
        // Byte by byte.
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(pieces(input, &all, max), reference, "byte by byte");
        // Random splits (a small LCG: deterministic, no extra crate).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ input.len() as u64;
        for _ in 0..200 {
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                at += 1 + (seed >> 33) as usize % 7;
                if at >= input.len() {
                    break;
                }
                cuts.push(at);
            }
            assert_eq!(pieces(input, &cuts, max), reference, "cuts {cuts:?}");
        }
        reference
    }

    #[test]
    fn decodes_and_stops_at_the_end() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        let (out, p) = whole(body, u64::MAX).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(
            p,
            Progress {
                consumed: body.len() - 4,
                done: true
            }
        );
        assert_eq!(
            expect_same_everywhere(body, u64::MAX).unwrap(),
            (out, Some(body.len() - 4))
        );
    }

    #[test]
    fn zero_copy_slices() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new(100);
        let mut ptrs = Vec::new();
        d.decode(body, |s| ptrs.push((s.as_ptr(), s.len())))
            .unwrap();
        assert_eq!(ptrs, vec![(body[3..].as_ptr(), 10)]);
    }

    #[test]
    fn valid_bodies_split_anywhere() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"0\r\n\r\n", b""),
            (b"000\r\n\r\n", b""),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"a\r\n0123456789\r\n00\r\n\r\n", b"0123456789"),
            (b"1e\r\nall your base are belong to us\r\n0\r\n\r\n", b"all your base are belong to us"),
            (b"5;ilovew3;somuchlove=aretheseparametersfor;another=withvalue\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"5;ilovew3=\"I \\\"love\\\"; \\\\extensions\\\\\";somuchlove=\"aretheseparametersfor\";blah;foo=bar\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n", b"hello world"),
            (b"3;e=\"\"\r\nabc\r\n0;last\r\nX:\r\nY: \t v \r\n\r\n", b"abc"),
            (b"00000000000000000000003\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),
        ];
        for (input, payload) in cases {
            let (out, end) = expect_same_everywhere(input, 1 << 20).unwrap();
            assert_eq!(&out[..], *payload, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(end, Some(input.len()));
        }
    }

    #[test]
    fn incomplete_is_not_an_error() {
        for input in [
            &b""[..],
            b"5",
            b"5\r",
            b"5\r\nhel",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n0\r\n",
            b"5;a=\"x",
            b"0\r\nX: y\r\n",
        ] {
            let (_, p) = whole(input, 100).unwrap();
            assert_eq!(
                p,
                Progress {
                    consumed: input.len(),
                    done: false
                }
            );
        }
    }

    #[test]
    fn invalid_sizes() {
        for input in [
            &b"\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"a \r\n0123456789\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"g\r\n",
            b"2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n",
            b"3 \n  \r\nfoo\r\n\r\n",
            b"3\r\nfoo\r\n\r\n",
            b"10000000000000000\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert_eq!(
                expect_same_everywhere(input, u64::MAX),
                Err(ChunkError::InvalidSize),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn invalid_extensions() {
        for input in [
            &b"2;\r\naa\r\n0\r\n\r\n"[..],
            b"2;;a\r\naa\r\n",
            b"2; a\r\naa\r\n",
            b"2;a \r\naa\r\n",
            b"2;a=\r\naa\r\n",
            b"2;a=b c\r\naa\r\n",
            b"2;a=\"b\r\naa\r\n",
            b"2;a=\"b\"c\r\naa\r\n",
            b"2;a=\"b\x01\"\r\naa\r\n",
            b"2;a=\"\\\x7f\"\r\naa\r\n",
            b"2;a\x00\r\naa\r\n",
            b"2;a\nb\r\naa\r\n",
            b"5;ilovew3=\"abc\";somuchlove=\"def; ghi\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n",
            b"2;a=(b)\r\naa\r\n",
        ] {
            assert_eq!(expect_same_everywhere(input, u64::MAX), Err(ChunkError::InvalidExtension), "{:?}", String::from_utf8_lossy(input));
        }
        // A size line past the bound.
        let mut long = b"2;a=".to_vec();
        long.resize(MAX_CHUNK_LINE as usize + 10, b'x');
        assert_eq!(whole(&long, u64::MAX), Err(ChunkError::InvalidExtension));
        let mut long = vec![b'0'; MAX_CHUNK_LINE as usize + 1];
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(whole(&long, u64::MAX), Err(ChunkError::InvalidSize));
        let mut ok = vec![b'0'; MAX_CHUNK_LINE as usize];
        ok.extend_from_slice(b"\r\n\r\n");
        assert!(whole(&ok, u64::MAX).unwrap().1.done);
    }

    #[test]
    fn missing_crlf() {
        for input in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\rhello",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r0\r\n\r\n",
            b"5;a\nhello",
            b"0\r\n\rX",
            b"0\r\n\n",
            b"0\r\nX: y\rZ",
            b"0\r\nX: y\n\r\n",
        ] {
            let r = expect_same_everywhere(input, u64::MAX);
            assert!(
                matches!(
                    r,
                    Err(ChunkError::MissingCrlf)
                        | Err(ChunkError::InvalidSize)
                        | Err(ChunkError::InvalidExtension)
                        | Err(ChunkError::InvalidTrailer)
                ),
                "{:?}: {r:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(whole(b"5\r\nhelloX", 100), Err(ChunkError::MissingCrlf));
        assert_eq!(whole(b"5\r\nhello\r\r", 100), Err(ChunkError::MissingCrlf));
        assert_eq!(whole(b"5\rX", 100), Err(ChunkError::MissingCrlf));
        assert_eq!(whole(b"0\r\n\rX", 100), Err(ChunkError::MissingCrlf));
    }

    #[test]
    fn invalid_trailers() {
        for input in [
            &b"0\r\n X: y\r\n\r\n"[..],
            b"0\r\nX : y\r\n\r\n",
            b"0\r\nX\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\nX: a\r\n b\r\n\r\n",
            b"0\r\n: y\r\n\r\n",
        ] {
            assert_eq!(
                expect_same_everywhere(input, u64::MAX),
                Err(ChunkError::InvalidTrailer),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut big = b"0\r\nX: ".to_vec();
        big.resize(MAX_TRAILER_BYTES as usize + 10, b'v');
        assert_eq!(whole(&big, u64::MAX), Err(ChunkError::TrailerTooLarge));
        let mut fits = b"0\r\nX: ".to_vec();
        fits.resize(MAX_TRAILER_BYTES as usize - 4, b'v');
        fits.extend_from_slice(b"\r\n\r\n");
        assert!(whole(&fits, u64::MAX).unwrap().1.done);
    }

    #[test]
    fn too_large() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert!(whole(body, 11).is_ok());
        assert_eq!(expect_same_everywhere(body, 10), Err(ChunkError::TooLarge));
        assert_eq!(
            whole(b"ffffffffffffffff\r\n", u64::MAX - 1),
            Err(ChunkError::TooLarge)
        );
        assert!(!whole(b"ffffffffffffffff\r\n", u64::MAX).unwrap().1.done);
        assert_eq!(ChunkError::TooLarge.status(), 413);
        assert_eq!(ChunkError::MissingCrlf.status(), 400);
    }

    #[test]
    fn done_decoder_consumes_nothing() {
        let mut d = ChunkedDecoder::new(10);
        let p = d.decode(b"0\r\n\r\nGET", |_| panic!("no data")).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 5,
                done: true
            }
        );
        let p = d.decode(b"GET", |_| panic!("no data")).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn chunk_header_writer_round_trips() {
        for len in [
            1usize,
            9,
            10,
            15,
            16,
            255,
            4096,
            16384,
            0xdead_beef,
            usize::MAX,
        ] {
            let mut out = b"x".to_vec();
            write_chunk_header(len, &mut out);
            assert_eq!(out, format!("x{len:x}\r\n").into_bytes());
        }
        let mut wire = Vec::new();
        for part in [
            &b"hello"[..],
            b" ",
            b"world, this is a longer chunk of text",
        ] {
            write_chunk_header(part.len(), &mut wire);
            wire.extend_from_slice(part);
            wire.extend_from_slice(CHUNK_DATA_END);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let (out, p) = whole(&wire, 1000).unwrap();
        assert_eq!(out, b"hello world, this is a longer chunk of text");
        assert_eq!(p.consumed, wire.len());
    }

    #[test]
    fn length_body() {
        let mut b = LengthBody::new(5);
        assert_eq!(b.split(b"hel"), (&b"hel"[..], &b""[..]));
        assert_eq!(b.remaining(), 2);
        assert_eq!(b.split(b"loGET /"), (&b"lo"[..], &b"GET /"[..]));
        assert!(b.is_done());
        assert_eq!(b.split(b"x"), (&b""[..], &b"x"[..]));
    }
}
