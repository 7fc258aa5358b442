//! Tests of `extract`: exact cases and a property test against simd-json.

use super::*;

fn model_of(body: &[u8]) -> Result<(Option<String>, bool), ExtractError> {
    let f = extract(body)?;
    Ok((f.model.map(|m| m.value(body).into_owned()), f.stream))
}

fn ok(body: &str, model: Option<&str>, stream: bool) {
    assert_eq!(
        model_of(body.as_bytes()),
        Ok((model.map(str::to_owned), stream)),
        "body: {body}"
    );
}

fn err(body: &[u8], e: ExtractError) {
    assert_eq!(
        extract(body),
        Err(e),
        "body: {:?}",
        String::from_utf8_lossy(body)
    );
}

#[test]
fn simple_and_spans() {
    let body = br#"{"model":"gpt-4o","stream":true}"#;
    let f = extract(body).unwrap();
    let m = f.model.clone().unwrap();
    assert_eq!(m.span, 9..17);
    assert_eq!(&body[m.span.clone()], br#""gpt-4o""#);
    assert!(!m.escaped);
    assert_eq!(m.raw(body), b"gpt-4o");
    assert!(matches!(m.value(body), Cow::Borrowed("gpt-4o")));
    assert!(f.stream);
    assert_eq!(f.stream_options, None);
    assert_eq!(f.object, 0..body.len());
}

#[test]
fn exact_cases() {
    ok(r#"{}"#, None, false);
    ok(r#"{"model":""}"#, Some(""), false);
    ok(r#"{"stream":true}"#, None, true);
    ok(r#"{"stream":false,"model":"m"}"#, Some("m"), false);
    ok(r#"{"stream":"true","model":"m"}"#, Some("m"), false);
    ok(r#"{"stream":1}"#, None, false);
    ok(r#"{"stream":null}"#, None, false);
    ok(r#"{"stream":[true]}"#, None, false);
    ok(r#"{"stream":{"stream":true}}"#, None, false);
    // Nested "model" keys never match.
    ok(
        r#"{"messages":[{"role":"user","model":"inner"}],"model":"outer"}"#,
        Some("outer"),
        false,
    );
    ok(
        r#"{"messages":[{"model":"inner","stream":true}]}"#,
        None,
        false,
    );
    ok(r#"{"a":{"b":{"model":"deep"}},"stream":true}"#, None, true);
    ok(r#"{"a":[[[{"model":1}]]],"model":"x"}"#, Some("x"), false);
    // "model" inside string values, with escaped quotes.
    ok(
        r#"{"messages":[{"content":"say \"model\": \"evil\", \"stream\": true"}],"model":"good"}"#,
        Some("good"),
        false,
    );
    ok(
        r#"{"prompt":"{\"model\":\"evil\"}","model":"good"}"#,
        Some("good"),
        false,
    );
    ok(
        r#"{"prompt":"ends with backslash \\","model":"m"}"#,
        Some("m"),
        false,
    );
    ok(
        r#"{"prompt":"\\\"model\\\":","model":"m"}"#,
        Some("m"),
        false,
    );
    ok(r#"{"model\"":"no","model":"yes"}"#, Some("yes"), false);
    // Keys that merely resemble.
    ok(r#"{"models":"no","Model":"no","mode":"no"}"#, None, false);
    ok(r#"{"streams":true,"Stream":true}"#, None, false);
    // Unicode escapes in the model, and in the key.
    ok(r#"{"model":"caf\u00e9"}"#, Some("café"), false);
    ok(r#"{"model":"\ud83d\ude00 x"}"#, Some("😀 x"), false);
    ok(
        r#"{"model":"a\/b\\c\"d\n\t"}"#,
        Some("a/b\\c\"d\n\t"),
        false,
    );
    ok(
        r#"{"mod\u0065l":"escaped-key","str\u0065am":true}"#,
        Some("escaped-key"),
        true,
    );
    ok(r#"{"model":"通义千问-max"}"#, Some("通义千问-max"), false);
    // Whitespace everywhere, BOM.
    ok(
        " \r\n\t{ \n\"model\" \t:\r\n \"m\" \n, \"stream\"\n:\ttrue\r\n}\n\t ",
        Some("m"),
        true,
    );
    ok("\u{feff}{\"model\":\"bom\"}", Some("bom"), false);
    // Duplicates: the last one wins.
    ok(r#"{"model":"a","model":"b"}"#, Some("b"), false);
    ok(r#"{"stream":true,"stream":false}"#, None, false);
    ok(r#"{"stream":false,"stream":true}"#, None, true);
    ok(r#"{"model":1,"model":"b"}"#, Some("b"), false);
    err(
        br#"{"model":"a","model":null}"#,
        ExtractError::ModelNotString,
    );
    // Skipping every kind of value.
    ok(
        r#"{"n":-1.5e+10,"z":0,"t":true,"f":false,"nl":null,"a":[1,"]",{"}":"["}],"o":{"x":[],"y":{}},"e":[],"eo":{},"model":"m"}"#,
        Some("m"),
        false,
    );
    ok(
        r#"{"a":"[{","b":"}]","model":"m","c":"\\"}"#,
        Some("m"),
        false,
    );
}

#[test]
fn model_not_string() {
    for v in [
        "1",
        "null",
        "true",
        "false",
        "[\"m\"]",
        "{\"model\":\"m\"}",
        "-0.5",
    ] {
        err(
            format!(r#"{{"model":{v},"stream":true}}"#).as_bytes(),
            ExtractError::ModelNotString,
        );
    }
}

#[test]
fn not_json() {
    for b in [
        &b""[..],
        b"   ",
        b"[]",
        b"\"model\"",
        b"null",
        b"{model:\"m\"}",
        b"{\"model\" \"m\"}",
        b"{\"model\":\"m\";}",
        b"{\"model\":\"m\",}",
        b"{,}",
        b"{\"a\":tru,\"model\":\"m\"}",
        b"{\"a\":nul}",
        b"{\"a\":x}",
        b"{\"a\":[}],\"b\":1}",
        b"{\"a\":{]}",
        b"{\"a\":1]",
        b"{\"model\":\"m\"} x",
        b"{\"model\":\"m\"}{}",
        b"{\"model\":\"bad \\x escape\"}",
        b"{\"model\":\"lone \\ud800\"}",
        b"{\"model\":\"ctl \x01\"}",
        b"{\"model\":\"bad utf8 \xff\"}",
        b"\xEF\xBB{}",
    ] {
        err(b, ExtractError::NotJson);
    }
}

#[test]
fn truncated_prefixes() {
    let body = br#" {"model" : "gpt-4o\"x", "messages":[{"role":"user","content":"hi \"there\"","n":[1,2.5,{"a":null}]}], "stream" : true , "t":-1e3 }"#;
    assert!(extract(body).is_ok());
    let open = body.iter().position(|&c| c == b'{').unwrap();
    for n in 0..body.len() - 1 {
        let e = extract(&body[..n]);
        if n <= open {
            assert_eq!(e, Err(ExtractError::NotJson), "prefix {n}");
        } else {
            assert_eq!(e, Err(ExtractError::Truncated), "prefix {n}");
        }
    }
}

#[test]
fn model_last_after_large_messages() {
    let mut body = String::from(r#"{"messages":["#);
    let mut i = 0;
    while body.len() < 100 * 1024 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"role":"user","content":"turn {i}: \"model\": \"fake-{i}\" {{[ \\ \u00e9 ]}}","model":"nested-{i}","stream":true}}"#
        ));
        i += 1;
    }
    body.push_str(r#"],"stream":true,"model":"last"}"#);
    let f = extract(body.as_bytes()).unwrap();
    assert_eq!(f.model.unwrap().value(body.as_bytes()), "last");
    assert!(f.stream);
}

#[test]
fn deep_nesting() {
    let depth = 5000;
    let body = format!(
        "{{\"a\":{}{},\"model\":\"m\"}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    ok(&body, Some("m"), false);
    let bad = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth - 1));
    assert!(extract(bad.as_bytes()).is_err());
}

#[test]
fn stream_options_span() {
    let body = br#"{"stream_options": {"include_usage":false} ,"stream":true}"#;
    let f = extract(body).unwrap();
    let so = f.stream_options.clone().unwrap();
    assert_eq!(&body[so], br#"{"include_usage":false}"#);
    let body = br#"{"stream_options":null}"#;
    let so = extract(body).unwrap().stream_options.unwrap();
    assert_eq!(&body[so], b"null");
}

// --- rewrites ----------------------------------------------------------

fn parse(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(b)))
}

#[test]
fn rewrite_model_cases() {
    let cases: &[&str] = &[
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi","model":"x"}],"stream":true}"#,
        r#" { "messages" : [] , "model" : "caf\u00e9" , "n": 1 } "#,
        r#"{"model":"a","model":"b","t":0.5}"#,
    ];
    for body in cases {
        let b = body.as_bytes();
        let f = extract(b).unwrap();
        for new in [
            "qwen-max",
            "quote\"back\\slash",
            "ctl\n\u{1}\u{1f}",
            "通义 😀",
            "",
        ] {
            let out = rewrite_model(b, f.model.as_ref().unwrap(), new);
            let mut want = parse(b);
            want["model"] = serde_json::Value::String(new.into());
            assert_eq!(parse(&out), want);
            // Re-extract reads the new model back.
            let f2 = extract(&out).unwrap();
            assert_eq!(f2.model.unwrap().value(&out), new);
            // Everything outside the splice is byte-identical.
            let span = f.model.as_ref().unwrap().span.clone();
            assert_eq!(&out[..span.start], &b[..span.start]);
            assert!(out.ends_with(&b[span.end..]));
        }
    }
}

#[test]
fn rewrite_into_inserts_missing_model() {
    for body in [r#"{}"#, r#" { } "#, r#"{"messages":[]}"#] {
        let b = body.as_bytes();
        let f = extract(b).unwrap();
        let mut out = Vec::new();
        rewrite_into(
            b,
            &f,
            &Rewrite {
                model: Some("m\"1"),
                include_usage: false,
            },
            &mut out,
        );
        let mut want = parse(b);
        want["model"] = "m\"1".into();
        assert_eq!(parse(&out), want, "{body}");
    }
}

fn usage_case(body: &str, client_asked: bool) {
    let b = body.as_bytes();
    let f = extract(b).unwrap();
    let (out, asked) = with_include_usage(b, &f);
    assert_eq!(asked, client_asked, "{body}");
    let got = parse(&out);
    let mut want = parse(b);
    let obj = want.as_object_mut().unwrap();
    match obj.get_mut("stream_options") {
        Some(serde_json::Value::Object(so)) => {
            so.insert("include_usage".into(), true.into());
        }
        _ => {
            obj.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
    }
    assert_eq!(got, want, "{body} -> {}", String::from_utf8_lossy(&out));
    if client_asked {
        assert_eq!(out, b);
    }
    let f2 = extract(&out).unwrap();
    assert_eq!(
        f2.model.map(|m| m.value(&out).into_owned()),
        f.model.map(|m| m.value(b).into_owned())
    );
    assert_eq!(f2.stream, f.stream);
}

#[test]
fn include_usage_cases() {
    usage_case(r#"{"model":"m","stream":true}"#, false);
    usage_case(r#"  {  "model":"m","stream":true}"#, false);
    usage_case(r#"{}"#, false);
    usage_case(r#"{ }"#, false);
    usage_case(
        r#"{"stream_options":{"include_usage":true},"stream":true}"#,
        true,
    );
    usage_case(
        r#"{"stream_options":{"include_usage":false},"stream":true}"#,
        false,
    );
    usage_case(
        r#"{"stream_options":{ "include_usage" : null , "x":1},"stream":true}"#,
        false,
    );
    usage_case(r#"{"stream_options":{"x":{"include_usage":false}}}"#, false);
    usage_case(r#"{"stream_options":{},"stream":true}"#, false);
    usage_case(r#"{"stream_options":{ },"stream":true}"#, false);
    usage_case(r#"{"stream_options":null,"stream":true}"#, false);
    usage_case(r#"{"stream_options":"x","stream":true}"#, false);
    usage_case(r#"{"stream":true,"stream_options":[1]}"#, false);
    usage_case(
        r#"{"stream_options":{"include_usage":false,"include_usage":true}}"#,
        true,
    );
    usage_case(
        r#"{"stream_options":{"include_usage":true,"include_usage":false}}"#,
        false,
    );
    usage_case(r#"{"stream_options":{"incl\u0075de_usage":false}}"#, false);
}

#[test]
fn rewrite_both_in_one_pass() {
    let cases = [
        r#"{"model":"a","stream":true,"messages":[]}"#,
        r#"{"stream":true}"#,
        r#"{}"#,
        r#"{"stream_options":{"include_usage":false},"model":"a"}"#,
        r#"{"model":"a","stream_options":{}}"#,
    ];
    for body in cases {
        let b = body.as_bytes();
        let f = extract(b).unwrap();
        let mut out = Vec::new();
        let asked = rewrite_into(
            b,
            &f,
            &Rewrite {
                model: Some("new"),
                include_usage: true,
            },
            &mut out,
        );
        assert!(!asked);
        let got = parse(&out);
        assert_eq!(got["model"], "new", "{body}");
        assert_eq!(got["stream_options"]["include_usage"], true, "{body}");
        let mut want = parse(b);
        let o = want.as_object_mut().unwrap();
        o.insert("model".into(), "new".into());
        let so = o.entry("stream_options").or_insert(serde_json::json!({}));
        so["include_usage"] = true.into();
        assert_eq!(got, want);
    }
}

// --- property test against simd-json ----------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn ws(r: &mut Rng, out: &mut String) {
    if r.below(3) == 0 {
        for _ in 0..r.below(4) {
            out.push(r.pick(&[' ', '\t', '\n', '\r']));
        }
    }
}

fn gen_string(r: &mut Rng, out: &mut String) {
    const PIECES: &[&str] = &[
        "a",
        "gpt-4o",
        "qwen",
        " ",
        "-",
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\t",
        "\\u00e9",
        "\\ud83d\\ude00",
        "é",
        "中文",
        "😀",
        "\\\"model\\\": \\\"x\\\"",
        "model",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\\\\\\\"",
        "stream",
        "true",
        "\\u0022",
    ];
    out.push('"');
    for _ in 0..r.below(8) {
        out.push_str(r.pick(PIECES));
    }
    out.push('"');
}

fn gen_scalar(r: &mut Rng, out: &mut String) {
    match r.below(6) {
        0 => out.push_str("true"),
        1 => out.push_str("false"),
        2 => out.push_str("null"),
        3 => out.push_str(&format!("{}", r.below(1000) as i64 - 500)),
        4 => out.push_str(r.pick(&["0.5", "-1.25e-3", "1E10", "3.0e+2", "0", "-0"])),
        _ => gen_string(r, out),
    }
}

fn gen_value(r: &mut Rng, depth: u32, out: &mut String) {
    let k = if depth >= 4 { 0 } else { r.below(5) };
    match k {
        0..=2 => gen_scalar(r, out),
        3 => {
            out.push('[');
            ws(r, out);
            let n = r.below(4);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                    ws(r, out);
                }
                gen_value(r, depth + 1, out);
                ws(r, out);
            }
            out.push(']');
        }
        _ => gen_object(r, depth + 1, out, false),
    }
}

const KEYS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "messages",
    "temperature",
    "mode",
    "models",
    "Model",
    "streams",
    "mod\\u0065l",
    "stream\\u005fx",
    "x",
    "\\\"model\\\"",
    "",
];

fn gen_object(r: &mut Rng, depth: u32, out: &mut String, top: bool) {
    out.push('{');
    ws(r, out);
    let n = r.below(if top { 7 } else { 4 });
    for i in 0..n {
        if i > 0 {
            out.push(',');
            ws(r, out);
        }
        let key = r.pick(KEYS);
        out.push('"');
        out.push_str(key);
        out.push('"');
        ws(r, out);
        out.push(':');
        ws(r, out);
        match key {
            "model" | "mod\\u0065l" if r.below(5) != 0 => gen_string(r, out),
            "stream" if r.below(3) != 0 => out.push_str(r.pick(&["true", "false"])),
            _ => gen_value(r, depth, out),
        }
        ws(r, out);
    }
    out.push('}');
}

fn oracle(body: &[u8]) -> Option<Result<(Option<String>, bool), ExtractError>> {
    use simd_json::prelude::*;
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy).ok()?;
    let o = v.as_object()?;
    // simd-json keeps duplicate keys (its `get` answers the first);
    // take the last, as serde_json and the upstreams' parsers do. The
    // top-level objects generated here are small, so the map keeps
    // insertion order.
    let last = |k: &str| o.iter().filter(|(key, _)| *key == k).last().map(|(_, v)| v);
    let stream = last("stream").and_then(|s| s.as_bool()) == Some(true);
    Some(match last("model") {
        None => Ok((None, stream)),
        Some(m) => match m.as_str() {
            Some(s) => Ok((Some(s.to_owned()), stream)),
            None => Err(ExtractError::ModelNotString),
        },
    })
}

/// `rewrite_into` on a valid body: serde_json reads the expected
/// values, and every other field unchanged.
fn check_rewrites(b: &[u8], orig: &serde_json::Value) {
    let f = extract(b).unwrap();
    let mut out = Vec::new();
    let asked = rewrite_into(
        b,
        &f,
        &Rewrite {
            model: Some("rewritten\"é"),
            include_usage: true,
        },
        &mut out,
    );
    let mut want = orig.clone();
    let o = want.as_object_mut().unwrap();
    o.insert("model".into(), "rewritten\"é".into());
    let so = o.entry("stream_options").or_insert(serde_json::Value::Null);
    let was_asked = so.get("include_usage") == Some(&serde_json::Value::Bool(true));
    match so {
        serde_json::Value::Object(m) => {
            m.insert("include_usage".into(), true.into());
        }
        _ => *so = serde_json::json!({"include_usage": true}),
    }
    assert_eq!(asked, was_asked, "{}", String::from_utf8_lossy(b));
    let got: serde_json::Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert_eq!(got, want, "{}", String::from_utf8_lossy(b));
}

#[test]
fn property_against_simd_json() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut models, mut mutated_valid, mut mutated_rejected) = (0, 0, 0);
    for case in 0..4000 {
        let mut s = String::new();
        ws(&mut r, &mut s);
        gen_object(&mut r, 0, &mut s, true);
        ws(&mut r, &mut s);
        let b = s.as_bytes();
        let want = oracle(b).unwrap_or_else(|| panic!("generator made invalid JSON: {s}"));
        // serde_json agrees too (last duplicate wins).
        let sv: serde_json::Value = serde_json::from_slice(b).unwrap();
        assert_eq!(
            want.as_ref().ok().map(|w| w.0.clone()),
            match sv.get("model") {
                Some(serde_json::Value::String(m)) => Some(Some(m.clone())),
                None => Some(None),
                _ => None,
            },
            "case {case}: {s}"
        );
        let got = model_of(b);
        assert_eq!(got, want, "case {case}: {s}");
        if got.is_ok() {
            check_rewrites(b, &sv);
        }
        if let Ok((Some(_), _)) = &got {
            models += 1;
        }
        // Every strict prefix past the `{` is Truncated (never a panic).
        let open = b.iter().position(|&c| c == b'{').unwrap();
        let end = b.iter().rposition(|&c| c == b'}').unwrap();
        let cut = open + 1 + r.below((end - open) as u64) as usize;
        assert_eq!(
            extract(&b[..cut]),
            Err(ExtractError::Truncated),
            "{s} @{cut}"
        );
        // Mutated bodies: no panic; when we accept, simd-json agrees.
        let mut m = b.to_vec();
        for _ in 0..1 + r.below(3) {
            if m.is_empty() {
                break;
            }
            let at = r.below(m.len() as u64) as usize;
            match r.below(3) {
                0 => m[at] = r.pick(b"{}[]\",:\\ tx0"),
                1 => {
                    m.remove(at);
                }
                _ => m.insert(at, r.pick(b"{}[]\",:\\ ")),
            }
        }
        let got = model_of(&m);
        match oracle(&m) {
            Some(want) => {
                mutated_valid += 1;
                assert_eq!(got, want, "mutated: {}", String::from_utf8_lossy(&m));
            }
            None if got.is_err() => mutated_rejected += 1,
            None => {}
        }
    }
    assert!(models > 1000, "generator too rarely made a string model");
    // Both kinds of mutant occur; invalid ones are mostly refused.
    eprintln!("models {models}, mutants valid {mutated_valid}, refused {mutated_rejected}");
    assert!(mutated_valid > 100 && mutated_rejected > 2000);
}

#[test]
fn random_bytes_never_panic() {
    let mut r = Rng(12345);
    for _ in 0..20000 {
        let n = r.below(40) as usize;
        let mut b = vec![b'{'];
        for _ in 0..n {
            b.push(r.pick(b"{}[]\"\\:, tfnrue0-.am\xff"));
        }
        let _ = extract(&b);
        if let Ok(f) = extract(&b) {
            let _ = with_include_usage(&b, &f);
            if let Some(m) = &f.model {
                let _ = m.value(&b);
                let _ = rewrite_model(&b, m, "x");
            }
        }
    }
}

#[test]
fn value_on_wrong_body_does_not_panic() {
    let m = ModelField {
        span: 10..20,
        escaped: true,
    };
    assert_eq!(m.value(b"short"), "");
    assert_eq!(m.raw(b"short"), b"");
}

// --- multipart ----------------------------------------------------------

#[test]
fn boundary_parsing() {
    assert_eq!(
        multipart_boundary(b"multipart/form-data; boundary=----abc123"),
        Some(&b"----abc123"[..])
    );
    assert_eq!(
        multipart_boundary(b"Multipart/Form-Data;charset=utf-8;BOUNDARY=\"a b;c\""),
        Some(&b"a b;c"[..])
    );
    assert_eq!(
        multipart_boundary(b"multipart/form-data ; boundary = x ; foo=bar"),
        Some(&b"x"[..])
    );
    assert_eq!(multipart_boundary(b"multipart/form-data"), None);
    assert_eq!(multipart_boundary(b"multipart/form-data; boundary="), None);
    assert_eq!(
        multipart_boundary(b"multipart/form-data; boundary=\"\""),
        None
    );
    assert_eq!(multipart_boundary(b"application/json; boundary=x"), None);
    assert_eq!(multipart_boundary(b""), None);
}

const B: &[u8] = b"----WebKitFormBoundary7MA4YWxkTrZu0gW";

fn form(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, extra, content) in parts {
        v.extend_from_slice(b"--");
        v.extend_from_slice(B);
        v.extend_from_slice(b"\r\n");
        v.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{extra}\r\n").as_bytes(),
        );
        if !extra.is_empty() {
            v.extend_from_slice(b"Content-Type: image/png\r\n");
        }
        v.extend_from_slice(b"\r\n");
        v.extend_from_slice(content);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"--");
    v.extend_from_slice(B);
    v.extend_from_slice(b"--\r\n");
    v
}

#[test]
fn multipart_fields() {
    let png: &[u8] = b"\x89PNG\r\n\x1a\n--not-a-boundary\r\n--\r\nname=\"model\"\r\n\r\nfake";
    let body = form(&[
        ("image", "; filename=\"model.png\"", png),
        ("prompt", "", b"a cat named \"model\""),
        ("model", "", b"dall-e-2"),
        ("n", "", b"1"),
    ]);
    assert_eq!(multipart_field(&body, B, "model"), Some(&b"dall-e-2"[..]));
    assert_eq!(multipart_field(&body, B, "image"), Some(png));
    assert_eq!(multipart_field(&body, B, "n"), Some(&b"1"[..]));
    assert_eq!(
        multipart_field(&body, B, "prompt"),
        Some(&b"a cat named \"model\""[..])
    );
    assert_eq!(multipart_field(&body, B, "size"), None);
    assert_eq!(multipart_field(&body, B, "Model"), None);
    assert_eq!(multipart_field(&body, b"other", "model"), None);
    assert_eq!(multipart_field(&body, b"", "model"), None);

    // Empty value, and model first.
    let body = form(&[("model", "", b""), ("x", "", b"y")]);
    assert_eq!(multipart_field(&body, B, "model"), Some(&b""[..]));
    assert_eq!(multipart_field(&body, B, "x"), Some(&b"y"[..]));

    // A body cut inside or right after the model value: not within body.
    let body = form(&[("model", "", b"gpt-image-1"), ("x", "", b"y")]);
    let at = memmem::find(&body, b"gpt-image-1").unwrap();
    for cut in 0..at + 13 {
        assert_eq!(multipart_field(&body[..cut], B, "model"), None, "cut {cut}");
    }
    assert_eq!(
        multipart_field(&body[..at + 13 + 2 + B.len()], B, "model"),
        Some(&b"gpt-image-1"[..])
    );
}

#[test]
fn multipart_variants() {
    // Preamble, LF-only line ends, unquoted and escaped names, extra headers,
    // header names in other cases.
    let body = b"preamble\r\n--xyz\nContent-Type: text/plain\nCONTENT-DISPOSITION: form-data; name=model\n\nm1\n--xyz\ncontent-disposition: form-data; name=\"a\\\"b\"\n\nv2\n--xyz--";
    assert_eq!(multipart_field(body, b"xyz", "model"), Some(&b"m1"[..]));
    assert_eq!(multipart_field(body, b"xyz", "a\"b"), Some(&b"v2"[..]));
    // A line that only starts with the boundary text inside content.
    let body = b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx--b y\r\n-b\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n";
    assert_eq!(multipart_field(body, b"b", "f"), Some(&b"x--b y\r\n-b"[..]));
    assert_eq!(multipart_field(body, b"b", "model"), Some(&b"m"[..]));
    // filename= contains "name=" but is not the name.
    let body = b"--b\r\nContent-Disposition: form-data; filename=\"model\"; name=\"img\"\r\n\r\nx\r\n--b--";
    assert_eq!(multipart_field(body, b"b", "model"), None);
    assert_eq!(multipart_field(body, b"b", "img"), Some(&b"x"[..]));
    // Garbage never panics.
    let mut r = Rng(7);
    for _ in 0..5000 {
        let n = r.below(60) as usize;
        let v: Vec<u8> = (0..n)
            .map(|_| r.pick(b"-b\r\n:;=\"\\ name=modelContent-Disposition"))
            .collect();
        let _ = multipart_field(&v, b"b", "model");
        let _ = multipart_boundary(&v);
    }
}

#[test]
fn prefix_gives_the_model_seen_before_the_cut() {
    let body = br#"{"model":"big","stream":true,"messages":[{"role":"user","content":"aaaa"#;
    let f = extract_prefix(body).unwrap();
    assert_eq!(f.model.unwrap().value(body), "big");
    assert!(f.stream);
    let late = br#"{"messages":[{"role":"user","content":"aaaa"#;
    assert_eq!(extract_prefix(late), Err(ExtractError::Truncated));
    // A whole body reads the same either way.
    let whole = br#"{"model":"m","messages":[]}"#;
    assert_eq!(extract_prefix(whole), extract(whole));
}

#[test]
fn multipart_scan_validates_and_finds_the_field() {
    let png: &[u8] = b"\x89PNG\r\n\x1a\n--not-a-boundary\r\nfake";
    let body = form(&[
        ("model", "", b"dall-e-2"),
        ("image", "; filename=\"a.png\"", png),
        ("prompt", "", b"a cat"),
    ]);
    let scan = multipart_scan(&body, B, "model", true).unwrap();
    assert!(scan.closed);
    assert_eq!(&body[scan.field.clone().unwrap()], b"dall-e-2");
    let image = multipart_scan(&body, B, "image", true)
        .unwrap()
        .field
        .unwrap();
    assert_eq!(&body[image], png);
    assert_eq!(multipart_scan(&body, B, "size", true).unwrap().field, None);

    // Any prefix is well formed so far; the field shows once its part is whole.
    let at = memmem::find(&body, b"dall-e-2").unwrap();
    let end_of_part = at + 8 + 2 + 2 + B.len();
    // (The close delimiter is whole from `len - 2` on.)
    for cut in 0..body.len() - 2 {
        let r = multipart_scan(&body[..cut], B, "model", false);
        if cut < 2 + B.len() {
            assert_eq!(r, Err(MultipartError::NoDelimiter), "cut {cut}");
            continue;
        }
        let scan = r.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(scan.field.is_some(), cut >= end_of_part, "cut {cut}");
        assert!(!scan.closed);
        // Cut whole bodies are unclosed.
        assert!(
            multipart_scan(&body[..cut], B, "model", true).is_err(),
            "cut {cut}"
        );
    }

    // Splicing a new model keeps every other byte.
    let field = multipart_scan(&body, B, "model", true)
        .unwrap()
        .field
        .unwrap();
    let spliced = splice(&body, &field, b"gpt-image-1");
    assert_eq!(
        multipart_field(&spliced, B, "model"),
        Some(&b"gpt-image-1"[..])
    );
    assert_eq!(multipart_field(&spliced, B, "image"), Some(png));
    assert_eq!(spliced.len(), body.len() + 3);

    // Malformed bodies.
    let bad: &[(&[u8], MultipartError)] = &[
        (b"", MultipartError::NoDelimiter),
        (b"{\"model\":\"m\"}", MultipartError::NoDelimiter),
        (
            b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n",
            MultipartError::Unclosed,
        ),
        (
            b"--xyz junk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--xyz--",
            MultipartError::BadDelimiterLine,
        ),
        (
            b"--xyz\r\nno colon here\r\n\r\nv\r\n--xyz--",
            MultipartError::BadPartHeaders,
        ),
        (
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n--xyz--",
            MultipartError::NotFormData,
        ),
        (
            b"--xyz\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--xyz--",
            MultipartError::NotFormData,
        ),
        (
            b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n",
            MultipartError::BadPartHeaders,
        ),
    ];
    for (body, want) in bad {
        assert_eq!(
            multipart_scan(body, b"xyz", "model", true),
            Err(*want),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Padding after a delimiter and an epilogue are fine.
    let ok = b"--xyz \t\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--xyz--\r\nepilogue";
    let scan = multipart_scan(ok, b"xyz", "model", true).unwrap();
    assert_eq!(&ok[scan.field.unwrap()], b"m");
}

// --- the block scan of nested values ------------------------------------

#[test]
fn structural_mask_matches_the_byte_loop() {
    for c in 0..=255u8 {
        for k in 0..16 {
            let mut block = [b'a'; 16];
            block[k] = c;
            assert_eq!(
                structural_mask16(&block),
                structural_mask16_bytes(&block),
                "byte {c:#x} at {k}"
            );
        }
    }
}

/// The byte-at-a-time walk `nested_end` replaced: the oracle.
fn nested_end_bytewise(b: &[u8], mut i: usize) -> Res<usize> {
    let mut stack = Vec::new();
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(ExtractError::Truncated),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
            }
            c @ (b'{' | b'[') => stack.push(c),
            c @ (b'}' | b']') => {
                let open = stack.pop().ok_or(ExtractError::NotJson)?;
                if (open == b'{') != (c == b'}') {
                    return Err(ExtractError::NotJson);
                }
                if stack.is_empty() {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(ExtractError::Truncated)
}

#[test]
fn nested_end_agrees_with_the_bytewise_walk() {
    let mut r = Rng(99);
    let mut ends = 0;
    for _ in 0..200_000 {
        let n = r.below(70) as usize;
        let mut b = vec![r.pick(b"{[")];
        for _ in 0..n {
            // Escapes and quotes land on every block boundary.
            b.push(r.pick(b"{}[]\"\"\\\\aaaa"));
        }
        let want = nested_end_bytewise(&b, 0);
        assert_eq!(nested_end(&b, 0), want, "{:?}", String::from_utf8_lossy(&b));
        ends += usize::from(want.is_ok());
    }
    assert!(ends > 5_000, "only {ends} cases closed their value");
}

/// Calls `f(key, value)` for each member of the JSON object at the start
/// of `b` (after whitespace); keys are the raw text between the quotes.
/// The full member-by-member walk: the oracle for `top_level_members`.
fn object_members<'a>(
    b: &'a [u8],
    mut f: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<usize, ExtractError> {
    let i = skip_ws(b, 0);
    if i == b.len() || b[i] != b'{' {
        return Err(ExtractError::NotJson);
    }
    walk_object(b, i, |m| {
        f(&b[m.key.clone()], &b[m.value.clone()]);
        Ok(())
    })
}

#[test]
fn top_level_members_agrees_with_the_full_walk() {
    let mut r = Rng(7);
    let names: [&[u8]; 3] = [b"model", b"messages", b"stream"];
    let mut found = 0;
    for _ in 0..20_000 {
        let mut s = String::new();
        ws(&mut r, &mut s);
        gen_object(&mut r, 0, &mut s, true);
        let b = s.as_bytes();
        let mut want = Vec::new();
        object_members(b, |k, v| {
            if let Some(n) = names.iter().position(|name| *name == k) {
                want.push((n, v));
            }
        })
        .expect("generated objects are valid");
        let mut got = Vec::new();
        top_level_members(b, &names, |n, v| got.push((n, v)));
        assert_eq!(got, want, "{s}");
        found += want.len();
    }
    assert!(found > 10_000, "only {found} members named");
}
