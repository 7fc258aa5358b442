//! Consumers and their keys: which consumer a request comes from, and
//! whether the Model API admits it.
//!
//! Keys are kept only as SHA-256 digests (keys are random 32-byte secrets,
//! so a plain hash is enough; the config file's `keys` are hashed when
//! compiled, admin-made keys arrive as `key_hashes`). A presented key is
//! hashed once, looked up by the first 8 bytes of its digest, and the whole
//! digest is compared in constant time.

use crate::config::raw::{AuthSpec, ConsumerSpec};
use crate::config::{resolve_secret, Problems};
use crate::error::{Error, Kind};
use crate::http::head::RequestHead;
use crate::limit;
use std::collections::HashMap;
use subtle::ConstantTimeEq;

type Digest = [u8; 32];

pub struct Consumer {
    pub name: String,
    pub resource_group: String,
    pub enabled: bool,
    /// The consumer's own limits, across all Model APIs.
    pub limits: limit::Limits,
}

/// Every consumer of a snapshot and the digests of their keys.
#[derive(Default)]
pub struct Consumers {
    pub list: Vec<Consumer>,
    by_name: HashMap<String, usize>,
    /// First 8 digest bytes → (digest, consumer index).
    keys: HashMap<u64, Vec<(Digest, usize)>>,
}

/// A Model API's `auth`: consumers it admits, by index into
/// [`Consumers::list`].
#[derive(Clone, Debug, Default)]
pub struct ApiAuth {
    pub enabled: bool,
    pub allowed: Vec<bool>,
}

impl ApiAuth {
    pub fn admits(&self, consumer: usize) -> bool {
        self.allowed.get(consumer).copied().unwrap_or(false)
    }
}

fn sha256(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn prefix(d: &Digest) -> u64 {
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

fn from_hex(s: &str) -> Option<Digest> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// The hex SHA-256 of a key, as `key_hashes` stores it.
pub fn key_hash_hex(key: &str) -> String {
    sha256(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Consumers {
    /// Validates and compiles the consumers; `limits` gets a window for
    /// each consumer limit.
    pub fn compile(specs: &[ConsumerSpec], table: &mut limit::Table, p: &mut Problems) -> Self {
        let mut out = Consumers::default();
        let mut owner: HashMap<Digest, String> = HashMap::new();
        for (i, c) in specs.iter().enumerate() {
            let at = format!("consumers[{i}]");
            // Names (valid, unique) are checked by `snapshot::compile`.
            if out.by_name.contains_key(&c.name) {
                continue;
            }
            let index = out.list.len();
            let mut digests = Vec::new();
            for (k, key) in c.keys.iter().enumerate() {
                match resolve_secret(key) {
                    Ok(v) if v.is_empty() => p.error(format!("{at}.keys[{k}]"), "key is empty"),
                    Ok(v) => digests.push((format!("{at}.keys[{k}]"), sha256(v.as_bytes()))),
                    Err(e) => p.warn(
                        format!("{at}.keys[{k}]"),
                        format!("{e}; the key is skipped"),
                    ),
                }
            }
            for (k, h) in c.key_hashes.iter().enumerate() {
                match from_hex(&h.sha256) {
                    Some(d) => digests.push((format!("{at}.key_hashes[{k}]"), d)),
                    None => p.error(
                        format!("{at}.key_hashes[{k}].sha256"),
                        "must be 64 hex digits (SHA-256)",
                    ),
                }
            }
            for (field, d) in digests {
                if let Some(other) = owner.get(&d) {
                    p.error(
                        field,
                        format!("the same key already belongs to consumer {other:?}"),
                    );
                    continue;
                }
                owner.insert(d, c.name.clone());
                out.keys.entry(prefix(&d)).or_default().push((d, index));
            }
            let limits = limit::Limits::compile(
                &format!("{at}.limits"),
                &c.limits,
                &format!("consumer:{}", c.name),
                table,
                p,
            );
            out.by_name.insert(c.name.clone(), index);
            out.list.push(Consumer {
                name: c.name.clone(),
                resource_group: c.resource_group.clone(),
                enabled: c.enabled,
                limits,
            });
        }
        out
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The consumer holding `key`, comparing whole digests in constant time.
    pub fn by_key(&self, key: &[u8]) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let d = sha256(key);
        let mut found = None;
        for (candidate, consumer) in self.keys.get(&prefix(&d))? {
            if bool::from(candidate.ct_eq(&d)) {
                found = Some(*consumer);
            }
        }
        found
    }

    /// A Model API's auth settings; names of consumers that do not exist
    /// (yet) are warnings: they take effect once the consumer is created.
    pub fn api_auth(&self, at: &str, spec: &AuthSpec, p: &mut Problems) -> ApiAuth {
        let mut allowed = vec![false; self.list.len()];
        for (k, name) in spec.consumers.iter().enumerate() {
            match self.index(name) {
                Some(i) => allowed[i] = true,
                None => p.warn(
                    format!("{at}.consumers[{k}]"),
                    format!("consumer {name:?} does not exist (yet); it is admitted once created"),
                ),
            }
        }
        if spec.enabled && spec.consumers.is_empty() {
            p.warn(
                format!("{at}.consumers"),
                "auth is enabled and no consumer is listed: every request gets 403",
            );
        }
        ApiAuth {
            enabled: spec.enabled,
            allowed,
        }
    }
}

/// The key a request presents: `Authorization: Bearer`, else `x-api-key`,
/// else `api-key`.
pub fn presented_key<'a>(head: &RequestHead, buf: &'a [u8]) -> Option<&'a [u8]> {
    if let Some(v) = head.header(buf, "authorization") {
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            let key = v[7..].trim_ascii();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    ["x-api-key", "api-key"]
        .iter()
        .find_map(|n| head.header(buf, n).filter(|v| !v.is_empty()))
}

/// Who is calling. On a Model API with auth: the consumer, or 401 (no or
/// unknown key, disabled consumer) / 403 (not listed). Without auth: the
/// consumer whose key is presented, if any (for its limits), never a
/// refusal. `debug` (the admin debug endpoint) skips auth.
pub fn authenticate(
    consumers: &Consumers,
    auth: &ApiAuth,
    api_name: &str,
    head: &RequestHead,
    buf: &[u8],
    debug: bool,
) -> Result<Option<usize>, Error> {
    if debug {
        return Ok(None);
    }
    let key = presented_key(head, buf);
    let consumer = key.and_then(|k| consumers.by_key(k));
    if !auth.enabled {
        return Ok(consumer.filter(|&c| consumers.list[c].enabled));
    }
    let Some(c) = consumer else {
        return Err(Error::new(
            Kind::Unauthorized,
            if key.is_some() {
                "invalid API key"
            } else {
                "missing API key: send Authorization: Bearer <key>, x-api-key or api-key"
            },
        ));
    };
    if !consumers.list[c].enabled {
        return Err(Error::new(
            Kind::Unauthorized,
            "API key of a disabled consumer",
        ));
    }
    if !auth.admits(c) {
        return Err(Error::new(
            Kind::Forbidden,
            format!(
                "consumer {} may not call Model API {api_name}",
                consumers.list[c].name
            ),
        ));
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{KeyHash, RateLimitsSpec};
    use crate::http::head::{parse_request, Limits};

    fn spec(name: &str, keys: &[&str], hashes: &[&str]) -> ConsumerSpec {
        ConsumerSpec {
            name: name.into(),
            resource_group: "default".into(),
            limits: RateLimitsSpec::default(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            key_hashes: hashes
                .iter()
                .enumerate()
                .map(|(i, h)| KeyHash {
                    id: format!("k{i}"),
                    sha256: h.to_string(),
                })
                .collect(),
            enabled: true,
        }
    }

    fn consumers(specs: &[ConsumerSpec]) -> (Consumers, Problems) {
        let mut p = Problems::default();
        let c = Consumers::compile(specs, &mut limit::Table::default(), &mut p);
        (c, p)
    }

    #[test]
    fn keys_from_file_and_hashes_resolve_to_their_consumer() {
        let (c, p) = consumers(&[
            spec("a", &["mg-alpha"], &[]),
            spec("b", &[], &[&key_hash_hex("mg-beta")]),
        ]);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(c.by_key(b"mg-alpha"), Some(0));
        assert_eq!(c.by_key(b"mg-beta"), Some(1));
        assert_eq!(c.by_key(b"mg-gamma"), None);
        assert_eq!(c.by_key(b""), None);
        assert_eq!(
            key_hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_hashes_and_duplicate_keys_are_errors() {
        // (Names, valid and unique, are `snapshot::compile`'s to check.)
        let (c, p) = consumers(&[
            spec("a", &["same"], &["xyz"]),
            spec("b", &["same"], &[]),
            spec("a", &["other"], &[]),
        ]);
        let errs: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        assert!(errs[0].starts_with("consumers[0].key_hashes[0].sha256: must be 64 hex"));
        assert!(errs[1]
            .starts_with("consumers[1].keys[0]: the same key already belongs to consumer \"a\""));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(c.list.len(), 2);
        assert_eq!(c.by_key(b"other"), None);
    }

    fn head(raw: &[u8]) -> RequestHead {
        parse_request(raw, &Limits::default(), &mut Vec::new()).unwrap()
    }

    #[test]
    fn three_header_forms_401_and_403() {
        let (c, _) = consumers(&[spec("a", &["ka"], &[]), spec("b", &["kb"], &[])]);
        let mut p = Problems::default();
        let auth = c.api_auth(
            "model_apis[0].auth",
            &AuthSpec {
                enabled: true,
                consumers: vec!["a".into(), "later".into()],
            },
            &mut p,
        );
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0]
            .to_string()
            .starts_with("model_apis[0].auth.consumers[1]: consumer \"later\" does not exist"));
        let run = |raw: &[u8]| {
            authenticate(&c, &auth, "chat", &head(raw), raw, false).map_err(|e| e.status())
        };
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: bearer  ka \r\n\r\n"),
            Ok(Some(0))
        );
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\nx-api-key: ka\r\n\r\n"),
            Ok(Some(0))
        );
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\napi-key: ka\r\n\r\n"),
            Ok(Some(0))
        );
        assert_eq!(run(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Err(401));
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ka\r\n\r\n"),
            Err(401)
        );
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\nx-api-key: nope\r\n\r\n"),
            Err(401)
        );
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\napi-key: kb\r\n\r\n"),
            Err(403)
        );
        // Without auth: the consumer is known when a key is presented.
        let open = ApiAuth::default();
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nx-api-key: kb\r\n\r\n";
        assert_eq!(
            authenticate(&c, &open, "o", &head(raw), raw, false).unwrap(),
            Some(1)
        );
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nx-api-key: nope\r\n\r\n";
        assert_eq!(
            authenticate(&c, &open, "o", &head(raw), raw, false).unwrap(),
            None
        );
        // The debug marker bypasses auth.
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nx-modelgate-debug: s3cret\r\n\r\n";
        let h = head(raw);
        assert_eq!(
            authenticate(&c, &auth, "chat", &h, raw, true).unwrap(),
            None
        );
    }
}
