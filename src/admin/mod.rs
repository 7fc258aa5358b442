//! The admin listener (control thread, axum): health and readiness now;
//! the admin API, console and metrics are added here.

use crate::runtime::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::observe::metrics::handler))
        .with_state(shared)
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::error!("admin listener: {e}");
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let generation = shared.generation.load(std::sync::atomic::Ordering::Acquire);
    if shared.ready() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "config_generation": generation})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "config_generation": generation})),
        )
    }
}
