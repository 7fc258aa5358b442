//! Tests of the head parser: exact bytes for each strictness rule.

use super::*;

fn parse(buf: &[u8]) -> Result<RequestHead, ParseError> {
    parse_request(buf, &Limits::default(), &mut Vec::new())
}

fn invalid(buf: &[u8]) -> &'static str {
    match parse(buf) {
        Err(ParseError::Invalid(why)) => why,
        other => panic!(
            "expected Invalid for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

const CHAT: &[u8] = b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"model\":\"gpt-4\"}";

#[test]
fn parses_a_simple_post() {
    let h = parse(CHAT).unwrap();
    assert_eq!(h.method, Method::Post);
    assert_eq!(h.method_bytes(CHAT), b"POST");
    assert_eq!(h.target_str(CHAT), "/v1/chat/completions?x=1");
    assert_eq!(h.path(CHAT), "/v1/chat/completions");
    assert_eq!(h.query(CHAT), Some("x=1"));
    assert_eq!(h.minor_version, 1);
    assert_eq!(h.headers.len(), 3);
    assert_eq!(h.framing, Framing::Length(17));
    assert_eq!(h.host_bytes(CHAT), Some(&b"api.example.com"[..]));
    assert!(h.keep_alive);
    assert!(!h.upgrade && !h.expect_continue && !h.transfer_coded);
    assert_eq!(&CHAT[h.head_len..], b"{\"model\":\"gpt-4\"}");
    assert_eq!(
        h.header(CHAT, "content-TYPE"),
        Some(&b"application/json"[..])
    );
    assert_eq!(h.header(CHAT, "x-missing"), None);
    assert_eq!(h.headers[0].name_in(CHAT), b"Host");
    assert!(h.has_body());
}

#[test]
fn scratch_vector_is_reused() {
    let mut scratch = Vec::with_capacity(16);
    let ptr = scratch.as_ptr();
    let h = parse_request(CHAT, &Limits::default(), &mut scratch).unwrap();
    assert_eq!(h.headers.as_ptr(), ptr);
    h.recycle(&mut scratch);
    let h = parse_request(CHAT, &Limits::default(), &mut scratch).unwrap();
    assert_eq!(h.headers.as_ptr(), ptr);
    assert_eq!(h.headers.len(), 3);
    // On error the scratch vector stays where it was.
    h.recycle(&mut scratch);
    assert!(parse_request(b"GET / HTTP/1.1\r\n\r\n", &Limits::default(), &mut scratch).is_err());
    assert_eq!(scratch.as_ptr(), ptr);
}

/// Every byte position of a few valid heads gets a CR, LF, CRLF, SP,
/// HTAB, NUL or colon inserted or substituted: whatever is accepted must
/// still have only CRLF line endings (this also exercises the
/// debug-assertion that the O(lines) check agrees with a full scan).
#[test]
fn accepted_heads_have_only_crlf_line_endings() {
    let bases: [&[u8]; 4] = [
        &CHAT[..CHAT.len() - 17],
        b"\r\nGET /a?b HTTP/1.1\r\nHost: x\r\nA: b c\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ];
    let crlf_only = |h: &[u8]| {
        h.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => h.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && h[i - 1] == b'\r',
            _ => true,
        })
    };
    for base in bases {
        for i in 0..=base.len() {
            for ins in [&b"\n"[..], b"\r", b"\r\n", b" ", b"\t", b"\0", b":"] {
                let mut variants = vec![[&base[..i], ins, &base[i..]].concat()];
                if i < base.len() {
                    variants.push([&base[..i], ins, &base[i + 1..]].concat());
                }
                for m in variants {
                    let len = if m.starts_with(b"HTTP") {
                        resp(&m, Method::Get).map(|r| r.head_len)
                    } else {
                        parse(&m).map(|h| h.head_len)
                    };
                    if let Ok(len) = len {
                        assert!(crlf_only(&m[..len]), "{:?}", String::from_utf8_lossy(&m));
                    }
                }
            }
        }
    }
}

#[test]
fn values_are_trimmed() {
    let b = b"GET / HTTP/1.1\r\nHost:  a.b \t\r\nX-E:\r\nX-T:\tv  v\t\r\n\r\n";
    let h = parse(b).unwrap();
    assert_eq!(h.header(b, "host"), Some(&b"a.b"[..]));
    assert_eq!(h.header(b, "x-e"), Some(&b""[..]));
    assert_eq!(h.header(b, "x-t"), Some(&b"v  v"[..]));
}

#[test]
fn incomplete_heads() {
    let full = CHAT;
    let end = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for cut in 0..end {
        assert_eq!(
            parse(&full[..cut]),
            Err(ParseError::Incomplete),
            "cut at {cut}"
        );
    }
    assert!(parse(&full[..end]).is_ok());
}

#[test]
fn pipelined_requests() {
    let buf = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    let a = parse(buf).unwrap();
    assert_eq!(a.path(buf), "/a");
    assert_eq!(a.framing, Framing::None);
    let rest = &buf[a.head_len..];
    let b = parse(rest).unwrap();
    assert_eq!(b.path(rest), "/b");
    assert_eq!(b.framing, Framing::Length(3));
    let rest = &rest[b.head_len + 3..];
    let c = parse(rest).unwrap();
    assert_eq!(c.path(rest), "/c");
    assert_eq!(c.head_len, rest.len());
}

#[test]
fn leading_empty_lines_are_skipped() {
    let b = b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let h = parse(b).unwrap();
    assert_eq!(h.head_len, b.len());
    assert_eq!(h.method_range, 4..7);
    assert_eq!(
        invalid(b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "bare LF line ending"
    );
}

#[test]
fn both_content_length_and_transfer_encoding() {
    invalid(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    invalid(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    );
}

#[test]
fn content_length_rules() {
    let ok = |v: &str| {
        let b = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {v}\r\n\r\n");
        parse(b.as_bytes()).map(|h| h.framing)
    };
    assert_eq!(ok("0"), Ok(Framing::Length(0)));
    assert_eq!(ok("007"), Ok(Framing::Length(7)));
    assert_eq!(ok("42, 42"), Ok(Framing::Length(42)));
    assert_eq!(ok("42,42,42"), Ok(Framing::Length(42)));
    #[rustfmt::skip]
    let list = ["", "4 2", "42,43", "+4", "-1", "0x10", "4a", "42,", ",42", "1e3", "18446744073709551616", "99999999999999999999",];
    for bad in list {
        assert!(
            matches!(ok(bad), Err(ParseError::Invalid(_))),
            "{bad:?} accepted"
        );
    }
    assert_eq!(ok("18446744073709551615"), Err(ParseError::BodyTooLarge));
    // Repeated identical headers are fine, differing ones are not.
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(parse(b).unwrap().framing, Framing::Length(5));
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(invalid(b), "differing Content-Length values");
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5, 6\r\n\r\n";
    assert_eq!(invalid(b), "differing Content-Length values");
}

#[test]
fn transfer_encoding_rules() {
    let te = |v: &str| {
        let b = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {v}\r\n\r\n");
        parse(b.as_bytes()).map(|h| (h.framing, h.transfer_coded))
    };
    assert_eq!(te("chunked"), Ok((Framing::Chunked, false)));
    assert_eq!(te("CHUNKED"), Ok((Framing::Chunked, false)));
    assert_eq!(te("gzip, chunked"), Ok((Framing::Chunked, true)));
    #[rustfmt::skip]
    let list = ["", "identity", "pigeons", "chunked, gzip", "chunked, chunked", "chunkedchunked", "gzip", "chunked;q=1", "chunked,", "x, chunked",];
    for bad in list {
        assert!(
            matches!(te(bad), Err(ParseError::Invalid(_))),
            "{bad:?} accepted"
        );
    }
    // Across several header lines.
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(parse(b).unwrap().framing, Framing::Chunked);
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(invalid(b), "chunked applied more than once");
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(invalid(b), "chunked is not the final transfer-coding");
    // HTTP/1.0 with Transfer-Encoding.
    invalid(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
}

#[test]
fn obs_fold_is_refused() {
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n");
    // Refused before the head is complete.
    invalid(b"GET / HTTP/1.1\r\n Host: foo");
}

#[test]
fn bare_cr_is_refused() {
    for b in [
        &b"GET / HTTP/1.1\rHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX\r: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\rX",
        b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
    ] {
        invalid(b);
    }
}

#[test]
fn bare_lf_is_refused() {
    for b in [
        &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX:\nTransfer-Encoding: chunked\r\n\r\n",
        // Partial heads too.
        b"GET / HTTP/1.1\nHost",
    ] {
        assert_eq!(
            invalid(b),
            "bare LF line ending",
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn control_bytes_in_values() {
    for c in (0u8..0x20)
        .filter(|&c| c != b'\t' && c != b'\r' && c != b'\n')
        .chain([0x7f])
    {
        let mut b = b"GET / HTTP/1.1\r\nHost: x\r\nX: a".to_vec();
        b.push(c);
        b.extend_from_slice(b"b\r\n\r\n");
        invalid(&b);
    }
    let b = b"GET / HTTP/1.1\r\nHost: x\r\nX: a\tb\xff\x80\r\n\r\n";
    assert_eq!(parse(b).unwrap().header(b, "x"), Some(&b"a\tb\xff\x80"[..]));
}

#[test]
fn header_name_rules() {
    invalid(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nFo@: b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nX(y): b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: x\r\nX\xc3\xa9: b\r\n\r\n");
}

#[test]
fn method_rules() {
    invalid(b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"get / HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"MKCOLA / HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"ANNOUNCE / HTTP/1.0\r\n\r\n");
    invalid(b" GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(invalid(b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n").contains("PRI"));
    invalid(b"MKCOLA");
    for (m, e) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("PATCH", Method::Patch),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("TRACE", Method::Trace),
        ("PROPFIND", Method::Other),
        ("M-SEARCH", Method::Other),
    ] {
        let b = format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(parse(b.as_bytes()).unwrap().method, e);
    }
}

#[test]
fn version_rules() {
    for b in [
        &b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/0.9\r\n\r\n",
        b"GET / http/1.1\r\nHost: x\r\n\r\n",
        b"GET / RTSP/1.0\r\nHost: x\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
        b"GET / HTTP/5.6",
    ] {
        invalid(b);
    }
    let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(h.minor_version, 0);
    assert_eq!(h.host, None);
}

#[test]
fn target_rules() {
    invalid(b"GET  HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET /\xce\xb4 HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"GET http://a b/ HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"CONNECT x HTTP/1.1\r\nHost: x\r\n\r\n");
    invalid(b"CONNECT x: HTTP/1.1\r\nHost: x\r\n\r\n");
    // Early refusal of a non-ASCII target before the head is complete.
    invalid(b"GET /\xce\xb4 HTTP/1.1\r\nHo");

    let b = b"GET http://User:pw@Example.com:8080/p/q?r=1#f HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = parse(b).unwrap();
    assert_eq!(h.host_bytes(b), Some(&b"Example.com:8080"[..]));
    assert_eq!(h.path(b), "/p/q");
    assert_eq!(h.query(b), Some("r=1"));
    let b = b"GET http://hypnotoad.org?hail=all HTTP/1.1\r\nHost: x\r\n\r\n";
    let h = parse(b).unwrap();
    assert_eq!(h.path(b), "/");
    assert_eq!(h.query(b), Some("hail=all"));
    assert_eq!(h.host_bytes(b), Some(&b"hypnotoad.org"[..]));
    let b = b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(parse(b).unwrap().path(b), "*");
    let b = b"GET /a?b?c#d HTTP/1.1\r\nHost: x\r\n\r\n";
    let h = parse(b).unwrap();
    assert_eq!((h.path(b), h.query(b)), ("/a", Some("b?c")));
    let b = b"GET /with_\"q\"|{}^`\\ HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(parse(b).is_ok());
}

#[test]
fn host_rules() {
    assert_eq!(invalid(b"GET / HTTP/1.1\r\n\r\n"), MISSING_HOST);
    assert_eq!(
        invalid(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        "more than one Host header"
    );
    assert_eq!(
        invalid(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
        "more than one Host header"
    );
    invalid(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    invalid(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n");
    invalid(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n");
    let b = b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n";
    assert_eq!(parse(b).unwrap().host_bytes(b), Some(&b"[::1]:8080"[..]));
    let b = b"GET / HTTP/1.1\r\nHost:\r\n\r\n";
    assert_eq!(parse(b).unwrap().host_bytes(b), Some(&b""[..]));
    let mut s = Vec::new();
    let h = parse_request_any_host(b"GET / HTTP/1.1\r\n\r\n", &Limits::default(), &mut s).unwrap();
    assert_eq!(h.host, None);
}

#[test]
fn keep_alive_rules() {
    for (conn, v11, v10) in [
        ("", true, false),
        ("Connection: close\r\n", false, false),
        ("Connection: Keep-Alive, CLOSE\r\n", false, false),
        ("Connection: foo\r\nConnection: close\t\r\n", false, false),
        ("Connection: closed\r\n", true, false),
        ("Connection: keep-alive\r\n", true, true),
        ("Connection: foo ,KEEP-ALIVE\r\n", true, true),
    ] {
        let b = format!("GET / HTTP/1.1\r\nHost: x\r\n{conn}\r\n");
        assert_eq!(parse(b.as_bytes()).unwrap().keep_alive, v11, "1.1 {conn:?}");
        let b = format!("GET / HTTP/1.0\r\n{conn}\r\n");
        assert_eq!(parse(b.as_bytes()).unwrap().keep_alive, v10, "1.0 {conn:?}");
    }
}

#[test]
fn upgrade_and_expect() {
    let b = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let h = parse(b).unwrap();
    assert!(h.upgrade && h.keep_alive);
    for b in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        assert!(!parse(b).unwrap().upgrade);
    }
    let b = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let h = parse(b).unwrap();
    assert!(h.upgrade);
    assert_eq!(h.method, Method::Connect);
    assert_eq!(h.path(b), "");
    assert_eq!(h.host_bytes(b), Some(&b"example.com:443"[..]));
    invalid(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");

    let b = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
    assert!(parse(b).unwrap().expect_continue);
    let b = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    assert!(!parse(b).unwrap().expect_continue);
}

#[test]
fn limits() {
    let small = Limits {
        max_header_bytes: 64,
        max_headers: 3,
        max_body_bytes: 10,
    };
    let p = |b: &[u8]| parse_request(b, &small, &mut Vec::new());
    // Head larger than the limit, complete or not.
    let big = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(p(big), Err(ParseError::HeadTooLarge));
    assert_eq!(p(&big[..70]), Err(ParseError::HeadTooLarge));
    assert_eq!(p(&big[..63]), Err(ParseError::Incomplete));
    // A head of exactly the limit is fine, with body bytes after it.
    let exact = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    assert_eq!(exact.len() - 4, 64);
    assert_eq!(p(exact).unwrap().head_len, 64);
    assert_eq!(p(&exact[..64]).unwrap().head_len, 64);
    assert_eq!(p(&exact[..63]), Err(ParseError::Incomplete));
    // Too many headers.
    let b = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(p(b), Err(ParseError::TooManyHeaders));
    assert_eq!(p(b).unwrap_err().status(), 431);
    let b = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(p(b).is_ok());
    // Declared body too large.
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(p(b), Err(ParseError::BodyTooLarge));
    assert_eq!(p(b).unwrap_err().status(), 413);
    let b = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(p(b).unwrap().framing, Framing::Length(10));
    // More headers than the stack array holds.
    let many = Limits {
        max_headers: 300,
        ..Limits::default()
    };
    let mut b = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..250 {
        b.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    b.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_request(&b, &many, &mut Vec::new())
            .unwrap()
            .headers
            .len(),
        251
    );
    assert_eq!(parse(&b), Err(ParseError::TooManyHeaders));
    assert_eq!(ParseError::Invalid("x").status(), 400);
}

#[test]
fn hop_by_hop() {
    #[rustfmt::skip]
    let list = ["Connection", "keep-alive", "PROXY-CONNECTION", "te", "Trailer", "transfer-encoding", "upgrade", "proxy-authenticate", "Proxy-Authorization",];
    for n in list {
        assert!(is_hop_by_hop(n.as_bytes()), "{n}");
    }
    for n in ["content-length", "host", "tee", "x-upgrade", ""] {
        assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
    }
    let b = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Foo\r\nConnection: x-bar\r\nX-Foo: 1\r\n\r\n";
    let h = parse(b).unwrap();
    assert!(h.connection_lists(b, b"x-foo"));
    assert!(connection_lists(b, &h.headers, b"X-BAR"));
    assert!(!h.connection_lists(b, b"x-baz"));
    assert!(!h.connection_lists(b, b"x"));
}

fn resp(buf: &[u8], m: Method) -> Result<ResponseHead, ParseError> {
    parse_response(buf, m, 64 * 1024, &mut Vec::new())
}

#[test]
fn response_framing() {
    use Framing::{Chunked, Length, UntilClose};
    #[rustfmt::skip]
    let cases: [(&[u8], Method, Framing, bool); 11] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Post, Length(5), true),
        (b"HTTP/1.1 200\r\nContent-Length: 1, 1\r\n\r\n", Method::Get, Length(1), true),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::Post, Chunked, true),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Method::Post, Chunked, false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Method::Post, UntilClose, false),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", Method::Post, UntilClose, false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Head, Framing::None, true),
        (b"HTTP/1.1 200 Connection established\r\n\r\n", Method::Connect, Framing::None, true),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::Get, Length(1), false),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", Method::Get, Length(1), true),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", Method::Get, Length(1), false),
    ];
    for (b, m, framing, keep_alive) in cases {
        let r = resp(b, m).unwrap();
        assert_eq!(
            (r.framing, r.keep_alive),
            (framing, keep_alive),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    for s in [204u16, 304, 100, 101, 103] {
        let b = format!("HTTP/1.1 {s} X\r\nContent-Length: 5\r\n\r\n");
        let r = resp(b.as_bytes(), Method::Get).unwrap();
        assert_eq!((r.framing, r.keep_alive), (Framing::None, true), "{s}");
    }
    let b = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let r = resp(b, Method::Post).unwrap();
    assert_eq!(
        (r.status, r.minor_version, &b[r.head_len..]),
        (200, 1, &b"hello"[..])
    );
    assert_eq!(r.header(b, "content-length"), Some(&b"5"[..]));
}

#[test]
fn response_errors() {
    #[rustfmt::skip]
    let list: [&[u8]; 11] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
        b"HTTP/1.1 600 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
    ];
    for b in list {
        let r = resp(b, Method::Get);
        assert!(
            matches!(r, Err(ParseError::Invalid(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(b)
        );
    }
    assert_eq!(
        resp(b"HTTP/1.1 200 OK\r\nContent-Le", Method::Get),
        Err(ParseError::Incomplete)
    );
    assert_eq!(
        parse_response(
            b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Method::Get,
            32,
            &mut Vec::new()
        ),
        Err(ParseError::HeadTooLarge)
    );
    let mut b = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_RESPONSE_HEADERS {
        b.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    b.extend_from_slice(b"\r\n");
    assert_eq!(resp(&b, Method::Get), Err(ParseError::TooManyHeaders));
}

#[test]
fn interim_responses_are_skipped_by_head_len() {
    let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut at = 0;
    let mut scratch = Vec::new();
    let last = loop {
        let r = parse_response(&buf[at..], Method::Post, 1024, &mut scratch).unwrap();
        if !r.is_interim() {
            break r;
        }
        at += r.head_len;
        r.recycle(&mut scratch);
    };
    assert_eq!(last.status, 200);
    assert_eq!(&buf[at + last.head_len..], b"ok");
    let r = resp(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        Method::Get,
    )
    .unwrap();
    assert!(!r.is_interim());
    assert!(r.connection_lists(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"upgrade"
    ));
}

#[test]
fn connection_tokens_answer_as_the_scan_does() {
    let names: [&[u8]; 7] = [
        b"close",
        b"Keep-Alive",
        b"upgrade",
        b"x-foo",
        b"connection",
        b"te",
        b"",
    ];
    for conn in [
        "",
        "close",
        "keep-alive",
        "Upgrade",
        "close, upgrade",
        "x-foo",
        "keep-alive, X-Foo",
        "te",
    ] {
        let text = if conn.is_empty() {
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string()
        } else {
            format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n")
        };
        let b = text.as_bytes();
        let h = parse(b).unwrap();
        for name in names {
            assert_eq!(
                h.connection_lists(b, name),
                connection_lists(b, &h.headers, name),
                "{conn:?} {:?}",
                String::from_utf8_lossy(name)
            );
        }
    }
}
