//! The results: the JSON report (PRODUCT.md §10 names the fields every
//! report has), the final table on stdout, and `--compare A.json B.json`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::run::Outcome;
use super::stats::Summary;

/// One run's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub url: String,
    pub api: String,
    /// `open` (`--rate`) or `closed` (`--concurrency`).
    pub mode: String,
    /// The offered rate (open loop), requests/s.
    pub rate: Option<f64>,
    pub arrivals: Option<String>,
    pub concurrency: Option<usize>,
    pub stream: bool,
    pub threads: usize,
    /// The sending window, seconds.
    pub duration_s: f64,
    /// From the start to the last answer, seconds.
    pub elapsed_s: f64,
    /// Requests answered, well or not.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests sent whose answer had not ended when the run stopped.
    pub unfinished: u64,
    /// Requests sent.
    pub sent: u64,
    /// Answers per second. Open loop: from the first answer to the last,
    /// the rate answers came at under the offered load. Closed loop:
    /// requests / `elapsed_s`, the server being busy all along.
    pub rps: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `rps` times the output tokens per answer.
    pub output_tokens_per_s: f64,
    /// Answers that reported usage; the others count content events.
    pub usage_reported: u64,
    pub latency_ms: Summary,
    pub ttft_ms: Summary,
    pub itl_ms: Summary,
    pub tpot_ms: Summary,
    /// Open loop: how late requests left against their intended send
    /// times (included in the latencies above).
    pub send_lag_ms: Summary,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    pub first_error: Option<String>,
    /// With `--slo`: whether every objective was met, and which were not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_met: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_violations: Vec<String>,
}

/// What the report says about the run's set-up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub url: String,
    pub api: String,
    pub rate: Option<f64>,
    pub arrivals: Option<String>,
    pub concurrency: Option<usize>,
    pub stream: bool,
    pub threads: usize,
    pub duration_s: f64,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Report {
    pub fn new(setup: &Setup, o: &Outcome) -> Report {
        let s = &o.stats;
        let secs = o.elapsed.as_secs_f64();
        let n = s.requests();
        let rps = match o.answer_span {
            Some(span) if setup.rate.is_some() && n >= 2 && span.as_secs_f64() > 0.0 => {
                (n - 1) as f64 / span.as_secs_f64()
            }
            _ => n as f64 / secs,
        };
        let tokens_per_answer = if n > 0 {
            s.output_tokens as f64 / n as f64
        } else {
            0.0
        };
        let aborted = if let Some(f) = &o.fatal {
            Some(f.clone())
        } else if o.interrupted {
            Some("interrupted".to_string())
        } else {
            None
        };
        Report {
            url: setup.url.clone(),
            api: setup.api.clone(),
            mode: if setup.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .to_string(),
            rate: setup.rate,
            arrivals: setup.arrivals.clone(),
            concurrency: setup.concurrency,
            stream: setup.stream,
            threads: setup.threads,
            duration_s: setup.duration_s,
            elapsed_s: round3(secs),
            requests: s.requests(),
            ok: s.ok,
            errors: s.error_count(),
            errors_by_kind: s.errors_by_kind(),
            unfinished: s.unfinished,
            sent: o.sent,
            rps: round3(rps),
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            output_tokens_per_s: round3(rps * tokens_per_answer),
            usage_reported: s.usage_reported,
            latency_ms: Summary::of(&s.latency),
            ttft_ms: Summary::of(&s.ttft),
            itl_ms: Summary::of(&s.itl),
            tpot_ms: Summary::of(&s.tpot),
            send_lag_ms: Summary::of(&s.send_lag),
            aborted,
            first_error: o.first_error.clone(),
            slo_met: None,
            slo_violations: Vec::new(),
        }
    }

    /// The final table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let shape = match (self.rate, self.concurrency) {
            (Some(r), _) => format!(
                "open loop {r}/s {}",
                self.arrivals.as_deref().unwrap_or("uniform")
            ),
            (None, Some(c)) => format!("closed loop, concurrency {c}"),
            _ => String::new(),
        };
        let _ = writeln!(
            t,
            "{}  ({}, {shape}, {}s, {}{} thread{})",
            self.url,
            self.api,
            self.duration_s,
            if self.stream { "stream, " } else { "" },
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            t,
            "requests    {:>10}   ok {}  errors {}{}",
            self.requests,
            self.ok,
            self.errors,
            if self.unfinished > 0 {
                format!("  unfinished {}", self.unfinished)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            t,
            "rps         {:>10.1}   ({} sent, last answer at {:.3}s)",
            self.rps, self.sent, self.elapsed_s
        );
        let _ = writeln!(
            t,
            "tokens/s    {:>10.1}   output ({} tokens, {} of {} answers with usage; {} input tokens)",
            self.output_tokens_per_s, self.output_tokens, self.usage_reported, self.ok, self.input_tokens
        );
        if self.latency_ms.count > 0 {
            let _ = writeln!(
                t,
                "{:<12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
                "ms", "p50", "p90", "p99", "p99.9", "max", "mean"
            );
        }
        for (name, s) in [
            ("latency", &self.latency_ms),
            ("ttft", &self.ttft_ms),
            ("itl", &self.itl_ms),
            ("tpot", &self.tpot_ms),
            ("send lag", &self.send_lag_ms),
        ] {
            if s.count == 0 {
                continue;
            }
            let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or("-".into());
            let _ = writeln!(
                t,
                "{name:<12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
                f(s.p50),
                f(s.p90),
                f(s.p99),
                f(s.p999),
                f(s.max),
                f(s.mean)
            );
        }
        if !self.errors_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(t, "errors      {}", kinds.join(", "));
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(t, "first error {e}");
        }
        if let Some(a) = &self.aborted {
            let _ = writeln!(t, "aborted     {a}");
        }
        match self.slo_met {
            Some(true) => {
                let _ = writeln!(t, "slo         met");
            }
            Some(false) => {
                let _ = writeln!(t, "slo         NOT met: {}", self.slo_violations.join("; "));
            }
            None => {}
        }
        t
    }
}

/// The rows `--compare` shows: label and JSON pointer.
const COMPARED: &[(&str, &str)] = &[
    ("requests", "/requests"),
    ("errors", "/errors"),
    ("rps", "/rps"),
    ("output_tokens_per_s", "/output_tokens_per_s"),
    ("latency p50 ms", "/latency_ms/p50"),
    ("latency p99 ms", "/latency_ms/p99"),
    ("ttft p50 ms", "/ttft_ms/p50"),
    ("ttft p99 ms", "/ttft_ms/p99"),
    ("itl p50 ms", "/itl_ms/p50"),
    ("itl p99 ms", "/itl_ms/p99"),
    ("tpot p50 ms", "/tpot_ms/p50"),
    ("tpot p99 ms", "/tpot_ms/p99"),
    ("max rate meeting SLO", "/max_rate"),
];

/// The ratio table of two reports (single runs or sweeps): each metric in
/// A and B and B/A. Rows absent from both are left out.
pub fn compare(a_name: &str, a: &Value, b_name: &str, b: &Value) -> String {
    let mut t = String::new();
    let w = a_name.len().max(b_name.len()).clamp(10, 40) + 2;
    let _ = writeln!(
        t,
        "{:<22}{:>w$}{:>w$}{:>10}",
        "metric", a_name, b_name, "B/A"
    );
    let num = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64);
    for (label, ptr) in COMPARED {
        let (x, y) = (num(a, ptr), num(b, ptr));
        if x.is_none() && y.is_none() {
            continue;
        }
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or("-".into());
        let ratio = match (x, y) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:.3}", y / x),
            _ => "-".to_string(),
        };
        let _ = writeln!(t, "{label:<22}{:>w$}{:>w$}{ratio:>10}", f(x), f(y));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::{record, ErrorKind, Stats};
    use std::time::Duration;

    fn outcome() -> Outcome {
        let mut st = Stats::default();
        for i in 1..=100 {
            record(&mut st.latency, Duration::from_millis(i));
            record(&mut st.ttft, Duration::from_millis(i / 2 + 1));
            record(&mut st.itl, Duration::from_millis(10));
        }
        st.ok = 100;
        st.output_tokens = 1000;
        st.usage_reported = 100;
        st.error(ErrorKind::Status(503));
        Outcome {
            stats: st,
            elapsed: Duration::from_secs(2),
            answer_span: Some(Duration::from_secs(2)),
            sent: 101,
            fatal: None,
            interrupted: false,
            first_error: Some("status_503: down".into()),
        }
    }

    fn setup() -> Setup {
        Setup {
            url: "http://x/v1/chat/completions".into(),
            api: "chat".into(),
            rate: Some(50.0),
            arrivals: Some("uniform".into()),
            concurrency: None,
            stream: true,
            threads: 1,
            duration_s: 2.0,
        }
    }

    #[test]
    fn report_fields_and_table() {
        let r = Report::new(&setup(), &outcome());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["requests"], 101);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["errors_by_kind"]["status_503"], 1);
        // 101 answers over 2 s: 100 intervals.
        assert_eq!(v["rps"], 50.0);
        assert_eq!(v["output_tokens_per_s"], 495.05);
        for k in ["latency_ms", "ttft_ms", "itl_ms"] {
            assert!(v[k]["p50"].is_number() && v[k]["p99"].is_number(), "{k}");
        }
        assert!((v["latency_ms"]["p50"].as_f64().unwrap() - 50.0).abs() < 0.1);
        assert!(v["tpot_ms"]["p50"].is_null());
        let t = r.table();
        assert!(t.contains("open loop 50/s uniform"), "{t}");
        assert!(t.contains("errors      status_503 1"), "{t}");
        assert!(!t.contains("\ntpot"), "{t}");
        // It reads back.
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.requests, 101);
    }

    #[test]
    fn compare_shows_ratios() {
        let a = serde_json::to_value(Report::new(&setup(), &outcome())).unwrap();
        let mut b = a.clone();
        b["rps"] = 100.0.into();
        b["latency_ms"]["p99"] = serde_json::json!(a["latency_ms"]["p99"].as_f64().unwrap() / 2.0);
        let t = compare("a.json", &a, "b.json", &b);
        let rps = t.lines().find(|l| l.starts_with("rps ")).unwrap();
        assert!(rps.ends_with("2.000"), "{t}");
        let p99 = t.lines().find(|l| l.starts_with("latency p99")).unwrap();
        assert!(p99.ends_with("0.500"), "{t}");
        assert!(!t.contains("tpot"), "{t}");
        assert!(!t.contains("max rate"), "{t}");
    }
}
