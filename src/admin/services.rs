//! `/services`: AI services. Keys and secret-looking headers are masked on
//! read; a masked value sent back by PUT keeps the stored secret.
//!
//! Only the full token may make the gateway read the host: `env:`/`file:`
//! references in keys and headers and `ca_file`. A scoped token could
//! otherwise have another team's key, or the admin token itself, sent to
//! an upstream it runs (403; what the stored version already holds stays).

use super::auth::Access;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::resources::{self, find_visible, listing, view, ListQuery, Resource};
use crate::config::raw::{ModelApiSpec, SelectionSpec, ServiceSpec};
use crate::control::Control;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::Value;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/services", get(list).post(create))
        .route("/services/:name", get(show).put(replace).delete(remove))
}

/// `sk-proj-abcdef123456` → `sk-...3456`. References to secrets
/// (`env:NAME`, `file:PATH`) say where the secret is, not what it is.
pub fn mask(secret: &str) -> String {
    if secret.starts_with("env:") || secret.starts_with("file:") {
        return secret.to_string();
    }
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "...".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["auth", "key", "token", "secret", "cookie", "password"]
        .iter()
        .any(|s| n.contains(s))
}

fn masked(spec: &ServiceSpec) -> ServiceSpec {
    let mut s = spec.clone();
    s.api_keys = s.api_keys.iter().map(|k| mask(k)).collect();
    for (name, value) in s.headers.iter_mut() {
        if secret_header(name) {
            *value = mask(value);
        }
    }
    s
}

/// A masked value sent back stands for the stored secret it masks.
fn unmask(old: &ServiceSpec, new: &mut ServiceSpec) {
    for key in new.api_keys.iter_mut() {
        if let Some(real) = old.api_keys.iter().find(|o| **o != *key && mask(o) == *key) {
            *key = real.clone();
        }
    }
    for (name, value) in new.headers.iter_mut() {
        if let Some(real) = old.headers.get(name) {
            if secret_header(name) && real != value && mask(real) == *value {
                *value = real.clone();
            }
        }
    }
}

fn reference(value: &str) -> bool {
    value.starts_with("env:") || value.starts_with("file:")
}

/// 403 when a scoped token asks the gateway to read the host (a secret
/// reference or a CA file) that `old` did not already hold.
fn host_reads(
    access: &Access,
    new: &ServiceSpec,
    old: Option<&ServiceSpec>,
) -> Result<(), ApiError> {
    if access.groups().is_none() {
        return Ok(());
    }
    let refuse = |field: String| {
        let mut e = ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "only the full admin token may make the gateway read the host's environment or \
             files (env:/file: references, ca_file); send the secret itself",
        );
        e.field = Some(field);
        Err(e)
    };
    for (k, key) in new.api_keys.iter().enumerate() {
        if reference(key) && !old.is_some_and(|o| o.api_keys.contains(key)) {
            return refuse(format!("api_keys[{k}]"));
        }
    }
    for (name, value) in &new.headers {
        if reference(value) && old.and_then(|o| o.headers.get(name)) != Some(value) {
            return refuse(format!("headers.{name}"));
        }
    }
    if new.ca_file.is_some() && old.and_then(|o| o.ca_file.as_ref()) != new.ca_file.as_ref() {
        return refuse("ca_file".into());
    }
    Ok(())
}

fn show_view(spec: &ServiceSpec, managed: bool) -> Value {
    view(&masked(spec), managed)
}

#[utoipa::path(get, path = "/admin/v1/services", tag = "services",
    params(("resource_group" = Option<String>, Query, description = "only this group")),
    responses((status = 200, body = [super::openapi::ServiceView]), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<Value>> {
    let res = ctl.resources.lock().await;
    let items = listing::<ServiceSpec>(&res, &access, &q);
    Json(items.into_iter().map(|(s, m)| show_view(s, m)).collect())
}

#[utoipa::path(get, path = "/admin/v1/services/{name}", tag = "services",
    params(("name" = String, Path)),
    responses((status = 200, body = super::openapi::ServiceView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let res = ctl.resources.lock().await;
    let found = find_visible::<ServiceSpec>(&res, &access, &name)?;
    Ok(Json(show_view(found.spec(), found.managed_by_config())))
}

#[utoipa::path(post, path = "/admin/v1/services", tag = "services", request_body = ServiceSpec,
    responses((status = 201, body = super::openapi::ServiceView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn create(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    JsonBody(spec): JsonBody<ServiceSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    host_reads(&access, &spec, None)?;
    let mut res = ctl.resources.lock().await;
    let out = show_view(&spec, false);
    resources::create(&ctl.shared, &mut res, &access, spec).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(put, path = "/admin/v1/services/{name}", tag = "services", request_body = ServiceSpec,
    params(("name" = String, Path)),
    responses((status = 200, body = super::openapi::ServiceView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn replace(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<ServiceSpec>,
) -> Result<Json<Value>, ApiError> {
    let mut res = ctl.resources.lock().await;
    let old = find_visible::<ServiceSpec>(&res, &access, &name)?.spec();
    host_reads(&access, &spec, Some(old))?;
    resources::replace(&ctl.shared, &mut res, &access, &name, spec, unmask).await?;
    let found = find_visible::<ServiceSpec>(&res, &access, &name)?;
    Ok(Json(show_view(found.spec(), false)))
}

/// The Model APIs that name service `name` anywhere.
pub fn users<'a>(apis: impl Iterator<Item = &'a ModelApiSpec>, name: &str) -> Vec<String> {
    apis.filter(|a| {
        let primary = match &a.service {
            SelectionSpec::Single { target } => target.service == name,
            SelectionSpec::ByModel { rules } => rules.iter().any(|r| r.service == name),
            SelectionSpec::ByWeight { targets } => targets.iter().any(|t| t.service == name),
        };
        primary
            || a.fallback.targets.iter().any(|t| t.service == name)
            || a.moderation.service.as_deref() == Some(name)
    })
    .map(|a| a.name.clone())
    .collect()
}

/// 409 `in_use` while a Model API names the service.
#[utoipa::path(delete, path = "/admin/v1/services/{name}", tag = "services",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut res = ctl.resources.lock().await;
    if find_visible::<ServiceSpec>(&res, &access, &name)?.managed_by_config() {
        return Err(ApiError::managed_by_config("service", &name));
    }
    let all = users(resources::all_model_apis(&res), &name);
    if !all.is_empty() {
        // Users the token may not see are counted, not named.
        let (shown, hidden): (Vec<_>, Vec<_>) = all.iter().partition(|u| {
            resources::find::<ModelApiSpec>(&res, u)
                .is_some_and(|a| access.allows(a.spec().group()))
        });
        let mut by: Vec<String> = shown.iter().map(|u| format!("Model API {u:?}")).collect();
        if !hidden.is_empty() {
            by.push(format!(
                "{} Model API(s) outside this token's resource groups",
                hidden.len()
            ));
        }
        return Err(ApiError::conflict(
            "in_use",
            format!("service {name:?} is used by {}", by.join(", ")),
        ));
    }
    resources::remove::<ServiceSpec>(&ctl.shared, &mut res, &access, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_and_keeps_references() {
        assert_eq!(mask("sk-proj-0123456789abcd"), "sk-...abcd");
        assert_eq!(mask("short"), "...");
        assert_eq!(mask("env:OPENAI_API_KEY"), "env:OPENAI_API_KEY");
    }
}
