//! `/model-apis`: Model APIs, their routes, and (in `debug`) one request
//! sent through them. DELETE asks for the typed name: `?confirm={name}`.

use super::auth::Access;
use super::catalog::RouteView;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::resources::{self, find, find_visible, listing, view, Found, ListQuery};
use crate::config::catalog::{self, Protocol, Scenario};
use crate::config::raw::{ConsumerSpec, ModelApiSpec, SelectionSpec, ServiceSpec};
use crate::control::Control;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/model-apis", get(list).post(create))
        .route("/model-apis/:name", get(show).put(replace).delete(remove))
        .route("/model-apis/:name/routes", get(api_routes))
        .route("/model-apis/:name/debug", post(super::debug::debug))
}

#[utoipa::path(get, path = "/admin/v1/model-apis", tag = "model-apis",
    params(("resource_group" = Option<String>, Query, description = "only this group")),
    responses((status = 200, body = [super::openapi::ModelApiView]), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<Value>> {
    let res = ctl.resources.lock().await;
    let items = listing::<ModelApiSpec>(&res, &access, &q);
    Json(items.into_iter().map(|(a, m)| view(a, m)).collect())
}

#[utoipa::path(get, path = "/admin/v1/model-apis/{name}", tag = "model-apis",
    params(("name" = String, Path)),
    responses((status = 200, body = super::openapi::ModelApiView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let res = ctl.resources.lock().await;
    let found = find_visible::<ModelApiSpec>(&res, &access, &name)?;
    Ok(Json(view(found.spec(), found.managed_by_config())))
}

/// Every service a Model API names, with the field that names it.
pub(super) fn named_services(a: &ModelApiSpec) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    match &a.service {
        SelectionSpec::Single { target } => out.push((
            "service.target.service".to_string(),
            target.service.as_str(),
        )),
        SelectionSpec::ByModel { rules } => {
            for (i, r) in rules.iter().enumerate() {
                out.push((format!("service.rules[{i}].service"), r.service.as_str()));
            }
        }
        SelectionSpec::ByWeight { targets } => {
            for (i, t) in targets.iter().enumerate() {
                out.push((format!("service.targets[{i}].service"), t.service.as_str()));
            }
        }
    }
    for (i, t) in a.fallback.targets.iter().enumerate() {
        out.push((format!("fallback.targets[{i}].service"), t.service.as_str()));
    }
    if let Some(s) = &a.moderation.service {
        out.push(("moderation.service".to_string(), s.as_str()));
    }
    out
}

/// A scoped token may route only to services of its own groups, and admit
/// only consumers of its own groups. Another group's name is answered as a
/// name nowhere would be (the 400 of an unknown service or consumer).
/// Names the stored version already held (set by the full token) may stay.
fn check_names(
    res: &crate::store::Resources,
    access: &Access,
    a: &ModelApiSpec,
    old: Option<&ModelApiSpec>,
) -> Result<(), ApiError> {
    if access.groups().is_none() {
        return Ok(());
    }
    let kept_service =
        |name: &str| old.is_some_and(|o| named_services(o).iter().any(|(_, n)| *n == name));
    for (field, name) in named_services(a) {
        if let Some(found) = find::<ServiceSpec>(res, name) {
            if !access.allows(&found.spec().resource_group) && !kept_service(name) {
                return Err(ApiError::invalid(
                    field,
                    format!("unknown service {name:?}"),
                ));
            }
        }
    }
    let kept_consumer =
        |name: &str| old.is_some_and(|o| o.auth.consumers.iter().any(|c| c == name));
    for (k, name) in a.auth.consumers.iter().enumerate() {
        let visible = find::<ConsumerSpec>(res, name)
            .is_some_and(|c| access.allows(&c.spec().resource_group));
        if !visible && !kept_consumer(name) {
            return Err(ApiError::invalid(
                format!("auth.consumers[{k}]"),
                format!(
                    "unknown consumer {name:?}: a Model API may admit only consumers of this token's resource groups"
                ),
            ));
        }
    }
    Ok(())
}

/// A scoped token may not put a Model API where it would take requests
/// from a Model API outside its groups (an exact host that one's wildcard
/// covers, a more specific wildcard, the same domain with a longer or the
/// same base path): 409 on the domain, naming nothing of the other API.
fn check_domains(
    res: &crate::store::Resources,
    access: &Access,
    a: &ModelApiSpec,
) -> Result<(), ApiError> {
    if access.groups().is_none() {
        return Ok(());
    }
    let others: Vec<&ModelApiSpec> = resources::all_model_apis(res)
        .filter(|o| !access.allows(&o.resource_group))
        .collect();
    for (i, d) in a.domains.iter().enumerate() {
        let takes = others.iter().any(|o| {
            o.domains
                .iter()
                .any(|od| takes_from(d, &a.base_path, od, &o.base_path))
        });
        if takes {
            let mut e = ApiError::conflict(
                "conflict",
                format!(
                    "domain {d:?} with base path {:?} would take requests that a Model API \
                     outside this token's resource groups serves",
                    a.base_path
                ),
            );
            e.field = Some(format!("domains[{i}]"));
            return Err(e);
        }
    }
    Ok(())
}

/// A domain as the host index ranks it: an exact host, a `*.suffix` (kept
/// with its dot), or `*`.
#[derive(PartialEq)]
enum Tier {
    Exact(String),
    Suffix(String),
    Any,
}

fn tier(domain: &str) -> Tier {
    let d = domain.to_ascii_lowercase();
    if d == "*" {
        Tier::Any
    } else if let Some(suffix) = d.strip_prefix('*') {
        Tier::Suffix(suffix.to_string())
    } else {
        Tier::Exact(d)
    }
}

/// Whether a Model API on (`domain`, `base`) would be picked for some
/// request a Model API on (`other`, `other_base`) serves: the host index
/// prefers an exact host to any `*.suffix`, a longer suffix to a shorter
/// one, any of them to `*`; on the same domain the longest base path
/// wins. Conservative: other Model APIs that might already hold those
/// requests are not looked at.
pub fn takes_from(domain: &str, base: &str, other: &str, other_base: &str) -> bool {
    let same_domain_deeper_base = || {
        let (b, o) = (normalize_base(base), normalize_base(other_base));
        o == "/" || b == o || b.starts_with(&format!("{o}/"))
    };
    match (tier(domain), tier(other)) {
        (Tier::Exact(h), Tier::Exact(o)) => h == o && same_domain_deeper_base(),
        (Tier::Exact(h), Tier::Suffix(s)) => h.len() > s.len() && h.ends_with(&s),
        (Tier::Suffix(s), Tier::Suffix(o)) if s == o => same_domain_deeper_base(),
        (Tier::Suffix(s), Tier::Suffix(o)) => s.len() > o.len() && s.ends_with(&o),
        (Tier::Any, Tier::Any) => same_domain_deeper_base(),
        (Tier::Exact(_) | Tier::Suffix(_), Tier::Any) => true,
        (Tier::Suffix(_) | Tier::Any, Tier::Exact(_)) | (Tier::Any, Tier::Suffix(_)) => false,
    }
}

fn normalize_base(base: &str) -> &str {
    let b = base.trim_end_matches('/');
    if b.is_empty() {
        "/"
    } else {
        b
    }
}

#[utoipa::path(post, path = "/admin/v1/model-apis", tag = "model-apis", request_body = ModelApiSpec,
    responses((status = 201, body = super::openapi::ModelApiView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn create(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    JsonBody(spec): JsonBody<ModelApiSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut res = ctl.resources.lock().await;
    check_names(&res, &access, &spec, None)?;
    check_domains(&res, &access, &spec)?;
    let out = view(&spec, false);
    resources::create(&ctl.shared, &mut res, &access, spec).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(put, path = "/admin/v1/model-apis/{name}", tag = "model-apis", request_body = ModelApiSpec,
    params(("name" = String, Path)),
    responses((status = 200, body = super::openapi::ModelApiView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn replace(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<ModelApiSpec>,
) -> Result<Json<Value>, ApiError> {
    let mut res = ctl.resources.lock().await;
    let old = find_visible::<ModelApiSpec>(&res, &access, &name)?
        .spec()
        .clone();
    check_names(&res, &access, &spec, Some(&old))?;
    check_domains(&res, &access, &spec)?;
    let out = view(&spec, false);
    resources::replace(&ctl.shared, &mut res, &access, &name, spec, |_, _| {}).await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct Confirm {
    confirm: Option<String>,
}

/// Needs `?confirm={name}`, the name typed again.
#[utoipa::path(delete, path = "/admin/v1/model-apis/{name}", tag = "model-apis",
    params(("name" = String, Path), ("confirm" = Option<String>, Query, description = "the name again")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    Query(q): Query<Confirm>,
) -> Result<StatusCode, ApiError> {
    let mut res = ctl.resources.lock().await;
    // Existence, scope and ownership first: a confirmation cannot fix those.
    if let Found::File(_) = find_visible::<ModelApiSpec>(&res, &access, &name)? {
        return Err(ApiError::managed_by_config("Model API", &name));
    }
    if q.confirm.as_deref() != Some(name.as_str()) {
        return Err(ApiError::invalid(
            "confirm",
            format!("deleting a Model API needs ?confirm={name} (its name typed again)"),
        ));
    }
    resources::remove::<ModelApiSpec>(&ctl.shared, &mut res, &access, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A route's full path: the base path joined with the route's own.
pub fn full_path(base_path: &str, route: &str) -> String {
    let base = base_path.trim_end_matches('/');
    format!("{base}{route}")
}

/// The routes a Model API serves, with full paths.
#[derive(Serialize, ToSchema)]
pub struct RoutesView {
    model_api: String,
    domains: Vec<String>,
    base_path: String,
    strip_base_path: bool,
    routes: Vec<RouteView>,
}

#[utoipa::path(get, path = "/admin/v1/model-apis/{name}/routes", tag = "model-apis",
    params(("name" = String, Path)),
    responses((status = 200, body = RoutesView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn api_routes(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<RoutesView>, ApiError> {
    let res = ctl.resources.lock().await;
    let api = find_visible::<ModelApiSpec>(&res, &access, &name)?.spec();
    let routes = match (
        api.scenario.parse::<Scenario>(),
        api.protocol.parse::<Protocol>(),
    ) {
        (Ok(s), Ok(p)) => catalog::routes(s, p),
        _ => &[],
    };
    Ok(Json(RoutesView {
        model_api: api.name.clone(),
        domains: api.domains.clone(),
        base_path: api.base_path.clone(),
        strip_base_path: api.strip_base_path,
        routes: routes
            .iter()
            .map(|r| RouteView::new(&api.base_path, r))
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::takes_from;

    #[test]
    fn what_takes_requests_from_what() {
        let yes = [
            // An exact host a wildcard covers; a more specific wildcard.
            ("x.corp.example.com", "/", "*.corp.example.com", "/"),
            ("X.Corp.Example.COM", "/api", "*.corp.example.com", "/v1"),
            ("*.a.corp.example.com", "/", "*.corp.example.com", "/"),
            // The same domain with the same or a deeper base path.
            ("api.example.com", "/", "api.example.com", "/"),
            ("api.example.com", "/v1", "API.example.com", "/"),
            ("api.example.com", "/v1/x", "api.example.com", "/v1/"),
            ("*.corp.example.com", "/v1", "*.corp.example.com", "/"),
            ("*", "/team", "*", "/"),
            // Anything more specific than a catch-all.
            ("a.example.com", "/", "*", "/"),
            ("*.example.com", "/", "*", "/v1"),
        ];
        for (d, b, o, ob) in yes {
            assert!(takes_from(d, b, o, ob), "{d}{b} should take from {o}{ob}");
        }
        let no = [
            ("corp.example.com", "/", "*.corp.example.com", "/"),
            ("x.xcorp.example.com", "/", "*.corp.example.com", "/"),
            ("*.example.com", "/", "*.corp.example.com", "/"),
            ("*.corp.example.com", "/", "x.corp.example.com", "/"),
            ("*", "/", "api.example.com", "/"),
            ("*", "/", "*.corp.example.com", "/"),
            ("api.example.com", "/", "api.example.com", "/v1"),
            ("api.example.com", "/v10", "api.example.com", "/v1"),
            ("api.example.com", "/v2", "api.example.com", "/v1"),
            ("b.example.com", "/", "a.example.com", "/"),
        ];
        for (d, b, o, ob) in no {
            assert!(
                !takes_from(d, b, o, ob),
                "{d}{b} should not take from {o}{ob}"
            );
        }
    }
}
