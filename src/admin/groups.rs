//! `/resource-groups`. A group exists when it is `default`, was made here,
//! is named by a scoped admin token, or holds a resource. Only empty groups
//! made here can be deleted. A scoped token sees only its own groups: any
//! other answers 404, as a group that does not exist.

use super::auth::Access;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::resources::all_model_apis;
use crate::config::valid_name;
use crate::control::Control;
use crate::store::{GroupSpec, Resources};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use utoipa::ToSchema;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/resource-groups", get(list).post(create))
        .route("/resource-groups/:name", get(show).delete(remove))
}

const DEFAULT: &str = "default";

fn names(res: &Resources) -> BTreeSet<String> {
    let mut out = BTreeSet::from([DEFAULT.to_string()]);
    let (f, s) = (&res.file, &res.store.state);
    out.extend(s.resource_groups.iter().map(|g| g.name.clone()));
    out.extend(res.tokens.scoped_groups().map(str::to_string));
    out.extend(
        f.services
            .iter()
            .chain(&s.services)
            .map(|x| x.resource_group.clone()),
    );
    out.extend(all_model_apis(res).map(|x| x.resource_group.clone()));
    out.extend(
        f.consumers
            .iter()
            .chain(&s.consumers)
            .map(|x| x.resource_group.clone()),
    );
    out
}

/// How many resources of each kind a group holds.
fn members(res: &Resources, group: &str) -> (usize, usize, usize) {
    let (f, s) = (&res.file, &res.store.state);
    let services = f.services.iter().chain(&s.services);
    let consumers = f.consumers.iter().chain(&s.consumers);
    (
        services.filter(|x| x.resource_group == group).count(),
        all_model_apis(res)
            .filter(|x| x.resource_group == group)
            .count(),
        consumers.filter(|x| x.resource_group == group).count(),
    )
}

/// A resource group and how much it holds.
#[derive(Serialize, ToSchema)]
pub struct GroupView {
    name: String,
    description: String,
    /// Named only by the config file (a scoped token or a file resource).
    managed_by_config: bool,
    resources: Members,
}

#[derive(Serialize, ToSchema)]
pub struct Members {
    services: usize,
    model_apis: usize,
    consumers: usize,
}

fn group_view(res: &Resources, name: &str) -> GroupView {
    let stored = res
        .store
        .state
        .resource_groups
        .iter()
        .find(|g| g.name == name);
    let (services, model_apis, consumers) = members(res, name);
    GroupView {
        name: name.to_string(),
        description: stored.map(|g| g.description.clone()).unwrap_or_default(),
        managed_by_config: stored.is_none() && name != DEFAULT,
        resources: Members {
            services,
            model_apis,
            consumers,
        },
    }
}

#[utoipa::path(get, path = "/admin/v1/resource-groups", tag = "resource-groups",
    responses((status = 200, body = [GroupView]), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
) -> Json<Vec<GroupView>> {
    let res = ctl.resources.lock().await;
    let out = names(&res)
        .into_iter()
        .filter(|g| access.allows(g))
        .map(|g| group_view(&res, &g))
        .collect();
    Json(out)
}

#[utoipa::path(get, path = "/admin/v1/resource-groups/{name}", tag = "resource-groups",
    params(("name" = String, Path)),
    responses((status = 200, body = GroupView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    let res = ctl.resources.lock().await;
    if !access.allows(&name) || !names(&res).contains(&name) {
        return Err(ApiError::not_found("resource group", &name));
    }
    Ok(Json(group_view(&res, &name)))
}

#[utoipa::path(post, path = "/admin/v1/resource-groups", tag = "resource-groups", request_body = GroupSpec,
    responses((status = 201, body = GroupView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn create(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    JsonBody(spec): JsonBody<GroupSpec>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    if !valid_name(&spec.name) {
        return Err(ApiError::invalid(
            "name",
            "must be 1-64 letters, digits, '_' or '-'",
        ));
    }
    access.check(&spec.name)?;
    let mut res = ctl.resources.lock().await;
    if names(&res).contains(&spec.name) {
        return Err(ApiError::conflict(
            "already_exists",
            format!("resource group {:?} already exists", spec.name),
        ));
    }
    let mut next = res.store.state.clone();
    next.resource_groups.push(spec.clone());
    // Groups are labels: compiled only to share apply's write path.
    super::apply::apply(&ctl.shared, &mut res, &access, next, None).await?;
    Ok((StatusCode::CREATED, Json(group_view(&res, &spec.name))))
}

/// 409 for `default` and for groups that still hold resources.
#[utoipa::path(delete, path = "/admin/v1/resource-groups/{name}", tag = "resource-groups",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut res = ctl.resources.lock().await;
    if !access.allows(&name) || !names(&res).contains(&name) {
        return Err(ApiError::not_found("resource group", &name));
    }
    if name == DEFAULT {
        return Err(ApiError::conflict(
            "conflict",
            "the default resource group always exists",
        ));
    }
    let (s, a, c) = members(&res, &name);
    if s + a + c > 0 {
        return Err(ApiError::conflict(
            "not_empty",
            format!("resource group {name:?} holds {s} services, {a} Model APIs and {c} consumers"),
        ));
    }
    let Some(index) = res
        .store
        .state
        .resource_groups
        .iter()
        .position(|g| g.name == name)
    else {
        return Err(ApiError::managed_by_config("resource group", &name));
    };
    let mut next = res.store.state.clone();
    next.resource_groups.remove(index);
    super::apply::apply(&ctl.shared, &mut res, &access, next, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
