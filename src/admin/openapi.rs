//! `GET /admin/v1/openapi.json`: the admin API described by OpenAPI 3.1,
//! generated (utoipa) from the handlers' annotations and the very types
//! they read and write, so the two cannot drift apart.

use super::catalog::{Catalog, RouteView};
use super::consumers::{ConsumerInput, ConsumerView, KeyView};
use super::debug::{DebugAnswer, DebugRequest};
use super::error::ErrorBody;
use super::groups::GroupView;
use super::model_apis::RoutesView;
use crate::config::raw::{ModelApiSpec, ServiceSpec};
use crate::store::GroupSpec;
use axum::response::IntoResponse;
use axum::Json;
use std::sync::OnceLock;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "modelgate admin API",
        description = "Services, Model APIs, consumers, resource groups and the catalog. \
                       Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`. \
                       Request bodies must be `Content-Type: application/json` (415 otherwise). \
                       For a token scoped to resource groups, another group's resources answer \
                       as if they did not exist (404)."
    ),
    paths(
        super::services::list, super::services::show, super::services::create,
        super::services::replace, super::services::remove,
        super::model_apis::list, super::model_apis::show, super::model_apis::create,
        super::model_apis::replace, super::model_apis::remove, super::model_apis::api_routes,
        super::debug::debug,
        super::consumers::list, super::consumers::show, super::consumers::create,
        super::consumers::replace, super::consumers::remove, super::consumers::add_key,
        super::consumers::revoke_key,
        super::groups::list, super::groups::show, super::groups::create, super::groups::remove,
        super::catalog::catalog,
    ),
    components(schemas(
        ServiceSpec, ServiceView, ModelApiSpec, ModelApiView, RoutesView, RouteView,
        ConsumerInput, ConsumerView, KeyView, GroupSpec, GroupView, Catalog,
        DebugRequest, DebugAnswer, ErrorBody,
    )),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
struct AdminApi;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `T` as GET shows it: its fields plus `managed_by_config` (true for
/// resources declared in the config file, which are read-only here).
fn as_shown<T: PartialSchema>() -> RefOr<Schema> {
    let mut schema = T::schema();
    if let RefOr::T(Schema::Object(o)) = &mut schema {
        o.additional_properties = None;
        o.properties.insert(
            "managed_by_config".into(),
            Object::with_type(Type::Boolean).into(),
        );
        o.required.push("managed_by_config".into());
    }
    schema
}

/// A service as GET shows it (keys masked).
pub struct ServiceView;
/// A Model API as GET shows it.
pub struct ModelApiView;

impl PartialSchema for ServiceView {
    fn schema() -> RefOr<Schema> {
        as_shown::<ServiceSpec>()
    }
}
impl ToSchema for ServiceView {
    fn schemas(s: &mut Vec<(String, RefOr<Schema>)>) {
        <ServiceSpec as ToSchema>::schemas(s);
    }
}
impl PartialSchema for ModelApiView {
    fn schema() -> RefOr<Schema> {
        as_shown::<ModelApiSpec>()
    }
}
impl ToSchema for ModelApiView {
    fn schemas(s: &mut Vec<(String, RefOr<Schema>)>) {
        <ModelApiSpec as ToSchema>::schemas(s);
    }
}

pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(AdminApi::openapi()).expect("OpenAPI serializes"))
}

pub async fn openapi_json() -> impl IntoResponse {
    Json(document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_reference_resolves() {
        let doc = super::document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        assert!(doc["paths"]["/admin/v1/model-apis/{name}/debug"]["post"].is_object());
        // Every operation that reads a body documents the 415 of another
        // Content-Type.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if op.get("requestBody").is_some() {
                    assert!(
                        op["responses"]["415"].is_object(),
                        "{method} {path}: no 415"
                    );
                }
            }
        }
    }
}
