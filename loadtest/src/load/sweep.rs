//! Service-level objectives (`--slo p99_ttft=500ms`) and the rate sweep
//! (`--sweep 100:2000:100/s`) that finds the highest open-loop rate at
//! which every objective holds.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::cli::parse_duration;
use super::report::Report;
use super::stats::Summary;

/// A statistic of a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    P50,
    P90,
    P99,
    P999,
    Max,
    Mean,
}

/// A measured distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Latency,
    Ttft,
    Itl,
    Tpot,
}

impl Metric {
    /// Whether only streams measure it.
    pub fn needs_stream(self) -> bool {
        !matches!(self, Metric::Latency)
    }
}

/// One objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slo {
    /// `STAT_METRIC=DURATION`: the statistic at most this many ms.
    Within { stat: Stat, metric: Metric, ms: f64 },
    /// `error_rate=1%`: errors over requests at most this fraction.
    ErrorRate(f64),
}

/// The error rate allowed when `--slo` does not name one.
pub const DEFAULT_ERROR_RATE: f64 = 0.01;

impl FromStr for Slo {
    type Err = String;
    fn from_str(s: &str) -> Result<Slo, String> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            format!("--slo {s:?}: expected STAT_METRIC=VALUE, e.g. p99_ttft=500ms or error_rate=1%")
        })?;
        let (k, v) = (k.trim(), v.trim());
        if k == "error_rate" {
            let frac = match v.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => v.parse::<f64>(),
            }
            .ok()
            .filter(|f| (0.0..=1.0).contains(f))
            .ok_or_else(|| {
                format!("--slo {s:?}: error_rate is a percentage (1%) or a fraction (0.01)")
            })?;
            return Ok(Slo::ErrorRate(frac));
        }
        let (stat, metric) = k
            .split_once('_')
            .ok_or_else(|| format!("--slo {s:?}: expected STAT_METRIC such as p99_ttft"))?;
        let stat = match stat {
            "p50" => Stat::P50,
            "p90" => Stat::P90,
            "p99" => Stat::P99,
            "p999" => Stat::P999,
            "max" => Stat::Max,
            "mean" => Stat::Mean,
            _ => {
                return Err(format!(
                    "--slo {s:?}: the statistic is one of p50, p90, p99, p999, max, mean"
                ))
            }
        };
        let metric = match metric {
            "latency" => Metric::Latency,
            "ttft" => Metric::Ttft,
            "itl" => Metric::Itl,
            "tpot" => Metric::Tpot,
            _ => {
                return Err(format!(
                    "--slo {s:?}: the metric is one of latency, ttft, itl, tpot"
                ))
            }
        };
        let d = parse_duration(v).map_err(|e| format!("--slo {s:?}: {e}"))?;
        Ok(Slo::Within {
            stat,
            metric,
            ms: d.as_secs_f64() * 1000.0,
        })
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slo::ErrorRate(r) => write!(f, "error_rate<={}%", r * 100.0),
            Slo::Within { stat, metric, ms } => {
                let stat = match stat {
                    Stat::P50 => "p50",
                    Stat::P90 => "p90",
                    Stat::P99 => "p99",
                    Stat::P999 => "p999",
                    Stat::Max => "max",
                    Stat::Mean => "mean",
                };
                let metric = match metric {
                    Metric::Latency => "latency",
                    Metric::Ttft => "ttft",
                    Metric::Itl => "itl",
                    Metric::Tpot => "tpot",
                };
                write!(f, "{stat}_{metric}<={ms}ms")
            }
        }
    }
}

fn pick(s: &Summary, stat: Stat) -> Option<f64> {
    match stat {
        Stat::P50 => s.p50,
        Stat::P90 => s.p90,
        Stat::P99 => s.p99,
        Stat::P999 => s.p999,
        Stat::Max => s.max,
        Stat::Mean => s.mean,
    }
}

/// The objectives `r` breaks, described; an error-rate objective applies
/// even when none was given (`DEFAULT_ERROR_RATE`). A run with no
/// successful answer or stopped early breaks them all.
pub fn violations(slos: &[Slo], r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = &r.aborted {
        out.push(format!("run aborted: {a}"));
    }
    if r.ok == 0 {
        out.push("no successful answer".to_string());
    }
    let mut rate_given = false;
    for slo in slos {
        match *slo {
            Slo::ErrorRate(max) => {
                rate_given = true;
                check_error_rate(max, r, &mut out);
            }
            Slo::Within { stat, metric, ms } => {
                let summary = match metric {
                    Metric::Latency => &r.latency_ms,
                    Metric::Ttft => &r.ttft_ms,
                    Metric::Itl => &r.itl_ms,
                    Metric::Tpot => &r.tpot_ms,
                };
                match pick(summary, stat) {
                    Some(v) if v <= ms => {}
                    Some(v) => out.push(format!("{slo}: measured {v}ms")),
                    None => out.push(format!("{slo}: not measured")),
                }
            }
        }
    }
    if !rate_given {
        check_error_rate(DEFAULT_ERROR_RATE, r, &mut out);
    }
    out
}

fn check_error_rate(max: f64, r: &Report, out: &mut Vec<String>) {
    let rate = r.errors as f64 / (r.requests.max(1)) as f64;
    if rate > max {
        out.push(format!(
            "{}: measured {:.2}% ({} of {})",
            Slo::ErrorRate(max),
            rate * 100.0,
            r.errors,
            r.requests
        ));
    }
}

/// `START:END:STEP/s`: rates START, START+STEP, ... up to END.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepSpec {
    pub start: f64,
    pub end: f64,
    pub step: f64,
}

/// Most steps a sweep may have.
const MAX_STEPS: usize = 1000;

impl FromStr for SweepSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<SweepSpec, String> {
        let bad = || format!("--sweep {s:?}: expected START:END:STEP/s, e.g. 100:2000:100/s");
        let body = s.trim().strip_suffix("/s").unwrap_or(s.trim());
        let parts: Vec<f64> = body
            .split(':')
            .map(|p| p.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let [start, end, step] = parts[..] else {
            return Err(bad());
        };
        if start <= 0.0 || step <= 0.0 || end < start {
            return Err(format!("--sweep {s:?}: need 0 < START <= END and STEP > 0"));
        }
        let spec = SweepSpec { start, end, step };
        if spec.rates().len() > MAX_STEPS {
            return Err(format!("--sweep {s:?}: more than {MAX_STEPS} steps"));
        }
        Ok(spec)
    }
}

impl fmt::Display for SweepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}/s", self.start, self.end, self.step)
    }
}

impl SweepSpec {
    pub fn rates(&self) -> Vec<f64> {
        let n = ((self.end - self.start) / self.step + 1e-9).floor() as usize + 1;
        (0..n.min(MAX_STEPS + 1))
            .map(|i| self.start + i as f64 * self.step)
            .collect()
    }
}

/// A sweep's report.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub sweep: String,
    pub slo: Vec<String>,
    /// The highest rate whose step met every objective.
    pub max_rate: Option<f64>,
    /// Each step run, in order; the sweep stops at the first that fails.
    pub steps: Vec<Report>,
}

/// One row of the sweep table.
pub fn step_row(r: &Report) -> String {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or("-".into());
    format!(
        "{:>10} {:>10.1} {:>8} {:>10} {:>10} {:>10}  {}",
        r.rate.unwrap_or(0.0),
        r.rps,
        r.errors,
        f(r.latency_ms.p50),
        f(r.latency_ms.p99),
        f(r.ttft_ms.p99),
        if r.slo_met == Some(true) {
            "ok".to_string()
        } else {
            format!("FAIL: {}", r.slo_violations.join("; "))
        }
    )
}

pub const STEP_HEADER: &str = "      rate        rps   errors    p50 ms     p99 ms  p99 ttft  slo";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_syntax() {
        assert_eq!(
            "p99_ttft=500ms".parse::<Slo>().unwrap(),
            Slo::Within {
                stat: Stat::P99,
                metric: Metric::Ttft,
                ms: 500.0
            }
        );
        assert_eq!(
            "mean_latency=2s".parse::<Slo>().unwrap(),
            Slo::Within {
                stat: Stat::Mean,
                metric: Metric::Latency,
                ms: 2000.0
            }
        );
        assert_eq!(
            "error_rate=5%".parse::<Slo>().unwrap(),
            Slo::ErrorRate(0.05)
        );
        assert_eq!(
            "error_rate=0.1".parse::<Slo>().unwrap(),
            Slo::ErrorRate(0.1)
        );
        for bad in [
            "p99_ttft",
            "p98_ttft=1s",
            "p99_foo=1s",
            "p99_ttft=fast",
            "error_rate=200%",
        ] {
            assert!(bad.parse::<Slo>().is_err(), "{bad}");
        }
        assert_eq!(
            "p99_itl=50ms".parse::<Slo>().unwrap().to_string(),
            "p99_itl<=50ms"
        );
    }

    #[test]
    fn sweep_syntax() {
        let s: SweepSpec = "100:2000:100/s".parse().unwrap();
        let r = s.rates();
        assert_eq!(r.len(), 20);
        assert_eq!((r[0], r[19]), (100.0, 2000.0));
        assert_eq!("5:6:10".parse::<SweepSpec>().unwrap().rates(), [5.0]);
        assert_eq!(
            "0.5:1.5:0.5/s".parse::<SweepSpec>().unwrap().rates(),
            [0.5, 1.0, 1.5]
        );
        for bad in [
            "100:50:10/s",
            "0:10:1",
            "1:2",
            "1:2:0",
            "a:b:c",
            "1:1000000:1",
        ] {
            assert!(bad.parse::<SweepSpec>().is_err(), "{bad}");
        }
    }

    fn report(p99_ttft: Option<f64>, ok: u64, errors: u64) -> Report {
        let v = serde_json::json!({
            "url": "u", "api": "chat", "mode": "open", "rate": 10.0, "arrivals": "uniform",
            "concurrency": null, "stream": true, "threads": 1, "duration_s": 1.0,
            "elapsed_s": 1.0, "requests": ok + errors, "ok": ok, "errors": errors,
            "errors_by_kind": {}, "unfinished": 0, "sent": 10, "rps": 10.0, "input_tokens": 0,
            "output_tokens": 0, "output_tokens_per_s": 0.0, "usage_reported": 0,
            "latency_ms": {"p50": 100.0, "p99": 300.0, "count": 10},
            "ttft_ms": {"p50": 50.0, "p99": p99_ttft, "count": 10},
            "itl_ms": {"count": 0}, "tpot_ms": {"count": 0}, "send_lag_ms": {"count": 0},
            "aborted": null, "first_error": null
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn objectives_are_checked() {
        let slos = vec![
            "p99_ttft=500ms".parse().unwrap(),
            "p99_latency=1s".parse().unwrap(),
        ];
        assert!(violations(&slos, &report(Some(400.0), 100, 0)).is_empty());
        let v = violations(&slos, &report(Some(600.0), 100, 0));
        assert_eq!(v, ["p99_ttft<=500ms: measured 600ms"]);
        assert!(violations(&slos, &report(None, 100, 0))[0].contains("not measured"));
        // 2% errors break the default 1% error rate, not an explicit 5%.
        assert_eq!(violations(&slos, &report(Some(1.0), 98, 2)).len(), 1);
        let mut lenient = slos.clone();
        lenient.push(Slo::ErrorRate(0.05));
        assert!(violations(&lenient, &report(Some(1.0), 98, 2)).is_empty());
        assert!(violations(&slos, &report(Some(1.0), 0, 0))
            .iter()
            .any(|v| v.contains("no successful")));
    }
}
