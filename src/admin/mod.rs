//! The admin listener (control thread, axum): health and readiness, the
//! admin API under `/admin/v1` (PRODUCT.md §4) and the web console under
//! `/console/` (§4b).
//!
//! Every admin API request passes `authorize` first: it decides the
//! request's [`auth::Access`] from its bearer token and peer address.

mod apply;
pub mod auth;
mod catalog;
mod console;
mod consumers;
mod debug;
pub mod error;
mod groups;
mod model_apis;
mod openapi;
mod resources;
mod services;

use crate::control::Control;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn router(ctl: Arc<Control>) -> Router {
    let api = Router::new()
        .merge(services::routes())
        .merge(model_apis::routes())
        .merge(consumers::routes())
        .merge(groups::routes())
        .route("/catalog", get(catalog::catalog))
        .fallback(unknown_endpoint)
        .layer(middleware::from_fn_with_state(ctl.clone(), authorize))
        .layer(middleware::map_response(json_errors));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/openapi.json", get(openapi::openapi_json))
        .nest("/admin/v1", api)
        .merge(console::routes())
        .with_state(ctl)
}

pub async fn serve(listener: tokio::net::TcpListener, ctl: Arc<Control>) {
    ctl.resources.lock().await.tokens.log_mode();
    let app = router(ctl).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("admin listener: {e}");
    }
}

/// Bearer token (or loopback) → access, kept in the request's extensions.
async fn authorize(
    State(ctl): State<Arc<Control>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let (origin, host, bearer) = (
        header_text(&req, header::ORIGIN),
        header_text(&req, header::HOST),
        header_text(&req, header::AUTHORIZATION),
    );
    // An empty token is no token (so it meets the loopback-host check).
    let bearer = bearer
        .map(|v| auth::bearer_token(&v).to_string())
        .filter(|t| !t.is_empty());
    if auth::cross_origin(origin.as_deref(), host.as_deref()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross-origin requests are refused",
        )
        .into_response();
    }
    if bearer.is_none() && !auth::loopback_host(host.as_deref()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "without a token, the admin API is reached only as localhost or by IP address",
        )
        .into_response();
    }
    let access = auth::access(
        &ctl.resources.lock().await.tokens,
        bearer.as_deref(),
        peer.ip(),
    );
    match access {
        Ok(a) => {
            req.extensions_mut().insert(a);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// A header's value, owned: the request (not Sync) must not stay borrowed
/// across an await.
fn header_text(req: &Request, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Errors axum answers itself (a wrong method, a path or query that does
/// not parse) take the API's error shape too.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let allow = res.headers().get(header::ALLOW).cloned();
    let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

async fn unknown_endpoint(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no admin endpoint {} {}", req.method(), req.uri().path()),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /metrics` (no token): the merged registry in Prometheus' text format.
async fn metrics(State(ctl): State<Arc<Control>>) -> impl IntoResponse {
    let shared = &ctl.shared;
    let body = shared.observe.metrics.render(
        shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(ctl): State<Arc<Control>>) -> impl IntoResponse {
    let generation = ctl
        .shared
        .generation
        .load(std::sync::atomic::Ordering::Acquire);
    if !ctl.shared.ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "config_generation": generation})),
        );
    }
    let Some(link) = &ctl.cluster else {
        return (
            StatusCode::OK,
            Json(json!({"status": "ready", "config_generation": generation})),
        );
    };
    // Redis down: still serving from the last snapshot, so still ready.
    let up = link.up();
    (
        StatusCode::OK,
        Json(json!({
            "status": if up { "ready" } else { "degraded" },
            "config_generation": generation,
            "cluster": {
                "redis": if up { "up" } else { "down" },
                "instances": link.live_instances(),
                "store_version": ctl.resources.lock().await.store.version,
            },
        })),
    )
}
