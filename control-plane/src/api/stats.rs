//! `GET /v1/functions/{name}/stats`: the last hour of a function's finished
//! executions on this node, by minute (throughput, failures, cold starts, p50/p99 run
//! time), from the server's own bounded in-memory series.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::error::ApiError;
use super::AppState;
use crate::metrics::FunctionStats;

/// `GET /v1/functions/{name}/stats`: 404 for a function that does not exist.
#[utoipa::path(
    operation_id = "getFunctionStats", get, path = "/functions/{name}/stats", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The last hour of its finished executions on this node, by minute.", body = FunctionStats),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionStats>, ApiError> {
    state.catalog.current(&name).await?;
    Ok(Json(state.metrics.stats(&name)))
}
