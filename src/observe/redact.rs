//! Credentials removed from logged bodies: the values of JSON members
//! whose key names a credential (`api_key`, `password`, `access_token`,
//! `authorization`, ...) become `"[REDACTED]"`, at any depth. Works on
//! any bytes (a body cut short, or not JSON at all) and stops at a cap.

const REDACTED: &[u8] = b"\"[REDACTED]\"";

/// Whether a member key names a credential. `max_tokens` and the like
/// are not: only whole words such as `token` count, or the suffixes below.
pub fn sensitive_key(raw: &[u8]) -> bool {
    let mut k = [0u8; 64];
    let mut n = 0;
    for &c in raw {
        if c == b'-' || c == b'_' {
            continue;
        }
        if n == k.len() {
            return false;
        }
        k[n] = c.to_ascii_lowercase();
        n += 1;
    }
    let k = &k[..n];
    const EXACT: [&[u8]; 5] = [b"token", b"key", b"auth", b"bearer", b"cookie"];
    const PART: [&[u8]; 11] = [
        b"apikey",
        b"secret",
        b"password",
        b"passwd",
        b"accesstoken",
        b"refreshtoken",
        b"authtoken",
        b"sessiontoken",
        b"authorization",
        b"credential",
        b"privatekey",
    ];
    EXACT.contains(&k) || PART.iter().any(|p| k.windows(p.len()).any(|w| w == *p))
}

/// End of the string starting at `b[i] == '"'` (past its closing quote),
/// or `b.len()` when it is cut.
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// End of the object or array starting at `b[i]`.
fn nested_end(b: &[u8], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => {
                j = string_end(b, j);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Appends `body` to `out` with credential values replaced, stopping once
/// `cap` bytes were written. Returns whether it stopped early.
pub fn redact_into(body: &[u8], cap: usize, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let mut redact_next = false;
    let mut i = 0;
    while i < body.len() {
        if out.len() - start >= cap {
            out.truncate(start + cap);
            return true;
        }
        let c = body[i];
        if c == b'"' {
            let end = string_end(body, i);
            let after = skip_ws(body, end);
            if body.get(after) == Some(&b':') {
                // A key: decide about the value that follows.
                redact_next = sensitive_key(&body[i + 1..end.saturating_sub(1).max(i + 1)]);
                out.extend_from_slice(&body[i..end]);
            } else if redact_next {
                out.extend_from_slice(REDACTED);
                redact_next = false;
            } else {
                out.extend_from_slice(&body[i..end]);
            }
            i = end;
            continue;
        }
        if redact_next && !c.is_ascii_whitespace() && c != b':' {
            // A non-string credential: a number, or a whole object.
            let end = match c {
                b'{' | b'[' => nested_end(body, i),
                _ => {
                    let mut j = i;
                    while j < body.len() && !matches!(body[j], b',' | b'}' | b']') {
                        j += 1;
                    }
                    j
                }
            };
            out.extend_from_slice(REDACTED);
            redact_next = false;
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if out.len() - start > cap {
        out.truncate(start + cap);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> String {
        let mut out = Vec::new();
        redact_into(s.as_bytes(), 1 << 20, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keys() {
        for k in [
            "api_key",
            "apiKey",
            "x-api-key",
            "password",
            "client_secret",
            "access_token",
            "Authorization",
            "token",
            "aws_secret_access_key",
            "credentials",
        ] {
            assert!(sensitive_key(k.as_bytes()), "{k}");
        }
        for k in [
            "max_tokens",
            "model",
            "messages",
            "content",
            "total_tokens",
            "keys_count",
        ] {
            assert!(!sensitive_key(k.as_bytes()), "{k}");
        }
    }

    #[test]
    fn values_are_replaced_at_any_depth() {
        let got = redact(
            r#"{"model":"m","api_key":"sk-secret","nested":{"password" : "hunter2","n":[{"token":12345}]},
               "creds":{"credentials":{"user":"u","pass":"p"}},"messages":[{"content":"api_key is fine here"}]}"#,
        );
        assert!(!got.contains("sk-secret") && !got.contains("hunter2") && !got.contains("12345"));
        assert!(!got.contains("\"pass\":\"p\""), "{got}");
        assert!(got.contains(r#""api_key":"[REDACTED]""#), "{got}");
        assert!(got.contains(r#""password" : "[REDACTED]""#), "{got}");
        assert!(got.contains(r#""token":"[REDACTED]"}"#), "{got}");
        assert!(got.contains(r#""content":"api_key is fine here""#));
        assert!(got.contains(r#""model":"m""#));
        // Still valid JSON.
        serde_json::from_str::<serde_json::Value>(&got).unwrap();
    }

    #[test]
    fn escaped_quotes_and_cut_bodies() {
        let got = redact(r#"{"a":"say \"api_key\": x","secret":"s\"x"}"#);
        assert_eq!(got, r#"{"a":"say \"api_key\": x","secret":"[REDACTED]"}"#);
        // A body cut inside a credential never shows its start.
        let got = redact(r#"{"api_key":"sk-abcdef"#);
        assert_eq!(got, r#"{"api_key":"[REDACTED]""#);
    }

    #[test]
    fn cap() {
        let mut out = Vec::new();
        let body = format!("{{\"content\":\"{}\"}}", "x".repeat(1000));
        assert!(redact_into(body.as_bytes(), 100, &mut out));
        assert_eq!(out.len(), 100);
        let mut out = Vec::new();
        assert!(!redact_into(b"{}", 100, &mut out));
        assert_eq!(out, b"{}");
    }
}
