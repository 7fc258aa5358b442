//! The command line (PRODUCT.md §10 names the core flags) and the value
//! syntaxes: rates (`500/s`), durations (`30s`, `500ms`), headers.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::run::Io;
use super::schedule::Arrivals;
use super::sweep::{Slo, SweepSpec};
use super::workload::{Api, Dist};

const EXAMPLES: &str = "\
Examples:
  modelgate-load http://127.0.0.1:8080/v1/chat/completions --rate 200/s --duration 30s --stream --max-tokens 128
  modelgate-load http://127.0.0.1:8080/v1/messages --concurrency 64 -H 'x-api-key: env:ANTHROPIC_API_KEY'
  modelgate-load URL --stream --sweep 100:2000:100/s --duration 20s --slo p99_ttft=500ms
  modelgate-load URL --input-tokens normal:512:128 --output-tokens uniform:64:256 --json run.json
  modelgate-load --compare before.json after.json

Exit status: 0 done; 1 the run failed (target unreachable, a stream that is not SSE,
no successful answer, interrupted); 2 bad arguments or input files; 3 an --slo was not met.";

/// Capacity testing for inference endpoints: open-loop rate or fixed
/// concurrency, TTFT, inter-token latency, tokens/s, HDR percentiles.
#[derive(Parser, Debug, Clone)]
#[command(name = "modelgate-load", version, after_help = EXAMPLES)]
pub struct Args {
    /// The full endpoint URL, e.g. http://127.0.0.1:8080/v1/chat/completions
    /// (OpenAI chat, completions, embeddings, or Anthropic messages).
    pub url: Option<String>,

    /// Open loop: send this many requests per second (`500/s`, `500`,
    /// `6000/min`) whatever the answers do; latency counts from each
    /// request's intended send time.
    #[arg(long, value_parser = parse_rate, conflicts_with_all = ["concurrency", "sweep"])]
    pub rate: Option<f64>,

    /// Closed loop: keep this many requests in flight (the default, with 1).
    #[arg(long, short = 'c', conflicts_with = "sweep")]
    pub concurrency: Option<usize>,

    /// How long to send requests (each sweep step sends for this long).
    #[arg(long, short = 'd', value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,

    /// Ask for a streamed answer (SSE) and measure TTFT and inter-token
    /// latency.
    #[arg(long)]
    pub stream: bool,

    /// `max_tokens` of every request.
    #[arg(long, conflicts_with = "output_tokens")]
    pub max_tokens: Option<u64>,

    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Step the open-loop rate START:END:STEP/s, stopping at the first step
    /// that breaks an --slo; reports the highest rate that met them all.
    #[arg(long, value_name = "START:END:STEP/s")]
    pub sweep: Option<SweepSpec>,

    /// An objective, STAT_METRIC=VALUE: STAT p50|p90|p99|p999|max|mean,
    /// METRIC latency|ttft|itl|tpot (p99_ttft=500ms), or error_rate=1%
    /// (1% applies unless given). Repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub slo: Vec<Slo>,

    /// Open-loop arrivals: evenly spaced or Poisson.
    #[arg(long, value_enum, default_value = "uniform")]
    pub arrivals: Arrivals,

    /// The prompt of every request.
    #[arg(long, conflicts_with_all = ["prompt_file", "input_tokens"])]
    pub prompt: Option<String>,

    /// Prompts, one JSON value a line: a string, {"prompt": ..,
    /// "max_tokens": ..}, or body fields such as {"messages": [..]}.
    #[arg(long, value_name = "JSONL", conflicts_with = "input_tokens")]
    pub prompt_file: Option<PathBuf>,

    /// Synthetic prompts of this many tokens: N, uniform:MIN:MAX,
    /// normal:MEAN:SD or exp:MEAN.
    #[arg(long, value_name = "DIST")]
    pub input_tokens: Option<Dist>,

    /// `max_tokens` drawn per request from this distribution (same syntax).
    #[arg(long, value_name = "DIST")]
    pub output_tokens: Option<Dist>,

    /// A request header, 'name: value'; a value `env:NAME` (or `Bearer
    /// env:NAME`) is read from the environment.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,

    /// Print the ratio table of two JSON reports (B/A) and exit.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    pub compare: Option<Vec<PathBuf>>,

    /// Threads, each with its own event loop and connections (default:
    /// the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,

    /// The `model` of every request.
    #[arg(long, default_value = "mock-model")]
    pub model: String,

    /// The API, when the URL path does not end in a known endpoint.
    #[arg(long, value_enum)]
    pub api: Option<Api>,

    /// Longest wait for one answer; answers still in flight at the end of
    /// the duration are awaited this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,

    /// PEM file of CA certificates to trust for an https URL, instead of
    /// the built-in web roots.
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,

    /// Connections open at once at most (open loop); more requests wait.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,

    /// Seed for Poisson arrivals and synthetic prompts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Add `"ignore_eos": true` (vLLM) so answers run to max_tokens.
    #[arg(long)]
    pub ignore_eos: bool,

    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// I/O driver of the event loops.
    #[arg(long, value_enum, default_value = "uring")]
    pub io: Io,
}

/// `30s`, `500ms`, `2m`, `1h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{s:?}: expected a duration such as 30s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m, h)")),
    };
    if secs > 1e9 {
        return Err(format!("{s:?}: too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `500/s`, `500`, `6000/min`, `0.5/s`: requests per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, per) = match t.split_once('/') {
        Some((n, u)) => (n.trim(), u.trim()),
        None => (t, "s"),
    };
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{s:?}: expected a rate such as 500/s"))?;
    match per {
        "s" => Ok(v),
        "m" | "min" => Ok(v / 60.0),
        "h" => Ok(v / 3600.0),
        u => Err(format!("{s:?}: unknown unit /{u} (use /s or /min)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "-1s", "3d", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500/s").unwrap(), 500.0);
        assert_eq!(parse_rate("500").unwrap(), 500.0);
        assert_eq!(parse_rate("6000/min").unwrap(), 100.0);
        assert_eq!(parse_rate("0.5/s").unwrap(), 0.5);
        for bad in ["0/s", "-1", "x/s", "5/day"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_interface_parses() {
        let a = Args::try_parse_from([
            "modelgate-load",
            "http://127.0.0.1:1/v1/chat/completions",
            "--rate",
            "500/s",
            "--duration",
            "2s",
            "--stream",
            "--max-tokens",
            "16",
            "--json",
            "r.json",
            "-H",
            "x-a: 1",
            "-H",
            "x-b: 2",
            "--slo",
            "p99_ttft=500ms,error_rate=2%",
        ])
        .unwrap();
        assert_eq!(a.rate, Some(500.0));
        assert_eq!(a.duration, Duration::from_secs(2));
        assert!(a.stream);
        assert_eq!(a.headers.len(), 2);
        assert_eq!(a.slo.len(), 2);
        assert!(Args::try_parse_from(["m", "u", "--rate", "5", "--concurrency", "2"]).is_err());
        assert!(
            Args::try_parse_from(["m", "u", "--max-tokens", "5", "--output-tokens", "2"]).is_err()
        );
        let c = Args::try_parse_from(["m", "--compare", "a.json", "b.json"]).unwrap();
        assert_eq!(c.compare.unwrap().len(), 2);
    }
}
