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
fn named_services(a: &ModelApiSpec) -> Vec<(String, &str)> {
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
