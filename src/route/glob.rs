//! Model-name patterns for `by_model` rules: `?` is one character (a Unicode
//! scalar value), `*` any run of characters (empty included); everything
//! else is literal and case-sensitive.

/// Whether `name` matches `pattern` as a whole.
///
/// Iterative with single-point backtracking (the classic wildcard
/// algorithm): on a mismatch, the last `*` absorbs one more character and
/// matching resumes after it. O(|pattern| × |name|) worst case, no
/// recursion, no allocation.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0usize, 0usize);
    // After the last `*` seen: (pattern index past it, name index it resumes at).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    // Collapse runs of `*`.
                    while pi < p.len() && p[pi] == b'*' {
                        pi += 1;
                    }
                    if pi == p.len() {
                        return true;
                    }
                    star = Some((pi, ni));
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ni += char_len(n[ni]);
                    continue;
                }
                c if c == n[ni] => {
                    // Literal bytes: a multi-byte character in the pattern
                    // compares byte by byte, always from a character start
                    // in `name`, so it cannot match part of one.
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                let next = sn + char_len(n[sn]);
                star = Some((sp, next));
                pi = sp;
                ni = next;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 sequence that starts with `lead`.
#[inline]
fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match as g;

    #[test]
    fn literals() {
        assert!(g("gpt-4o", "gpt-4o"));
        assert!(!g("gpt-4o", "gpt-4o-mini"));
        assert!(!g("gpt-4o-mini", "gpt-4o"));
        assert!(!g("GPT-4o", "gpt-4o"));
        assert!(g("", ""));
        assert!(!g("", "a"));
        assert!(!g("a", ""));
        assert!(g("通义", "通义"));
        assert!(g("a.b+c[d]", "a.b+c[d]"));
    }

    #[test]
    fn star() {
        assert!(g("*", ""));
        assert!(g("*", "anything"));
        assert!(g("**", "x"));
        assert!(g("gpt-*", "gpt-4o"));
        assert!(g("gpt-*", "gpt-"));
        assert!(!g("gpt-*", "gpt"));
        assert!(g("*-mini", "gpt-4o-mini"));
        assert!(!g("*-mini", "gpt-4o-mini-2024"));
        assert!(g("qwen*max", "qwen-max"));
        assert!(g("qwen*max", "qwenmax"));
        assert!(g("qwen*max", "qwen-plus-max"));
        assert!(!g("qwen*max", "qwen-max-latest"));
        assert!(g("*max*", "qwen-max-latest"));
        assert!(g("a*b*c", "aXbYc"));
        assert!(g("a*b*c", "abbbcbc"));
        assert!(!g("a*b*c", "acb"));
        assert!(g("*a", "aaaa"));
        assert!(g("claude-*-sonnet-*", "claude-3-5-sonnet-20241022"));
        assert!(g("*中文*", "模型中文版"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(g("gpt-?", "gpt-4"));
        assert!(!g("gpt-?", "gpt-"));
        assert!(!g("gpt-?", "gpt-4o"));
        assert!(g("gpt-??", "gpt-4o"));
        // One Unicode scalar, not one byte.
        assert!(g("?", "é"));
        assert!(g("?", "中"));
        assert!(g("?", "😀"));
        assert!(!g("??", "é"));
        assert!(!g("?", "éé"));
        assert!(g("模型-?", "模型-中"));
        assert!(g("*?", "😀"));
        assert!(g("?*?", "😀中"));
        assert!(!g("?*?", "😀"));
        assert!(g("*é", "aé"));
        assert!(!g("*é", "e\u{301}"));
    }

    #[test]
    fn no_blowup() {
        let name = "a".repeat(10_000);
        assert!(!g("a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(g("a*a*a*a*a*a*a*a*a*a*", &name));
        let pat = "*a".repeat(500) + "b";
        assert!(!g(&pat, &name));
        let name = "ab".repeat(5000) + "c";
        assert!(g("*a*b*c", &name));
    }

    /// Cross-check against a simple recursive reference on small inputs.
    #[test]
    fn matches_reference() {
        fn reference(p: &[char], n: &[char]) -> bool {
            match p.first() {
                None => n.is_empty(),
                Some('*') => (0..=n.len()).any(|i| reference(&p[1..], &n[i..])),
                Some('?') => !n.is_empty() && reference(&p[1..], &n[1..]),
                Some(c) => n.first() == Some(c) && reference(&p[1..], &n[1..]),
            }
        }
        let alphabet = ['a', 'b', 'é', '中', '*', '?'];
        let mut x: u64 = 88172645463325252;
        let mut rnd = |k: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % k
        };
        for _ in 0..20_000 {
            let p: String = (0..rnd(7)).map(|_| alphabet[rnd(6) as usize]).collect();
            let n: String = (0..rnd(7)).map(|_| alphabet[rnd(4) as usize]).collect();
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            assert_eq!(g(&p, &n), reference(&pc, &nc), "{p:?} {n:?}");
        }
    }
}
