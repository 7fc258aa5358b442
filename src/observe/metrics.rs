//! Prometheus metrics: each worker counts into its own `Delta` (no shared
//! cache line per request) and hands it to the control thread every
//! flush; the control thread merges deltas into the `Registry` that
//! `GET /metrics` (`admin`) renders.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Histogram bucket bounds in seconds: 1 ms (a cached answer) to 10 min
/// (a long generation).
pub const BUCKETS: [f64; 19] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let i = BUCKETS.partition_point(|&b| b < seconds);
        self.counts[i] += 1;
        self.sum += seconds;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Everything counted for one label set (all labels but `status`).
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Requests per response status.
    pub requests: Vec<(u16, u64)>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration: Histogram,
    pub first_packet: Histogram,
}

impl Series {
    pub fn count_status(&mut self, status: u16, n: u64) {
        match self.requests.iter_mut().find(|(s, _)| *s == status) {
            Some((_, c)) => *c += n,
            None => self.requests.push((status, n)),
        }
    }

    fn merge(&mut self, other: &Series) {
        for &(s, n) in &other.requests {
            self.count_status(s, n);
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.duration.merge(&other.duration);
        self.first_packet.merge(&other.first_packet);
    }
}

/// Separates label values inside a series key; removed from values.
const SEP: char = '\u{1f}';

/// The labels of a request's series, in `SERIES_LABELS` order.
pub const SERIES_LABELS: [&str; 6] = [
    "model_api",
    "route",
    "service",
    "model",
    "consumer",
    "resource_group",
];

/// Longest label value kept (model names come from clients).
const MAX_VALUE: usize = 128;

/// Writes the key of a label set into `key` (cleared first).
pub fn series_key(key: &mut String, values: &[&str]) {
    key.clear();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        let mut end = v.len().min(MAX_VALUE);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        let v = &v[..end];
        // Label values are short: a byte loop beats `str::contains`' searcher.
        if v.bytes().any(|b| b == SEP as u8) {
            key.extend(v.chars().filter(|&c| c != SEP));
        } else {
            key.push_str(v);
        }
    }
}

/// What one worker counted since its last flush.
#[derive(Debug, Default)]
pub struct Delta {
    pub series: crate::FastMap<String, Series>,
    /// Key: service, kind.
    pub upstream_errors: crate::FastMap<String, u64>,
    /// Key: model_api, service.
    pub fallbacks: crate::FastMap<String, u64>,
    pub access_log_dropped: u64,
    pub spans_dropped: u64,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
            && self.upstream_errors.is_empty()
            && self.fallbacks.is_empty()
            && self.access_log_dropped == 0
            && self.spans_dropped == 0
    }

    /// The series for `key`; allocates only for a label set new since
    /// the last flush.
    pub fn series(&mut self, key: &str) -> &mut Series {
        self.series.entry_ref(key).or_default()
    }

    pub fn count(map: &mut crate::FastMap<String, u64>, key: &str) {
        match map.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                map.insert(key.to_string(), 1);
            }
        }
    }
}

/// Label sets kept before new ones fold into `model="other"`,
/// `consumer="other"`: client-chosen model names must not grow
/// `/metrics` without bound.
const MAX_SERIES: usize = 4096;

/// The merged totals (control thread).
#[derive(Debug, Default)]
pub struct Registry {
    series: BTreeMap<String, Series>,
    upstream_errors: BTreeMap<String, u64>,
    fallbacks: BTreeMap<String, u64>,
    access_log_dropped: u64,
    spans_dropped: u64,
}

impl Registry {
    pub fn merge(&mut self, d: Delta) {
        for (key, s) in d.series {
            let key = if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
                fold_key(&key)
            } else {
                key
            };
            self.series.entry(key).or_default().merge(&s);
        }
        for (k, n) in d.upstream_errors {
            *self.upstream_errors.entry(k).or_default() += n;
        }
        for (k, n) in d.fallbacks {
            *self.fallbacks.entry(k).or_default() += n;
        }
        self.access_log_dropped += d.access_log_dropped;
        self.spans_dropped += d.spans_dropped;
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, active_connections: usize) -> String {
        let mut out = String::with_capacity(4096 + self.series.len() * 2048);
        let w = &mut out;
        header(
            w,
            "modelgate_requests_total",
            "counter",
            "Requests answered, by Model API, route, service, model, consumer, resource group and status.",
        );
        for (key, s) in &self.series {
            for &(status, n) in &s.requests {
                sample(
                    w,
                    "modelgate_requests_total",
                    key,
                    &SERIES_LABELS,
                    Some(("status", &status.to_string())),
                    n as f64,
                );
            }
        }
        histogram(
            w,
            "modelgate_request_duration_seconds",
            "Time from the request head to the last response byte.",
            self.series.iter().map(|(k, s)| (k, &s.duration)),
        );
        histogram(
            w,
            "modelgate_first_packet_seconds",
            "Streaming requests: time from the request head to the first response body bytes.",
            self.series.iter().map(|(k, s)| (k, &s.first_packet)),
        );
        for (name, help, pick) in [
            (
                "modelgate_input_tokens_total",
                "Input (prompt) tokens reported by upstream usage.",
                (|s: &Series| s.input_tokens) as fn(&Series) -> u64,
            ),
            (
                "modelgate_output_tokens_total",
                "Output (completion) tokens reported by upstream usage.",
                |s: &Series| s.output_tokens,
            ),
        ] {
            header(w, name, "counter", help);
            for (key, s) in &self.series {
                sample(w, name, key, &SERIES_LABELS, None, pick(s) as f64);
            }
        }
        header(
            w,
            "modelgate_upstream_errors_total",
            "counter",
            "Failed upstream attempts, by service and kind (connect, timeout, first_packet_timeout, protocol, http_429, http_5xx, stream).",
        );
        for (key, n) in &self.upstream_errors {
            sample(
                w,
                "modelgate_upstream_errors_total",
                key,
                &["service", "kind"],
                None,
                *n as f64,
            );
        }
        header(
            w,
            "modelgate_fallbacks_total",
            "counter",
            "Fallback attempts, by Model API and the service fallen back to.",
        );
        for (key, n) in &self.fallbacks {
            sample(
                w,
                "modelgate_fallbacks_total",
                key,
                &["model_api", "service"],
                None,
                *n as f64,
            );
        }
        header(
            w,
            "modelgate_active_connections",
            "gauge",
            "Open client connections.",
        );
        let _ = writeln!(w, "modelgate_active_connections {active_connections}");
        header(
            w,
            "modelgate_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the log writer fell behind.",
        );
        let _ = writeln!(
            w,
            "modelgate_access_log_dropped_total {}",
            self.access_log_dropped
        );
        header(
            w,
            "modelgate_trace_spans_dropped_total",
            "counter",
            "Spans dropped because the exporter fell behind.",
        );
        let _ = writeln!(
            w,
            "modelgate_trace_spans_dropped_total {}",
            self.spans_dropped
        );
        out
    }
}

/// The key with `model` and `consumer` replaced by `other`.
fn fold_key(key: &str) -> String {
    let mut values: Vec<&str> = key.split(SEP).collect();
    for i in [3, 4] {
        if let Some(v) = values.get_mut(i) {
            *v = "other";
        }
    }
    let mut out = String::new();
    series_key(&mut out, &values);
    out
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape_into(w: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => w.push_str("\\\\"),
            '"' => w.push_str("\\\""),
            '\n' => w.push_str("\\n"),
            c => w.push(c),
        }
    }
}

fn labels(w: &mut String, key: &str, names: &[&str], extra: Option<(&str, &str)>) {
    w.push('{');
    let mut first = true;
    for (name, value) in names.iter().zip(key.split(SEP)) {
        if !first {
            w.push(',');
        }
        first = false;
        w.push_str(name);
        w.push_str("=\"");
        escape_into(w, value);
        w.push('"');
    }
    if let Some((name, value)) = extra {
        if !first {
            w.push(',');
        }
        w.push_str(name);
        w.push_str("=\"");
        escape_into(w, value);
        w.push('"');
    }
    w.push('}');
}

fn sample(
    w: &mut String,
    name: &str,
    key: &str,
    names: &[&str],
    extra: Option<(&str, &str)>,
    v: f64,
) {
    w.push_str(name);
    labels(w, key, names, extra);
    let _ = writeln!(w, " {v}");
}

fn histogram<'a>(
    w: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a String, &'a Histogram)>,
) {
    header(w, name, "histogram", help);
    let bucket = format!("{name}_bucket");
    for (key, h) in series {
        if h.count() == 0 {
            continue;
        }
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            sample(
                w,
                &bucket,
                key,
                &SERIES_LABELS,
                Some(("le", &le)),
                cumulative as f64,
            );
        }
        sample(w, &format!("{name}_sum"), key, &SERIES_LABELS, None, h.sum);
        sample(
            w,
            &format!("{name}_count"),
            key,
            &SERIES_LABELS,
            None,
            cumulative as f64,
        );
    }
}

/// The control side: deltas arrive on `rx` and are merged on demand.
pub struct Metrics {
    pub rx: crossbeam_channel::Receiver<Delta>,
    pub registry: std::sync::Mutex<Registry>,
}

impl Metrics {
    /// Merges every delta sent so far.
    pub fn collect(&self) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(d) = self.rx.try_recv() {
            r.merge(d);
        }
    }

    pub fn render(&self, active_connections: usize) -> String {
        self.collect();
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        r.render(active_connections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[&str]) -> String {
        let mut k = String::new();
        series_key(&mut k, values);
        k
    }

    #[test]
    fn buckets_are_le() {
        let mut h = Histogram::default();
        h.observe(0.001);
        h.observe(0.0011);
        h.observe(700.0);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn deltas_merge_and_render() {
        let k = key(&[
            "chat",
            "create-chat-completion",
            "openai",
            "gpt-4o",
            "",
            "default",
        ]);
        let mut reg = Registry::default();
        for _ in 0..2 {
            let mut d = Delta::default();
            let s = d.series(&k);
            s.count_status(200, 1);
            s.input_tokens += 10;
            s.output_tokens += 3;
            s.duration.observe(0.2);
            Delta::count(&mut d.upstream_errors, &key(&["openai", "http_5xx"]));
            reg.merge(d);
        }
        let text = reg.render(3);
        let labels = r#"model_api="chat",route="create-chat-completion",service="openai",model="gpt-4o",consumer="",resource_group="default""#;
        assert!(
            text.contains(&format!(
                "modelgate_requests_total{{{labels},status=\"200\"}} 2\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("modelgate_input_tokens_total{{{labels}}} 20\n")));
        assert!(text.contains(&format!("modelgate_output_tokens_total{{{labels}}} 6\n")));
        assert!(text.contains(&format!(
            "modelgate_request_duration_seconds_bucket{{{labels},le=\"0.25\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "modelgate_request_duration_seconds_bucket{{{labels},le=\"0.1\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "modelgate_request_duration_seconds_count{{{labels}}} 2\n"
        )));
        assert!(text
            .contains("modelgate_upstream_errors_total{service=\"openai\",kind=\"http_5xx\"} 2\n"));
        assert!(text.contains("modelgate_active_connections 3\n"));
        // No first packet observed: no first packet series.
        assert!(!text.contains("modelgate_first_packet_seconds_count"));
    }

    #[test]
    fn label_values_are_escaped_and_bounded() {
        let long = "m".repeat(500);
        let k = key(&["a", "r", "s", &long, "x\"y\\z\n\u{1f}", "g"]);
        let mut reg = Registry::default();
        let mut d = Delta::default();
        d.series(&k).count_status(404, 1);
        reg.merge(d);
        let text = reg.render(0);
        assert!(text.contains(&format!("model=\"{}\"", "m".repeat(MAX_VALUE))));
        assert!(text.contains(r#"consumer="x\"y\\z\n""#), "{text}");
    }

    #[test]
    fn too_many_series_fold_into_other() {
        let mut reg = Registry::default();
        for i in 0..MAX_SERIES + 5 {
            let mut d = Delta::default();
            d.series(&key(&["a", "r", "s", &format!("m{i}"), "c", "g"]))
                .count_status(200, 1);
            reg.merge(d);
        }
        assert_eq!(reg.series.len(), MAX_SERIES + 1);
        let other = &reg.series[&key(&["a", "r", "s", "other", "other", "g"])];
        assert_eq!(other.requests, vec![(200, 5)]);
    }
}
