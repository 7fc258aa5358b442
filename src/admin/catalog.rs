//! `GET /catalog`: scenarios, their protocols and default routes
//! (PRODUCT.md §5), and the provider kinds with what each speaks.

use crate::config::catalog::{self, Protocol, Scenario};
use crate::provider::KINDS;
use axum::Json;
use serde_json::{json, Value};

pub async fn catalog() -> Json<Value> {
    let scenarios: Vec<Value> = Scenario::ALL
        .iter()
        .map(|&s| {
            let protocols: Vec<Value> = s
                .protocols()
                .iter()
                .map(|&p| {
                    let routes: Vec<Value> = catalog::routes(s, p)
                        .iter()
                        .map(|r| super::model_apis::route_json("/", r))
                        .collect();
                    json!({"name": p.as_str(), "routes": routes})
                })
                .collect();
            json!({"name": s.as_str(), "protocols": protocols})
        })
        .collect();
    let providers: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            let speaks: Vec<&str> = Protocol::ALL
                .iter()
                .filter(|&&p| k.speaks(p))
                .map(|p| p.as_str())
                .collect();
            let translates: Vec<&str> = Protocol::ALL
                .iter()
                .filter(|&&p| !k.speaks(p) && k.serves(p))
                .map(|p| p.as_str())
                .collect();
            json!({
                "kind": k.kind,
                "default_base_url": k.default_base_url,
                "protocols": speaks,
                "protocols_by_translation": translates,
            })
        })
        .collect();
    Json(json!({"scenarios": scenarios, "provider_kinds": providers}))
}
