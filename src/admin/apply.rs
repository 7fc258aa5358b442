//! Applying one admin change: the candidate store state is merged with the
//! config file and compiled by the same validator `modelgate check` runs;
//! if valid, the store is written durably and the new snapshot published,
//! all before the handler answers.

use super::auth::Access;
use super::error::ApiError;
use crate::config::raw::RawConfig;
use crate::config::{FieldError, Problems};
use crate::shared::Shared;
use crate::snapshot::{compile, Mode};
use crate::store::{Resources, SaveError, StoreState};
use axum::http::StatusCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The kinds of resource the store holds, as the merged config lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Service,
    ModelApi,
    Consumer,
}

impl Kind {
    /// The list in `RawConfig` (and the field path prefix of its items).
    pub fn list(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::ModelApi => "model_apis",
            Kind::Consumer => "consumers",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::ModelApi => "Model API",
            Kind::Consumer => "consumer",
        }
    }

    /// (name, resource group) of each resource of this kind in `raw`.
    fn names(self, raw: &RawConfig) -> Vec<(&str, &str)> {
        match self {
            Kind::Service => raw
                .services
                .iter()
                .map(|s| (s.name.as_str(), s.resource_group.as_str()))
                .collect(),
            Kind::ModelApi => raw
                .model_apis
                .iter()
                .map(|s| (s.name.as_str(), s.resource_group.as_str()))
                .collect(),
            Kind::Consumer => raw
                .consumers
                .iter()
                .map(|s| (s.name.as_str(), s.resource_group.as_str()))
                .collect(),
        }
    }

    fn from_list(list: &str) -> Option<Kind> {
        [Kind::Service, Kind::ModelApi, Kind::Consumer]
            .into_iter()
            .find(|k| k.list() == list)
    }
}

/// How often a change is put on top of another instance's and tried
/// again before the writer is told to retry.
const MAX_REBASES: usize = 10;

/// Validates `next`, persists it, publishes the new snapshot. `subject`
/// is the resource the request made or changed: its problems are answered
/// with paths relative to the request body. `access` is the request's:
/// an answer never names a resource it may not see.
///
/// In cluster mode the write is a compare-and-set: when another instance
/// wrote first, this instance catches up and the same change is put on
/// top of theirs (409 if both touched the same resource), validated again
/// and written again. Redis unreachable: 503, nothing changed.
pub async fn apply(
    shared: &Shared,
    res: &mut Resources,
    access: &Access,
    next: StoreState,
    subject: Option<(Kind, &str)>,
) -> Result<(), ApiError> {
    let mut took_newer = false;
    let out = write(shared, res, access, next, subject, &mut took_newer).await;
    if out.is_err() && took_newer {
        // This change failed, but the newer store it met is the cluster's
        // truth: serve it.
        crate::control::sync::publish_current(shared, res).await;
    }
    out
}

async fn write(
    shared: &Shared,
    res: &mut Resources,
    access: &Access,
    mut next: StoreState,
    subject: Option<(Kind, &str)>,
    took_newer: &mut bool,
) -> Result<(), ApiError> {
    let mut base = res.store.state.clone();
    for attempt in 0..MAX_REBASES {
        let (snapshot, problems) = validate(shared, res, access, &next, subject).await?;
        match res.store.save_async(next.clone()).await {
            Ok(()) => {
                for w in &problems.warnings {
                    tracing::warn!("config: {}", res.describe(w));
                }
                shared.publish(snapshot);
                return Ok(());
            }
            Err(SaveError::Stale) => {
                // Take their store (published with ours once written) and
                // put this change on top of it.
                match res.store.fetch().await.map_err(|e| unavailable(&e))? {
                    // Redis lost the store: ours goes back with this change.
                    Some((0, _)) => res.store.version = 0,
                    Some((version, latest)) => {
                        res.store.state = latest;
                        res.store.version = version;
                        *took_newer = true;
                    }
                    None => {}
                }
                next = crate::store::rebase(&base, &next, &res.store.state).map_err(|what| {
                    let e = ApiError::conflict(
                        "conflict",
                        format!("{what} was changed on another instance meanwhile; read it again and retry"),
                    );
                    redact(e, &res.store.state.merged_with(&res.file), access)
                })?;
                base = res.store.state.clone();
                // Writers that keep colliding spread out.
                let jitter = fastrand::u64(0..=5 * (attempt as u64 + 1));
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
            Err(SaveError::Unavailable(e)) => return Err(unavailable(&e)),
            Err(SaveError::Io(e)) => {
                return Err(ApiError::internal(format!(
                    "store {}: {e}",
                    res.store.label()
                )))
            }
        }
    }
    Err(ApiError::conflict(
        "conflict",
        "the store kept changing on other instances; retry",
    ))
}

fn unavailable(e: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("the cluster store is unavailable ({e}); nothing was changed"),
    )
}

/// Compiles `next` merged with the config file, as `modelgate check` would.
async fn validate(
    shared: &Shared,
    res: &Resources,
    access: &Access,
    next: &StoreState,
    subject: Option<(Kind, &str)>,
) -> Result<(crate::snapshot::Snapshot, Problems), ApiError> {
    let mut merged = next.merged_with(&res.file);
    // The changed resource goes last, so a value two resources share is
    // reported on it, naming the one that already held it.
    let subject_at = subject.map(|(kind, name)| (kind, move_last(&mut merged, kind, name)));
    let merged = Arc::new(merged);
    let generation = shared.generation.load(Ordering::Acquire) + 1;
    let m = merged.clone();
    let compiled = tokio::task::spawn_blocking(move || compile(&m, generation, Mode::Serve))
        .await
        .map_err(|e| ApiError::internal(format!("compile: {e}")))?;
    compiled.map_err(|problems| {
        let e = answer(&problems, subject_at, &merged, access);
        redact(e, &merged, access)
    })
}

fn move_last(raw: &mut RawConfig, kind: Kind, name: &str) -> usize {
    fn to_end<T>(v: &mut Vec<T>, at: Option<usize>) -> usize {
        if let Some(i) = at {
            let item = v.remove(i);
            v.push(item);
        }
        v.len().saturating_sub(1)
    }
    match kind {
        Kind::Service => {
            let at = raw.services.iter().rposition(|s| s.name == name);
            to_end(&mut raw.services, at)
        }
        Kind::ModelApi => {
            let at = raw.model_apis.iter().rposition(|s| s.name == name);
            to_end(&mut raw.model_apis, at)
        }
        Kind::Consumer => {
            let at = raw.consumers.iter().rposition(|s| s.name == name);
            to_end(&mut raw.consumers, at)
        }
    }
}

/// `model_apis[3].service.rules[0]` → (`model_apis`, 3, `service.rules[0]`).
fn split_path(path: &str) -> Option<(&str, usize, &str)> {
    let (list, rest) = path.split_once('[')?;
    let (index, tail) = rest.split_once(']')?;
    Some((
        list,
        index.parse().ok()?,
        tail.strip_prefix('.').unwrap_or(tail),
    ))
}

/// The answer for a candidate that failed to compile: problems of the
/// subject first (400, or 409 for a value another resource holds), then
/// problems it causes in other resources (409); those outside `access`
/// are counted, not named.
fn answer(
    p: &Problems,
    subject: Option<(Kind, usize)>,
    merged: &RawConfig,
    access: &Access,
) -> ApiError {
    let mut own: Vec<(&FieldError, &str)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    let mut global: Vec<&FieldError> = Vec::new();
    for e in &p.errors {
        let place = split_path(&e.path).filter(|(list, _, _)| Kind::from_list(list).is_some());
        match place {
            Some((list, i, tail)) if subject.is_some_and(|(k, at)| k.list() == list && at == i) => {
                own.push((e, tail))
            }
            Some((list, i, tail)) => {
                let k = Kind::from_list(list).expect("filtered above");
                let (name, group) = k.names(merged).get(i).copied().unwrap_or(("?", ""));
                if access.allows(group) {
                    others.push(format!("{} {name:?}: {tail}: {}", k.label(), e.message));
                } else {
                    others.push(format!(
                        "a {} outside this token's resource groups",
                        k.label()
                    ));
                }
            }
            None => global.push(e),
        }
    }
    let details = |v: &[(&FieldError, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(e, f)| (f.to_string(), e.message.clone()))
            .collect()
    };
    let invalid: Vec<_> = own
        .iter()
        .copied()
        .filter(|(e, _)| e.code != "conflict")
        .collect();
    if let Some((e, field)) = invalid.first() {
        let mut err = ApiError::invalid(*field, &e.message);
        if invalid.len() > 1 {
            err.details = details(&invalid);
        }
        return err;
    }
    if let Some((e, field)) = own.first() {
        let mut err = ApiError::conflict("conflict", &e.message);
        err.field = Some(field.to_string());
        return err;
    }
    others.dedup();
    if let Some(first) = others.first() {
        let mut err = ApiError::conflict(
            "conflict",
            format!("the change would break another resource: {first}"),
        );
        err.details = others
            .iter()
            .skip(1)
            .map(|m| (String::new(), m.clone()))
            .collect();
        return err;
    }
    match global.first() {
        // The gateway's own settings (secrets, listeners) are the
        // operator's: a scoped token is not told their paths or values.
        Some(_) if access.groups().is_some() => {
            for e in &global {
                tracing::warn!("admin change refused: config: {e}");
            }
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the gateway's own configuration does not compile (its log says why); \
                 nothing was changed",
            )
        }
        Some(e) => ApiError::invalid(&e.path, &e.message),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the change is not valid",
        ),
    }
}

/// A last guard for a scoped token: a message that quotes the name of a
/// resource it may not see (a compile message naming the holder of a
/// value) says only that some other resource is involved.
fn redact(mut e: ApiError, merged: &RawConfig, access: &Access) -> ApiError {
    if access.groups().is_none() {
        return e;
    }
    let hidden: Vec<String> = [Kind::Service, Kind::ModelApi, Kind::Consumer]
        .into_iter()
        .flat_map(|k| k.names(merged))
        .filter(|(_, group)| !access.allows(group))
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    let names_hidden = |m: &str| hidden.iter().any(|h| m.contains(h.as_str()));
    const SAID: &str = "the value conflicts with a resource outside this token's resource groups";
    if names_hidden(&e.message) {
        e.message = SAID.to_string();
    }
    for (_, m) in e.details.iter_mut() {
        if names_hidden(m) {
            *m = SAID.to_string();
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_list_index_and_field() {
        assert_eq!(
            split_path("model_apis[3].service.rules[0].pattern"),
            Some(("model_apis", 3, "service.rules[0].pattern"))
        );
        assert_eq!(split_path("services[0]"), Some(("services", 0, "")));
        assert_eq!(split_path("server.listen"), None);
    }
}
