//! Who may use the admin API: the full-access `admin.token`, tokens scoped
//! to resource groups (`[[admin.tokens]]`), or, only when no admin token of
//! any kind is configured, any loopback client (docs/security.md).

use super::error::ApiError;
use crate::store::Tokens;
use axum::http::StatusCode;
use std::net::IpAddr;

/// What one admin request may touch.
#[derive(Clone, Debug)]
pub enum Access {
    Full,
    Groups(Vec<String>),
}

impl Access {
    pub fn allows(&self, group: &str) -> bool {
        match self {
            Access::Full => true,
            Access::Groups(g) => g.iter().any(|x| x == group),
        }
    }

    /// 403 unless `group` is in scope: for a group the request itself
    /// names (a resource's `resource_group`). What the token may not see
    /// answers 404 instead, as if it did not exist.
    pub fn check(&self, group: &str) -> Result<(), ApiError> {
        if self.allows(group) {
            Ok(())
        } else {
            Err(ApiError::forbidden(group))
        }
    }

    /// The groups a scoped token names (None: all).
    pub fn groups(&self) -> Option<&[String]> {
        match self {
            Access::Full => None,
            Access::Groups(g) => Some(g),
        }
    }
}

/// Decides a request's access from its bearer token and peer address.
pub fn access(tokens: &Tokens, bearer: Option<&str>, peer: IpAddr) -> Result<Access, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let Some(token) = bearer.filter(|t| !t.is_empty()) else {
        return if tokens.configured {
            Err(unauthorized("missing bearer token"))
        } else if peer.is_loopback() {
            Ok(Access::Full)
        } else {
            Err(unauthorized(
                "no admin token is configured: only loopback clients are accepted",
            ))
        };
    };
    if let Some(Ok(full)) = &tokens.full {
        if ct_eq(token.as_bytes(), full.as_bytes()) {
            return Ok(Access::Full);
        }
    }
    // Compare against every scoped token, so timing says nothing of which.
    let mut found = None;
    for (t, groups) in &tokens.scoped {
        if ct_eq(token.as_bytes(), t.as_bytes()) {
            found = Some(groups);
        }
    }
    match found {
        Some(groups) => Ok(Access::Groups(groups.clone())),
        None => Err(unauthorized("invalid bearer token")),
    }
}

/// The token of an `Authorization` header: `Bearer <token>` with the
/// scheme in any case (RFC 9110 §11.1), or the bare token.
pub fn bearer_token(header: &str) -> &str {
    let header = header.trim();
    match header.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if header.eq_ignore_ascii_case("bearer") => "",
        _ => header,
    }
}

/// Browsers send `Origin` on cross-site requests: a page elsewhere must
/// not drive the admin API through a user's browser (CSRF). The console is
/// served by this same listener, so its requests are same-origin.
pub fn cross_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    host != Some(authority)
}

/// Whether `host` (the `Host` header) names this machine by an address or
/// `localhost`: trusting loopback clients without a token must not extend
/// to a page whose own name was made to resolve to 127.0.0.1 (DNS
/// rebinding).
pub fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).expect("OS random source");
    hex(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Hex SHA-256, as consumer key hashes are stored.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{AdminRaw, AdminTokenRaw};

    #[test]
    fn loopback_only_without_a_token_and_scopes_with_one() {
        let none = Tokens::from_config(&AdminRaw::default());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(matches!(access(&none, None, lo), Ok(Access::Full)));
        assert_eq!(access(&none, None, far).unwrap_err().status, 401);
        let cfg = AdminRaw {
            token: Some("root-token".into()),
            tokens: vec![AdminTokenRaw {
                token: "team-token".into(),
                resource_groups: vec!["team-a".into()],
            }],
            ..AdminRaw::default()
        };
        let t = Tokens::from_config(&cfg);
        assert_eq!(access(&t, None, lo).unwrap_err().status, 401);
        assert!(matches!(
            access(&t, Some("root-token"), far),
            Ok(Access::Full)
        ));
        let scoped = access(&t, Some("team-token"), far).unwrap();
        // Scoped tokens alone: a token is still required from loopback.
        let only_scoped = Tokens::from_config(&AdminRaw {
            token: None,
            ..cfg.clone()
        });
        assert_eq!(access(&only_scoped, None, lo).unwrap_err().status, 401);
        assert_eq!(access(&only_scoped, Some(""), lo).unwrap_err().status, 401);
        assert!(matches!(
            access(&only_scoped, Some("team-token"), lo),
            Ok(Access::Groups(_))
        ));
        for (header, token) in [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER  abc ", "abc"),
            ("Bearer", ""),
            ("abc", "abc"),
        ] {
            assert_eq!(bearer_token(header), token, "{header:?}");
        }
        assert!(scoped.allows("team-a") && !scoped.allows("default"));
        assert_eq!(access(&t, Some("nope"), lo).unwrap_err().status, 401);
        assert!(!cross_origin(None, Some("127.0.0.1:9090")));
        assert!(!cross_origin(
            Some("http://127.0.0.1:9090"),
            Some("127.0.0.1:9090")
        ));
        assert!(cross_origin(
            Some("https://evil.example"),
            Some("127.0.0.1:9090")
        ));
        assert!(loopback_host(Some("127.0.0.1:9090")) && loopback_host(Some("[::1]:9090")));
        assert!(loopback_host(Some("localhost:9090")) && !loopback_host(Some("evil.example:9090")));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
