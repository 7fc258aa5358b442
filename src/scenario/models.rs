//! `GET /v1/models` on a text Model API (PRODUCT.md §13): the gateway
//! answers with the models its routing names — target rewrites and
//! `by_model` names without wildcards — in the Model API's protocol.
//! (The upstream's own list, for pass-through targets, is not fetched yet.)

use crate::config::catalog::{Protocol, Scenario};
use crate::http::head::Method;
use crate::provider::mock::MockAnswer;
use crate::snapshot::{under_base, ModelApi, Selection};
use serde_json::json;

/// The model list, when `method path` asks Model API `api` for it.
pub fn answer(api: &ModelApi, method: Method, path: &str) -> Option<MockAnswer> {
    let listing = api.scenario == Scenario::Text
        && method == Method::Get
        && matches!(
            under_base(&api.base_path, path),
            Some("/v1/models" | "/v1/models/")
        );
    if !listing {
        return None;
    }
    let names = routed_models(api);
    let body = match api.protocol {
        Protocol::Anthropic => json!({
            "data": names.iter().map(|m| json!({
                "type": "model",
                "id": m,
                "display_name": m,
                "created_at": "1970-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": names.first(),
            "last_id": names.last(),
        }),
        _ => json!({
            "object": "list",
            "data": names.iter().map(|m| json!({
                "id": m,
                "object": "model",
                "created": 0,
                "owned_by": "modelgate",
            })).collect::<Vec<_>>(),
        }),
    };
    Some(MockAnswer {
        status: 200,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        events: Vec::new(),
    })
}

/// Model names the Model API's selection and fallbacks spell out.
fn routed_models(api: &ModelApi) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |m: &str| {
        if !m.is_empty() && !m.contains(['*', '?']) && !names.iter().any(|n| n == m) {
            names.push(m.to_string());
        }
    };
    match &api.selection {
        Selection::Single(t) => t.model.iter().for_each(|m| add(m)),
        Selection::ByModel(rules) => {
            for (pattern, t) in rules {
                add(pattern);
                t.model.iter().for_each(|m| add(m));
            }
        }
        Selection::ByWeight { targets, .. } => {
            targets.iter().flat_map(|t| &t.model).for_each(|m| add(m))
        }
    }
    api.fallback
        .iter()
        .flat_map(|t| &t.model)
        .for_each(|m| add(m));
    names.sort();
    names
}
