//! What a run measures, per thread, merged at the end: HDR histograms of
//! latency, TTFT, inter-token latency and time per output token (all in
//! microseconds), request and token counts, and errors by kind.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value a histogram keeps exactly: one hour in microseconds.
/// Larger values are recorded as this.
const MAX_US: u64 = 3_600_000_000;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be made.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection failed or closed before the answer was complete.
    Io,
    /// The answer was not valid HTTP/1.x.
    Http,
    /// An HTTP status other than 2xx.
    Status(u16),
    /// A streaming request answered without `text/event-stream`.
    NotSse,
    /// An error event inside a stream (after a 200).
    StreamError,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Io => f.write_str("io"),
            ErrorKind::Http => f.write_str("http"),
            ErrorKind::Status(s) => write!(f, "status_{s}"),
            ErrorKind::NotSse => f.write_str("not_sse"),
            ErrorKind::StreamError => f.write_str("stream_error"),
        }
    }
}

/// A histogram of microseconds.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    h.saturating_record(us);
}

/// Everything one thread (or, merged, the whole run) measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Intended send time to the end of the answer, successful requests.
    pub latency: Histogram<u64>,
    /// Intended send time to the first content event of a stream.
    pub ttft: Histogram<u64>,
    /// Gaps between content events of a stream.
    pub itl: Histogram<u64>,
    /// (last content - first content) / (output tokens - 1), per stream.
    pub tpot: Histogram<u64>,
    /// Open loop: how late each request left against its intended send
    /// time (the timer's tick, waiting for a connection, or a generator
    /// that cannot keep up).
    pub send_lag: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests whose answer reported usage (the rest count content events).
    pub usage_reported: u64,
    /// Requests sent whose answer had not ended when the run stopped.
    pub unfinished: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(3),
            ttft: histogram(3),
            itl: histogram(3),
            tpot: histogram(3),
            send_lag: histogram(3),
            ok: 0,
            errors: BTreeMap::new(),
            input_tokens: 0,
            output_tokens: 0,
            usage_reported: 0,
            unfinished: 0,
        }
    }
}

impl Stats {
    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests that ended, well or not.
    pub fn requests(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Adds another thread's measurements.
    pub fn merge(&mut self, o: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.ttft.add(&o.ttft);
        let _ = self.itl.add(&o.itl);
        let _ = self.tpot.add(&o.tpot);
        let _ = self.send_lag.add(&o.send_lag);
        self.ok += o.ok;
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_insert(0) += n;
        }
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.usage_reported += o.usage_reported;
        self.unfinished += o.unfinished;
    }

    /// Errors by kind, by name.
    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        self.errors
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect()
    }
}

/// A distribution summary in milliseconds, as the report shows it. Empty
/// histograms (no streams, say) give `null`s and `count: 0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
pub struct Summary {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub count: u64,
}

/// Microseconds to milliseconds, to the microsecond.
fn ms(us: f64) -> f64 {
    us.round() / 1000.0
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let q = |q: f64| Some(ms(h.value_at_quantile(q) as f64));
        Summary {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: Some(ms(h.max() as f64)),
            mean: Some(ms(h.mean())),
            count: h.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=100u64 {
            record(&mut a.latency, Duration::from_millis(i));
            record(&mut b.latency, Duration::from_millis(100 + i));
        }
        a.ok = 100;
        b.ok = 90;
        a.error(ErrorKind::Status(503));
        b.error(ErrorKind::Status(503));
        b.error(ErrorKind::Timeout);
        a.output_tokens = 7;
        b.output_tokens = 5;
        a.merge(&b);
        assert_eq!(a.ok, 190);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.requests(), 193);
        assert_eq!(a.output_tokens, 12);
        let by: Vec<(String, u64)> = a.errors_by_kind().into_iter().collect();
        assert_eq!(
            by,
            [("status_503".to_string(), 2), ("timeout".to_string(), 1)]
        );
        let s = Summary::of(&a.latency);
        assert_eq!(s.count, 200);
        // Merged: the median is ~100 ms, the p99 ~198 ms (3 significant
        // figures), the max 200 ms.
        assert!((s.p50.unwrap() - 100.0).abs() < 0.2, "{s:?}");
        assert!((s.p99.unwrap() - 198.0).abs() < 0.3, "{s:?}");
        assert!((s.max.unwrap() - 200.0).abs() < 0.2, "{s:?}");
        assert!((s.mean.unwrap() - 100.5).abs() < 0.2, "{s:?}");
    }

    #[test]
    fn empty_and_out_of_range() {
        let s = Summary::of(&histogram(3));
        assert_eq!(s.count, 0);
        assert_eq!(s.p50, None);
        let mut h = histogram(3);
        record(&mut h, Duration::from_secs(10_000));
        record(&mut h, Duration::ZERO);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_US);
    }
}
