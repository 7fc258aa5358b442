//! `GET /catalog`: scenarios, their protocols and default routes
//! (PRODUCT.md §5), and the provider kinds with what each speaks.

use crate::config::catalog::{self, Protocol, RouteDef, Scenario};
use crate::provider::KINDS;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Catalog {
    pub scenarios: Vec<ScenarioView>,
    pub provider_kinds: Vec<ProviderKind>,
}

#[derive(Serialize, ToSchema)]
pub struct ScenarioView {
    pub name: String,
    pub protocols: Vec<ProtocolView>,
}

#[derive(Serialize, ToSchema)]
pub struct ProtocolView {
    pub name: String,
    /// Default routes, paths relative to the base path.
    pub routes: Vec<RouteView>,
}

/// One route a Model API serves.
#[derive(Serialize, ToSchema)]
pub struct RouteView {
    pub name: String,
    pub path: String,
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub methods: Vec<String>,
    /// Also serves the sub-paths of `path`.
    pub sub_paths: bool,
    pub websocket: bool,
}

impl RouteView {
    /// `r` under `base_path`.
    pub fn new(base_path: &str, r: &RouteDef) -> RouteView {
        RouteView {
            name: r.name.to_string(),
            path: format!("{}{}", base_path.trim_end_matches('/'), r.path),
            methods: r.methods.names().map(str::to_string).collect(),
            sub_paths: r.collection,
            websocket: r.websocket,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderKind {
    pub kind: String,
    pub default_base_url: Option<String>,
    /// Protocols it speaks natively.
    pub protocols: Vec<String>,
    /// Protocols a text Model API can use it with through translation.
    pub protocols_by_translation: Vec<String>,
}

#[utoipa::path(get, path = "/admin/v1/catalog", tag = "catalog",
    responses((status = 200, body = Catalog), (status = 401, body = super::error::ErrorBody)))]
pub async fn catalog() -> Json<Catalog> {
    let scenarios = Scenario::ALL
        .iter()
        .map(|&s| ScenarioView {
            name: s.as_str().to_string(),
            protocols: s
                .protocols()
                .iter()
                .map(|&p| ProtocolView {
                    name: p.as_str().to_string(),
                    routes: catalog::routes(s, p)
                        .iter()
                        .map(|r| RouteView::new("/", r))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let names = |f: &dyn Fn(Protocol) -> bool| -> Vec<String> {
        Protocol::ALL
            .iter()
            .filter(|&&p| f(p))
            .map(|p| p.as_str().to_string())
            .collect()
    };
    let provider_kinds = KINDS
        .iter()
        .map(|k| ProviderKind {
            kind: k.kind.to_string(),
            default_base_url: k.default_base_url.map(str::to_string),
            protocols: names(&|p| k.speaks(p)),
            protocols_by_translation: names(&|p| !k.speaks(p) && k.serves(p)),
        })
        .collect();
    Json(Catalog {
        scenarios,
        provider_kinds,
    })
}
