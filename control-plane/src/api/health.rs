//! `/healthz` (the process answers), `/readyz` (recovery is done and the store answers)
//! and `/metrics` (Prometheus text).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use crate::wire::{Health, HealthStatus};

/// `GET /healthz`.
#[utoipa::path(
    operation_id = "healthz",get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "The process answers.", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health::of(HealthStatus::Ok))
}

/// `GET /readyz`: 503 until start-up recovery is done or while the store fails.
#[utoipa::path(
    operation_id = "readyz",get, path = "/readyz", tag = "meta", security(()),
    responses(
        (status = 200, description = "Recovery is done and the store answers.", body = Health),
        (status = 503, description = "Still starting, or the store does not answer.", body = Health),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health::of(HealthStatus::Starting)),
        )
            .into_response();
    }
    match state.store.ping().await {
        Ok(_) => Json(Health::of(HealthStatus::Ready)).into_response(),
        Err(err) => {
            tracing::error!("readiness check: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health::of(HealthStatus::StoreUnavailable)),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`.
#[utoipa::path(
    operation_id = "metrics",get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text).", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
