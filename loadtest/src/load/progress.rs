//! The live progress line: each thread sends what it measured in each
//! second of the run; once every running thread has sent second `k`, one
//! line for that second goes to stderr.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::stats::{histogram, record};

/// What one thread measured in one second.
#[derive(Debug, Clone)]
pub struct Tick {
    pub ok: u64,
    pub errors: u64,
    pub output_tokens: u64,
    pub in_flight: u64,
    pub latency: Histogram<u64>,
    pub ttft: Histogram<u64>,
}

impl Default for Tick {
    fn default() -> Self {
        Tick {
            ok: 0,
            errors: 0,
            output_tokens: 0,
            in_flight: 0,
            // Two significant figures are plenty for a progress line.
            latency: histogram(2),
            ttft: histogram(2),
        }
    }
}

impl Tick {
    pub fn ok(&mut self, latency: Duration, ttft: Option<Duration>, output_tokens: u64) {
        self.ok += 1;
        self.output_tokens += output_tokens;
        record(&mut self.latency, latency);
        if let Some(t) = ttft {
            record(&mut self.ttft, t);
        }
    }

    fn add(&mut self, o: &Tick) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.output_tokens += o.output_tokens;
        self.in_flight += o.in_flight;
        let _ = self.latency.add(&o.latency);
        let _ = self.ttft.add(&o.ttft);
    }
}

/// Collects ticks from the threads and says when a second is complete.
#[derive(Debug)]
pub struct Progress {
    /// The last second each thread sent, and whether it has finished.
    last: Vec<u64>,
    done: Vec<bool>,
    pending: std::collections::BTreeMap<u64, Tick>,
}

impl Progress {
    pub fn new(threads: usize) -> Progress {
        Progress {
            last: vec![0; threads],
            done: vec![false; threads],
            pending: Default::default(),
        }
    }

    pub fn tick(&mut self, thread: usize, second: u64, t: &Tick) {
        self.last[thread] = self.last[thread].max(second);
        self.pending.entry(second).or_default().add(t);
    }

    pub fn thread_done(&mut self, thread: usize) {
        self.done[thread] = true;
    }

    /// The seconds every thread has reported, in order. A second that a
    /// thread ended before reporting is partial and is dropped.
    pub fn complete(&mut self) -> Vec<(u64, Tick)> {
        let mut out = Vec::new();
        while let Some((&k, _)) = self.pending.first_key_value() {
            let threads = 0..self.last.len();
            let all = threads.clone().all(|i| self.last[i] >= k);
            let partial = threads.clone().any(|i| self.done[i] && self.last[i] < k);
            if !all && !partial {
                break;
            }
            if let Some(t) = self.pending.remove(&k) {
                if all {
                    out.push((k, t));
                }
            }
        }
        out
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".to_string()
    } else {
        format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// One progress line.
pub fn line(label: &str, second: u64, t: &Tick, stream: bool) -> String {
    let mut s = format!(
        "{label}[{second:>4}s] {:>7} req/s  err {:<5} latency p50 {} p99 {} ms",
        t.ok + t.errors,
        t.errors,
        ms(&t.latency, 0.5),
        ms(&t.latency, 0.99),
    );
    if stream {
        s.push_str(&format!(
            "  ttft p50 {} p99 {} ms  {} tok/s",
            ms(&t.ttft, 0.5),
            ms(&t.ttft, 0.99),
            t.output_tokens
        ));
    }
    s.push_str(&format!("  in-flight {}", t.in_flight));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_complete_when_every_running_thread_reported() {
        let mut p = Progress::new(2);
        let mut t = Tick::default();
        t.ok(Duration::from_millis(5), None, 3);
        p.tick(0, 1, &t);
        assert!(p.complete().is_empty());
        p.tick(1, 1, &t);
        p.tick(0, 2, &t);
        let c = p.complete();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].0, c[0].1.ok, c[0].1.output_tokens), (1, 2, 6));
        let l = line("", 1, &c[0].1, true);
        assert!(l.contains("[   1s]") && l.contains("p50 5.0"), "{l}");
        assert!(l.contains("6 tok/s"), "{l}");
        // Thread 1 ends without reporting second 2: that second is partial.
        p.thread_done(1);
        assert!(p.complete().is_empty());
        assert!(p.pending.is_empty());
    }
}
