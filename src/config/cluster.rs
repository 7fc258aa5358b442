//! `[cluster]` resolved and validated: compiling a config checks it, and
//! the cluster's Redis link is opened with it.

use super::raw::ClusterRaw;
use super::{resolve_secret, FieldError};

/// `[cluster]` as resolved and validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub redis_url: String,
    pub key_prefix: String,
}

impl Settings {
    /// `None` when cluster mode is off. Errors carry the field path, for
    /// `modelgate check` and for startup.
    pub fn from_raw(raw: &ClusterRaw) -> Result<Option<Settings>, FieldError> {
        let Some(url) = raw.redis_url.as_deref() else {
            return Ok(None);
        };
        let url = resolve_secret(url).map_err(|e| FieldError::new("cluster.redis_url", e))?;
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            return Err(FieldError::new(
                "cluster.redis_url",
                "must be a redis:// URL (redis://host:6379/0)",
            ));
        }
        if let Err(e) = redis::Client::open(url.as_str()) {
            return Err(FieldError::new(
                "cluster.redis_url",
                format!("not a valid Redis URL: {e}"),
            ));
        }
        if raw.key_prefix.is_empty() || raw.key_prefix.contains(char::is_whitespace) {
            return Err(FieldError::new(
                "cluster.key_prefix",
                "must be non-empty, without spaces",
            ));
        }
        Ok(Some(Settings {
            redis_url: url,
            key_prefix: raw.key_prefix.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> ClusterRaw {
        ClusterRaw {
            redis_url: Some(url.into()),
            ..ClusterRaw::default()
        }
    }

    #[test]
    fn urls_are_checked_with_the_field_path() {
        assert!(Settings::from_raw(&ClusterRaw::default())
            .unwrap()
            .is_none());
        let ok = Settings::from_raw(&raw("redis://127.0.0.1:6379/0"))
            .unwrap()
            .unwrap();
        assert_eq!(ok.key_prefix, "modelgate:");
        for bad in ["http://x", "redis://host:notaport", "localhost:6379"] {
            let e = Settings::from_raw(&raw(bad)).unwrap_err();
            assert_eq!(e.path, "cluster.redis_url", "{bad}");
        }
        let e = Settings::from_raw(&raw("env:MODELGATE_TEST_REDIS_UNSET")).unwrap_err();
        assert_eq!(e.path, "cluster.redis_url");
        std::env::set_var("MODELGATE_TEST_REDIS_URL", "redis://10.0.0.1:6380/2");
        let from_env = Settings::from_raw(&raw("env:MODELGATE_TEST_REDIS_URL"))
            .unwrap()
            .unwrap();
        assert_eq!(from_env.redis_url, "redis://10.0.0.1:6380/2");
    }
}
