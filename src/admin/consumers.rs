//! `/consumers` and their keys. A key is made here from 32 random bytes,
//! shown once in the answer that made it, and stored only as its SHA-256.

use super::auth::{random_hex, sha256_hex, Access};
use super::error::{parse, ApiError, ErrorBody, JsonBody};
use super::resources::{self, find_visible, listing, Found, ListQuery};
use super::services::mask;
use crate::config::raw::{ConsumerSpec, KeyHash, RateLimitsSpec};
use crate::control::Control;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/consumers", get(list).post(create))
        .route("/consumers/:name", get(show).put(replace).delete(remove))
        .route("/consumers/:name/keys", post(add_key))
        .route("/consumers/:name/keys/:key_id", delete(revoke_key))
}

/// What a client may set on a consumer; keys have their own endpoints.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerInput {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: String,
    #[serde(default = "default_group")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    resource_group: String,
    #[serde(default)]
    limits: RateLimitsSpec,
    #[serde(default = "yes")]
    enabled: bool,
}

/// A consumer as the API shows it: keys by id only, except in the answer
/// that made a key.
#[derive(Serialize, ToSchema)]
pub struct ConsumerView {
    name: String,
    resource_group: String,
    limits: RateLimitsSpec,
    enabled: bool,
    keys: Vec<KeyView>,
    managed_by_config: bool,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    id: String,
    /// The key itself: only in the answer that made it (`mg-...`), or
    /// masked for keys declared in the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn default_group() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

/// Reads a consumer body. `keys` as GET shows them (`[{"id": ..}]`) are
/// ignored, so a GET answer can be PUT back.
fn input(mut body: Value) -> Result<ConsumerInput, ApiError> {
    if let Some(o) = body.as_object_mut() {
        let shown = o
            .get("keys")
            .and_then(Value::as_array)
            .is_some_and(|keys| keys.iter().all(Value::is_object));
        if shown {
            o.remove("keys");
        }
    }
    parse(body)
}

fn consumer_view(c: &ConsumerSpec, managed: bool) -> ConsumerView {
    let mut keys: Vec<KeyView> = c
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| KeyView {
            id: format!("config-{i}"),
            key: Some(mask(k)),
        })
        .collect();
    keys.extend(c.key_hashes.iter().map(|h| KeyView {
        id: h.id.clone(),
        key: None,
    }));
    ConsumerView {
        name: c.name.clone(),
        resource_group: c.resource_group.clone(),
        limits: c.limits.clone(),
        enabled: c.enabled,
        keys,
        managed_by_config: managed,
    }
}

/// A new key for `c`: its id and the key itself (kept only as a hash).
fn new_key(c: &mut ConsumerSpec) -> (String, String) {
    let n = c
        .key_hashes
        .iter()
        .filter_map(|h| h.id.strip_prefix('k')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let id = format!("k{}", n + 1);
    let key = format!("mg-{}", random_hex(32));
    c.key_hashes.push(KeyHash {
        id: id.clone(),
        sha256: sha256_hex(key.as_bytes()),
    });
    (id, key)
}

#[utoipa::path(get, path = "/admin/v1/consumers", tag = "consumers",
    params(("resource_group" = Option<String>, Query, description = "only this group")),
    responses((status = 200, body = [ConsumerView]), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<ConsumerView>> {
    let res = ctl.resources.lock().await;
    let items = listing::<ConsumerSpec>(&res, &access, &q);
    Json(
        items
            .into_iter()
            .map(|(c, m)| consumer_view(c, m))
            .collect(),
    )
}

#[utoipa::path(get, path = "/admin/v1/consumers/{name}", tag = "consumers",
    params(("name" = String, Path)),
    responses((status = 200, body = ConsumerView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<ConsumerView>, ApiError> {
    let res = ctl.resources.lock().await;
    let found = find_visible::<ConsumerSpec>(&res, &access, &name)?;
    Ok(Json(consumer_view(found.spec(), found.managed_by_config())))
}

/// Answers with the consumer and its first key, shown this once.
#[utoipa::path(post, path = "/admin/v1/consumers", tag = "consumers", request_body = ConsumerInput,
    responses((status = 201, body = ConsumerView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn create(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<ConsumerView>), ApiError> {
    let i = input(body)?;
    let mut spec = ConsumerSpec {
        name: i.name,
        resource_group: i.resource_group,
        limits: i.limits,
        keys: Vec::new(),
        key_hashes: Vec::new(),
        enabled: i.enabled,
    };
    let (id, key) = new_key(&mut spec);
    let mut out = consumer_view(&spec, false);
    out.keys = vec![KeyView { id, key: Some(key) }];
    let mut res = ctl.resources.lock().await;
    resources::create(&ctl.shared, &mut res, &access, spec).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Keys are kept; they change only through the key endpoints.
#[utoipa::path(put, path = "/admin/v1/consumers/{name}", tag = "consumers", request_body = ConsumerInput,
    params(("name" = String, Path)),
    responses((status = 200, body = ConsumerView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub(super) async fn replace(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ConsumerView>, ApiError> {
    let i = input(body)?;
    let spec = ConsumerSpec {
        name: i.name,
        resource_group: i.resource_group,
        limits: i.limits,
        keys: Vec::new(),
        key_hashes: Vec::new(),
        enabled: i.enabled,
    };
    let mut res = ctl.resources.lock().await;
    resources::replace(&ctl.shared, &mut res, &access, &name, spec, |old, new| {
        new.key_hashes = old.key_hashes.clone();
    })
    .await?;
    let found = find_visible::<ConsumerSpec>(&res, &access, &name)?;
    Ok(Json(consumer_view(found.spec(), false)))
}

#[utoipa::path(delete, path = "/admin/v1/consumers/{name}", tag = "consumers",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut res = ctl.resources.lock().await;
    resources::remove::<ConsumerSpec>(&ctl.shared, &mut res, &access, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The store consumer `name` that `access` may change, cloned.
fn store_consumer(
    res: &crate::store::Resources,
    access: &Access,
    name: &str,
) -> Result<ConsumerSpec, ApiError> {
    match find_visible::<ConsumerSpec>(res, access, name)? {
        Found::File(_) => Err(ApiError::managed_by_config("consumer", name)),
        Found::Store(_, c) => Ok(c.clone()),
    }
}

/// A new key, shown this once.
#[utoipa::path(post, path = "/admin/v1/consumers/{name}/keys", tag = "consumers",
    params(("name" = String, Path)),
    responses((status = 201, body = KeyView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn add_key(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    let mut res = ctl.resources.lock().await;
    let mut c = store_consumer(&res, &access, &name)?;
    let (id, key) = new_key(&mut c);
    resources::replace(&ctl.shared, &mut res, &access, &name, c, |_, _| {}).await?;
    Ok((StatusCode::CREATED, Json(KeyView { id, key: Some(key) })))
}

#[utoipa::path(delete, path = "/admin/v1/consumers/{name}/keys/{key_id}", tag = "consumers",
    params(("name" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn revoke_key(
    State(ctl): State<Arc<Control>>,
    Extension(access): Extension<Access>,
    Path((name, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut res = ctl.resources.lock().await;
    let mut c = store_consumer(&res, &access, &name)?;
    let before = c.key_hashes.len();
    c.key_hashes.retain(|h| h.id != key_id);
    if c.key_hashes.len() == before {
        return Err(ApiError::not_found(
            &format!("key of consumer {name:?}"),
            &key_id,
        ));
    }
    resources::replace(&ctl.shared, &mut res, &access, &name, c, |_, _| {}).await?;
    Ok(StatusCode::NO_CONTENT)
}
