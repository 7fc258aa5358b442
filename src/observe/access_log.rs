//! The access log: one JSON line per request. Workers format lines into
//! their own buffer and hand whole buffers to a writer thread over a
//! bounded channel; when the writer falls behind, a worker drops the
//! buffer and counts its lines instead of waiting.

use crate::extract::write_json_string;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where lines go (`[log] access`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
    Off,
}

impl Destination {
    pub fn parse(s: &str) -> Destination {
        match s {
            "stdout" | "-" => Destination::Stdout,
            "off" | "" => Destination::Off,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

/// Buffers in flight to the writer; a worker's buffer holds ~200 ms of lines.
const QUEUE: usize = 256;

pub enum Msg {
    Lines(Vec<u8>),
    /// Reopen the file (after logrotate moved it).
    Reopen,
    Stop,
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Opens the destination and starts the writer thread.
pub fn start(
    dest: &Destination,
) -> std::io::Result<Option<(Sender<Msg>, std::thread::JoinHandle<()>)>> {
    let mut out: Box<dyn Write + Send> = match dest {
        Destination::Off => return Ok(None),
        Destination::Stdout => Box::new(std::io::stdout()),
        Destination::File(path) => Box::new(open(path)?),
    };
    let dest = dest.clone();
    let (tx, rx): (Sender<Msg>, Receiver<Msg>) = crossbeam_channel::bounded(QUEUE);
    let thread = std::thread::Builder::new()
        .name("modelgate-log".into())
        .spawn(move || {
            let mut failing = false;
            for msg in rx {
                match msg {
                    Msg::Lines(lines) => {
                        // Reported once per run of failures, not per batch.
                        match out.write_all(&lines).and_then(|_| out.flush()) {
                            Err(e) if !failing => {
                                tracing::error!("access log: {e}");
                                failing = true;
                            }
                            Err(_) => {}
                            Ok(()) => failing = false,
                        }
                    }
                    Msg::Reopen => {
                        if let Destination::File(path) = &dest {
                            match open(path) {
                                Ok(f) => out = Box::new(f),
                                Err(e) => {
                                    tracing::error!("access log: reopen {}: {e}", path.display())
                                }
                            }
                        }
                    }
                    Msg::Stop => return,
                }
            }
        })?;
    Ok(Some((tx, thread)))
}

/// A worker's unsent lines.
#[derive(Default)]
pub struct Buffer {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

/// Flush early past this many bytes.
pub const FLUSH_BYTES: usize = 64 * 1024;

impl Buffer {
    /// Hands the buffered lines to the writer; returns how many were
    /// dropped because it is behind.
    pub fn send(&mut self, tx: &Sender<Msg>) -> u64 {
        if self.lines == 0 {
            return 0;
        }
        let lines = std::mem::replace(&mut self.lines, 0);
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(8 * 1024));
        match tx.try_send(Msg::Lines(bytes)) {
            Ok(()) => 0,
            Err(TrySendError::Full(Msg::Lines(mut b)))
            | Err(TrySendError::Disconnected(Msg::Lines(mut b))) => {
                b.clear();
                self.bytes = b;
                lines
            }
            Err(_) => lines,
        }
    }
}

/// The fields of one line (PRODUCT.md §9), plus `stream`, `error` and
/// `trace_id`.
pub struct Line<'a> {
    pub ts: SystemTime,
    pub request_id: &'a str,
    pub model_api: Option<&'a str>,
    pub route: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub service: Option<&'a str>,
    pub model: Option<&'a str>,
    pub status: u16,
    pub duration: Duration,
    pub first_packet: Option<Duration>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub fallbacks: usize,
    pub stream: bool,
    pub error: Option<&'a str>,
    pub trace_id: &'a str,
    pub request_body: Option<&'a [u8]>,
    pub response_body: Option<&'a [u8]>,
}

fn opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => write_json_string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// `12.345` (ms, three decimals), without float formatting.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros().min(u64::MAX as u128) as u64;
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    thousandths(out, (micros % 1000) as u16);
}

/// `.045` for 45: a dot and three digits.
fn thousandths(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(&[
        b'.',
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

impl Line<'_> {
    /// Appends the line, newline included.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        rfc3339(out, self.ts);
        out.extend_from_slice(b"\",\"request_id\":");
        write_json_string(out, self.request_id);
        out.extend_from_slice(b",\"model_api\":");
        opt_str(out, self.model_api);
        out.extend_from_slice(b",\"route\":");
        opt_str(out, self.route);
        out.extend_from_slice(b",\"consumer\":");
        opt_str(out, self.consumer);
        out.extend_from_slice(b",\"service\":");
        opt_str(out, self.service);
        out.extend_from_slice(b",\"model\":");
        opt_str(out, self.model);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"duration_ms\":");
        millis(out, self.duration);
        out.extend_from_slice(b",\"first_packet_ms\":");
        match self.first_packet {
            Some(d) => millis(out, d),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"input_tokens\":");
        opt_u64(out, self.input_tokens);
        out.extend_from_slice(b",\"output_tokens\":");
        opt_u64(out, self.output_tokens);
        out.extend_from_slice(b",\"fallbacks\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.fallbacks).as_bytes());
        out.extend_from_slice(if self.stream {
            b",\"stream\":true"
        } else {
            b",\"stream\":false"
        });
        out.extend_from_slice(b",\"error\":");
        opt_str(out, self.error);
        out.extend_from_slice(b",\"trace_id\":");
        write_json_string(out, self.trace_id);
        for (name, body) in [
            (&b",\"request_body\":"[..], self.request_body),
            (&b",\"response_body\":"[..], self.response_body),
        ] {
            if let Some(body) = body {
                out.extend_from_slice(name);
                write_json_string(out, &String::from_utf8_lossy(body));
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `2024-05-01T12:00:00.123Z`. The text up to the seconds is kept per
/// thread and remade only when the second changes.
pub fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (held, mut text) = SECOND.get();
    if held != secs {
        let mut v = Vec::with_capacity(19);
        date_time(&mut v, secs);
        text.copy_from_slice(&v[..19]);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    thousandths(out, d.subsec_millis() as u16);
    out.push(b'Z');
}

/// `2024-05-01T12:00:00` for seconds since the epoch.
fn date_time(out: &mut Vec<u8>, secs: u64) {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let at = |s: u64, ms: u64| {
            let mut v = Vec::new();
            rfc3339(&mut v, UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
            String::from_utf8(v).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_714_564_800, 123), "2024-05-01T12:00:00.123Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        // The same second again (held text), then the next.
        assert_eq!(at(4_102_444_799, 7), "2099-12-31T23:59:59.007Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        let ms = |us: u64| {
            let mut v = Vec::new();
            millis(&mut v, Duration::from_micros(us));
            String::from_utf8(v).unwrap()
        };
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(2_537), "2.537");
        assert_eq!(ms(61_000_050), "61000.050");
    }

    #[test]
    fn a_line_is_one_json_object() {
        let line = Line {
            ts: UNIX_EPOCH,
            request_id: "r\"1",
            model_api: Some("chat"),
            route: Some("create-chat-completion"),
            consumer: None,
            service: Some("openai"),
            model: Some("gpt-4o"),
            status: 200,
            duration: Duration::from_micros(12_345),
            first_packet: Some(Duration::from_millis(4)),
            input_tokens: Some(10),
            output_tokens: None,
            fallbacks: 1,
            stream: true,
            error: None,
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            request_body: Some(b"{\"a\":\"\xff\"}"),
            response_body: None,
        };
        let mut out = Vec::new();
        line.write(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request_id"], "r\"1");
        assert_eq!(v["consumer"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["first_packet_ms"], 4.0);
        assert_eq!(v["input_tokens"], 10);
        assert_eq!(v["output_tokens"], serde_json::Value::Null);
        assert_eq!(v["fallbacks"], 1);
        assert_eq!(v["request_body"], "{\"a\":\"\u{fffd}\"}");
        assert!(v.get("response_body").is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut b = Buffer::default();
        for round in 0..3u64 {
            b.bytes.extend_from_slice(b"{}\n{}\n");
            b.lines += 2;
            let dropped = b.send(&tx);
            assert_eq!(dropped, if round == 0 { 0 } else { 2 });
        }
        assert_eq!(rx.len(), 1);
        assert_eq!(b.lines, 0);
    }
}
