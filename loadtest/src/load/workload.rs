//! What is sent: the endpoint's API (from the URL path or `--api`), the
//! prompts (fixed, a JSONL file, or synthetic with an input-length
//! distribution), the output length (`--max-tokens` or a distribution),
//! and the raw HTTP requests rendered once before the run.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use super::http::Url;
use super::sse::Dialect;

/// The endpoint's API, which decides the body shape and stream events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI `/v1/chat/completions`.
    Chat,
    /// OpenAI `/v1/completions`.
    Completions,
    /// OpenAI `/v1/embeddings` (never streamed).
    Embeddings,
    /// Anthropic `/v1/messages`.
    Messages,
}

impl Api {
    /// The API an endpoint path names, by its last segments.
    pub fn from_path(path: &str) -> Option<Api> {
        let p = path.split('?').next().unwrap_or("").trim_end_matches('/');
        if p.ends_with("/chat/completions") {
            Some(Api::Chat)
        } else if p.ends_with("/completions") {
            Some(Api::Completions)
        } else if p.ends_with("/embeddings") {
            Some(Api::Embeddings)
        } else if p.ends_with("/messages") {
            Some(Api::Messages)
        } else {
            None
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Api::Chat | Api::Embeddings => Dialect::OpenAiChat,
            Api::Completions => Dialect::OpenAiText,
            Api::Messages => Dialect::Anthropic,
        }
    }
}

/// A length distribution, in tokens: `N`, `uniform:MIN:MAX`,
/// `normal:MEAN:SD` or `exp:MEAN`. Samples are at least 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    Fixed(u64),
    Uniform(u64, u64),
    Normal(f64, f64),
    Exponential(f64),
}

impl FromStr for Dist {
    type Err = String;
    fn from_str(s: &str) -> Result<Dist, String> {
        let bad = || {
            format!("{s:?}: expected N, uniform:MIN:MAX, normal:MEAN:SD or exp:MEAN (token counts)")
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let d = match parts.as_slice() {
            [n] => Dist::Fixed(n.trim().parse().map_err(|_| bad())?),
            ["uniform", a, b] => {
                let (a, b): (u64, u64) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(format!("{s:?}: MIN is above MAX"));
                }
                Dist::Uniform(a, b)
            }
            ["normal", m, sd] => Dist::Normal(num(m).ok_or_else(bad)?, num(sd).ok_or_else(bad)?),
            ["exp", m] => Dist::Exponential(num(m).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        if d.mean() < 1.0 {
            return Err(format!("{s:?}: the mean must be at least 1 token"));
        }
        Ok(d)
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Fixed(n) => write!(f, "{n}"),
            Dist::Uniform(a, b) => write!(f, "uniform:{a}:{b}"),
            Dist::Normal(m, sd) => write!(f, "normal:{m}:{sd}"),
            Dist::Exponential(m) => write!(f, "exp:{m}"),
        }
    }
}

impl Dist {
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Fixed(n) => n as f64,
            Dist::Uniform(a, b) => (a + b) as f64 / 2.0,
            Dist::Normal(m, _) | Dist::Exponential(m) => m,
        }
    }

    pub fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let v = match *self {
            Dist::Fixed(n) => n as f64,
            Dist::Uniform(a, b) => rng.u64(a..=b) as f64,
            Dist::Normal(m, sd) => {
                // Box-Muller.
                let u1 = 1.0 - rng.f64();
                let u2 = rng.f64();
                m + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            }
            Dist::Exponential(m) => -(1.0 - rng.f64()).ln() * m,
        };
        (v.round() as u64).max(1)
    }
}

/// Where prompts come from.
#[derive(Debug, Clone)]
pub enum Prompts {
    Fixed(String),
    /// Lines of a JSONL file.
    File(Vec<Line>),
    /// Synthetic prompts of this many words (one token each, near enough).
    Synthetic(Dist),
}

/// One JSONL line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Prompt text, with this line's output length if it set one.
    Text(String, Option<u64>),
    /// Body fields merged over the generated body.
    Body(Map<String, Value>),
}

/// Reads a JSONL prompt file: each non-empty line is a JSON string (the
/// prompt), an object with `prompt` or `text` (the prompt; `max_tokens` or
/// `output_tokens` there set its output length), or another object (body
/// fields such as `messages`, merged over the generated body).
pub fn parse_jsonl(name: &str, text: &str) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let at = format!("{name}:{}", i + 1);
        let v: Value = serde_json::from_str(l).map_err(|e| format!("{at}: not JSON: {e}"))?;
        out.push(match v {
            Value::String(s) => Line::Text(s, None),
            Value::Object(o) => {
                let text = ["prompt", "text"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str));
                match text {
                    Some(t) => {
                        let n = ["max_tokens", "output_tokens"]
                            .iter()
                            .find_map(|k| o.get(*k).and_then(Value::as_u64));
                        Line::Text(t.to_string(), n)
                    }
                    None => Line::Body(o),
                }
            }
            _ => return Err(format!("{at}: expected a JSON string or object")),
        });
    }
    if out.is_empty() {
        return Err(format!("{name}: no prompts in the file"));
    }
    Ok(out)
}

/// How each body is built.
#[derive(Debug, Clone)]
pub struct BodySpec {
    pub api: Api,
    pub model: String,
    pub stream: bool,
    /// Output length: fixed (`--max-tokens`) or drawn per request.
    pub output: Option<Dist>,
    /// Add vLLM's `ignore_eos` so outputs run to their full length.
    pub ignore_eos: bool,
}

/// Anthropic requires `max_tokens`; this is used when none is given.
const MESSAGES_DEFAULT_MAX_TOKENS: u64 = 256;

/// Common words that are one token each in the usual tokenizers.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are",
    "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by",
    "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there",
    "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other",
    "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like",
    "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no",
    "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its",
    "now", "find", "long", "down", "day", "did", "get", "come", "made", "may", "part",
];

/// `n` random words: random so that servers with prefix caching do not
/// answer from cache.
pub fn synthetic_prompt(n: u64, rng: &mut fastrand::Rng) -> String {
    let mut s = String::with_capacity(n as usize * 5);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    s
}

/// The JSON body for one prompt.
pub fn body(spec: &BodySpec, text: &str, max_tokens: Option<u64>) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert("model".into(), json!(spec.model));
    let user = json!([{"role": "user", "content": text}]);
    match spec.api {
        Api::Chat => {
            b.insert("messages".into(), user);
        }
        Api::Completions => {
            b.insert("prompt".into(), json!(text));
        }
        Api::Embeddings => {
            b.insert("input".into(), json!(text));
            return b;
        }
        Api::Messages => {
            b.insert("messages".into(), user);
            let n = max_tokens.unwrap_or(MESSAGES_DEFAULT_MAX_TOKENS);
            b.insert("max_tokens".into(), json!(n));
        }
    }
    if let Some(n) = max_tokens {
        b.insert("max_tokens".into(), json!(n));
    }
    if spec.ignore_eos {
        b.insert("ignore_eos".into(), json!(true));
    }
    if spec.stream {
        b.insert("stream".into(), json!(true));
        if spec.api != Api::Messages {
            // Usage in the last event, so output tokens are counted exactly.
            b.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    b
}

/// How many distinct requests to render when lengths are drawn at random.
const SAMPLED_VARIANTS: usize = 512;
/// Bound on the bytes of rendered requests (per thread copy).
const MAX_RENDERED_BYTES: usize = 64 * 1024 * 1024;

/// Renders the JSON bodies for the run.
pub fn bodies(spec: &BodySpec, prompts: &Prompts, default_prompt: &str, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let fixed_out = match spec.output {
        Some(Dist::Fixed(n)) => Some(n),
        _ => None,
    };
    let draw_out = |rng: &mut fastrand::Rng| spec.output.map(|d| d.sample(rng));
    let render = |b: Map<String, Value>| serde_json::to_vec(&Value::Object(b)).unwrap_or_default();
    match prompts {
        Prompts::Fixed(t) if spec.output.is_none() || fixed_out.is_some() => {
            vec![render(body(spec, t, fixed_out))]
        }
        Prompts::Fixed(t) => (0..SAMPLED_VARIANTS)
            .map(|_| render(body(spec, t, draw_out(&mut rng))))
            .collect(),
        Prompts::File(lines) => lines
            .iter()
            .map(|l| match l {
                Line::Text(t, n) => {
                    let out = n.or_else(|| draw_out(&mut rng));
                    render(body(spec, t, out))
                }
                Line::Body(fields) => {
                    let mut b = body(spec, default_prompt, draw_out(&mut rng));
                    for (k, v) in fields {
                        b.insert(k.clone(), v.clone());
                    }
                    render(b)
                }
            })
            .collect(),
        Prompts::Synthetic(dist) => {
            let mut out = Vec::new();
            let mut bytes = 0;
            while out.len() < SAMPLED_VARIANTS && bytes < MAX_RENDERED_BYTES {
                let text = synthetic_prompt(dist.sample(&mut rng), &mut rng);
                let b = render(body(spec, &text, draw_out(&mut rng)));
                bytes += b.len();
                out.push(b);
            }
            out
        }
    }
}

/// The header lines sent with every request: ours, unless `-H` gave the
/// same name, then the user's.
pub fn request_head(url: &Url, api: Api, stream: bool, user: &[(String, String)]) -> String {
    let mut h = format!("POST {} HTTP/1.1\r\n", url.path);
    let has = |n: &str| user.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut ours = vec![
        ("Host", url.authority.as_str()),
        (
            "User-Agent",
            concat!("modelgate-load/", env!("CARGO_PKG_VERSION")),
        ),
        ("Content-Type", "application/json"),
        (
            "Accept",
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        ),
    ];
    if api == Api::Messages {
        ours.push(("anthropic-version", "2023-06-01"));
    }
    for (k, v) in ours {
        if !has(k) {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    for (k, v) in user {
        if !k.eq_ignore_ascii_case("content-length") {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    h
}

/// A whole request: head, Content-Length, body.
pub fn render_request(head: &str, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(head.len() + body.len() + 32);
    r.extend_from_slice(head.as_bytes());
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

/// Parses `-H 'name: value'`. A value `env:NAME` (or ending in a word
/// `env:NAME`, as in `Bearer env:KEY`) takes that word from the
/// environment, so keys stay out of the command line.
pub fn parse_header(
    raw: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("-H {raw:?}: expected 'name: value'"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!("-H {raw:?}: bad header name"));
    }
    let value = value.trim();
    let (prefix, last) = match value.rsplit_once(' ') {
        Some((p, l)) => (Some(p), l),
        None => (None, value),
    };
    let value = match last.strip_prefix("env:") {
        Some(var) => {
            let v = env(var)
                .ok_or_else(|| format!("-H {name}: environment variable {var} is not set"))?;
            match prefix {
                Some(p) => format!("{p} {v}"),
                None => v,
            }
        }
        None => value.to_string(),
    };
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(format!("-H {name}: the value has a line break"));
    }
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_by_path() {
        assert_eq!(Api::from_path("/v1/chat/completions"), Some(Api::Chat));
        assert_eq!(
            Api::from_path("/openai/v1/chat/completions/?x=1"),
            Some(Api::Chat)
        );
        assert_eq!(Api::from_path("/v1/completions"), Some(Api::Completions));
        assert_eq!(Api::from_path("/v1/embeddings"), Some(Api::Embeddings));
        assert_eq!(
            Api::from_path("/anthropic/v1/messages"),
            Some(Api::Messages)
        );
        assert_eq!(Api::from_path("/"), None);
    }

    #[test]
    fn distributions() {
        assert_eq!("128".parse::<Dist>().unwrap(), Dist::Fixed(128));
        assert_eq!(
            "uniform:10:20".parse::<Dist>().unwrap(),
            Dist::Uniform(10, 20)
        );
        assert!("uniform:20:10".parse::<Dist>().is_err());
        assert!("normal:x:1".parse::<Dist>().is_err());
        assert!("0".parse::<Dist>().is_err());
        assert!("gamma:1".parse::<Dist>().is_err());
        let mut rng = fastrand::Rng::with_seed(1);
        for d in ["uniform:10:20", "normal:100:10", "exp:50"] {
            let d: Dist = d.parse().unwrap();
            let n = 20_000;
            let mean = (0..n).map(|_| d.sample(&mut rng) as f64).sum::<f64>() / n as f64;
            assert!((mean - d.mean()).abs() < d.mean() * 0.03, "{d}: {mean}");
        }
        let u: Dist = "uniform:10:20".parse().unwrap();
        assert!((0..1000).all(|_| (10..=20).contains(&u.sample(&mut rng))));
    }

    #[test]
    fn jsonl() {
        let text = "\"hi there\"\n\n{\"prompt\": \"p\", \"max_tokens\": 7}\n{\"messages\": [{\"role\": \"user\", \"content\": \"m\"}], \"temperature\": 0}\n";
        let lines = parse_jsonl("f.jsonl", text).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], Line::Text("hi there".into(), None));
        assert_eq!(lines[1], Line::Text("p".into(), Some(7)));
        assert!(matches!(&lines[2], Line::Body(m) if m.contains_key("temperature")));
        let e = parse_jsonl("f.jsonl", "\"ok\"\n{bad\n").unwrap_err();
        assert!(e.starts_with("f.jsonl:2: not JSON"), "{e}");
        assert!(parse_jsonl("f.jsonl", "[1]")
            .unwrap_err()
            .contains("f.jsonl:1"));
        assert!(parse_jsonl("f.jsonl", "\n\n")
            .unwrap_err()
            .contains("no prompts"));
    }

    fn spec(api: Api, stream: bool, output: Option<Dist>) -> BodySpec {
        BodySpec {
            api,
            model: "m".into(),
            stream,
            output,
            ignore_eos: false,
        }
    }

    fn parsed(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn bodies_per_api() {
        let b = parsed(
            &bodies(
                &spec(Api::Chat, true, Some(Dist::Fixed(9))),
                &Prompts::Fixed("hi".into()),
                "x",
                1,
            )[0],
        );
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["max_tokens"], 9);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        let b = parsed(
            &bodies(
                &spec(Api::Messages, true, None),
                &Prompts::Fixed("hi".into()),
                "x",
                1,
            )[0],
        );
        assert_eq!(b["max_tokens"], 256);
        assert!(b.get("stream_options").is_none());
        let b = parsed(
            &bodies(
                &spec(Api::Completions, false, None),
                &Prompts::Fixed("hi".into()),
                "x",
                1,
            )[0],
        );
        assert_eq!(b["prompt"], "hi");
        assert!(b.get("max_tokens").is_none() && b.get("stream").is_none());
        let b = parsed(
            &bodies(
                &spec(Api::Embeddings, false, None),
                &Prompts::Fixed("hi".into()),
                "x",
                1,
            )[0],
        );
        assert_eq!(b, json!({"model": "m", "input": "hi"}));
        // Synthetic: word counts follow the distribution.
        let v = bodies(
            &spec(Api::Chat, false, Some("uniform:5:7".parse().unwrap())),
            &Prompts::Synthetic(Dist::Fixed(12)),
            "x",
            1,
        );
        assert_eq!(v.len(), SAMPLED_VARIANTS);
        for b in &v {
            let b = parsed(b);
            let words = b["messages"][0]["content"]
                .as_str()
                .unwrap()
                .split(' ')
                .count();
            assert_eq!(words, 12);
            assert!((5..=7).contains(&b["max_tokens"].as_u64().unwrap()));
        }
        // File lines: text lines and merged bodies.
        let lines = parse_jsonl(
            "f",
            "{\"text\":\"a b\",\"output_tokens\":3}\n{\"messages\":[],\"temperature\":0.5}",
        )
        .unwrap();
        let v = bodies(
            &spec(Api::Chat, false, Some(Dist::Fixed(8))),
            &Prompts::File(lines),
            "x",
            1,
        );
        assert_eq!(parsed(&v[0])["max_tokens"], 3);
        assert_eq!(parsed(&v[1])["messages"], json!([]));
        assert_eq!(parsed(&v[1])["temperature"], 0.5);
        assert_eq!(parsed(&v[1])["max_tokens"], 8);
    }

    #[test]
    fn headers_and_requests() {
        let env = |k: &str| (k == "KEY").then(|| "sk-123".to_string());
        assert_eq!(
            parse_header("x-a: b c", env).unwrap(),
            ("x-a".into(), "b c".into())
        );
        assert_eq!(parse_header("x-api-key: env:KEY", env).unwrap().1, "sk-123");
        assert_eq!(
            parse_header("Authorization: Bearer env:KEY", env)
                .unwrap()
                .1,
            "Bearer sk-123"
        );
        assert!(parse_header("x: env:NOPE", env)
            .unwrap_err()
            .contains("NOPE is not set"));
        assert!(parse_header("novalue", env).is_err());
        let url = Url::parse("http://127.0.0.1:9/v1/messages").unwrap();
        let user = vec![("User-Agent".to_string(), "mine".to_string())];
        let head = request_head(&url, Api::Messages, true, &user);
        let req = render_request(&head, b"{}");
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(text.contains("anthropic-version: 2023-06-01\r\n"));
        assert!(text.contains("Accept: text/event-stream\r\n"));
        assert_eq!(text.matches("User-Agent").count(), 1);
        assert!(text.ends_with("User-Agent: mine\r\nContent-Length: 2\r\n\r\n{}"));
    }
}
