//! `/model-apis`: Model APIs, their routes, and (in `debug`) one request
//! sent through them. DELETE asks for the typed name: `?confirm={name}`.

use super::auth::Access;
use super::error::{ApiError, JsonBody};
use super::resources::{self, find, find_visible, listing, view, Found, ListQuery};
use crate::config::catalog::{self, Protocol, RouteDef, Scenario};
use crate::config::raw::{ModelApiSpec, SelectionSpec, ServiceSpec};
use crate::runtime::Shared;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/model-apis", get(list).post(create))
        .route("/model-apis/:name", get(show).put(replace).delete(remove))
        .route("/model-apis/:name/routes", get(api_routes))
        .route("/model-apis/:name/debug", post(super::debug::debug))
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<Value>> {
    let res = shared.resources.lock().await;
    let items = listing::<ModelApiSpec>(&res, &access, &q);
    Json(items.into_iter().map(|(a, m)| view(a, m)).collect())
}

async fn show(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let res = shared.resources.lock().await;
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

/// A scoped token may route only to services of its own groups.
fn check_services(
    res: &super::store::Resources,
    access: &Access,
    a: &ModelApiSpec,
) -> Result<(), ApiError> {
    for (field, name) in named_services(a) {
        if let Some(found) = find::<ServiceSpec>(res, name) {
            let group = found.spec().resource_group.as_str();
            if !access.allows(group) {
                let mut e = ApiError::forbidden(group);
                e.message = format!("service {name:?} is in resource group {group:?}, which this token is not scoped to");
                e.field = Some(field);
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    JsonBody(spec): JsonBody<ModelApiSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut res = shared.resources.lock().await;
    check_services(&res, &access, &spec)?;
    let out = view(&spec, false);
    resources::create(&shared, &mut res, &access, spec).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<ModelApiSpec>,
) -> Result<Json<Value>, ApiError> {
    let mut res = shared.resources.lock().await;
    check_services(&res, &access, &spec)?;
    let out = view(&spec, false);
    resources::replace(&shared, &mut res, &access, &name, spec, |_, _| {}).await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

async fn remove(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    Query(q): Query<Confirm>,
) -> Result<StatusCode, ApiError> {
    let mut res = shared.resources.lock().await;
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
    resources::remove::<ModelApiSpec>(&shared, &mut res, &access, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A route's full path: the base path joined with the route's own.
pub fn full_path(base_path: &str, route: &str) -> String {
    let base = base_path.trim_end_matches('/');
    format!("{base}{route}")
}

pub fn route_json(base_path: &str, r: &RouteDef) -> Value {
    json!({
        "name": r.name,
        "path": full_path(base_path, r.path),
        "methods": r.methods,
        "sub_paths": r.collection,
        "websocket": r.websocket,
    })
}

async fn api_routes(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let res = shared.resources.lock().await;
    let api = find_visible::<ModelApiSpec>(&res, &access, &name)?.spec();
    let routes = match (
        api.scenario.parse::<Scenario>(),
        api.protocol.parse::<Protocol>(),
    ) {
        (Ok(s), Ok(p)) => catalog::routes(s, p),
        _ => &[],
    };
    Ok(Json(json!({
        "model_api": api.name,
        "domains": api.domains,
        "base_path": api.base_path,
        "strip_base_path": api.strip_base_path,
        "routes": routes.iter().map(|r| route_json(&api.base_path, r)).collect::<Vec<_>>(),
    })))
}
