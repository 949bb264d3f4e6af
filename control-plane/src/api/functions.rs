//! `/v1/functions`: create, list, read, replace, delete, version history.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, JsonBody};
use super::{split_action, AppState};
use crate::registry::FunctionVersion;

/// `POST /v1/functions`: 201 with the first version, 409 if the name is taken.
pub async fn create(
    State(state): State<Arc<AppState>>,
    JsonBody(manifest): JsonBody,
) -> Result<Response, ApiError> {
    let created = state.catalog.create(manifest).await?;
    let body = with_warnings(&state, &created.version)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A version as JSON, plus `warnings` naming settings the runtime does not apply.
fn with_warnings(state: &AppState, version: &FunctionVersion) -> Result<Value, ApiError> {
    let mut body = serde_json::to_value(version).map_err(|err| ApiError::internal(&err))?;
    let ignored = state.catalog.ignored(&version.spec);
    if !ignored.is_empty() {
        body["warnings"] = Value::from(ignored);
    }
    Ok(body)
}

/// `GET /v1/functions`.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let functions = state.catalog.list().await?;
    Ok(Json(json!({ "functions": functions })))
}

/// `GET /v1/functions/{name}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionVersion>, ApiError> {
    let name = plain_name(&name)?;
    let function = state.catalog.current(name).await?;
    Ok(Json(function.version.as_ref().clone()))
}

/// `PUT /v1/functions/{name}`: a new version unless the definition is unchanged.
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(manifest): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let name = plain_name(&name)?;
    let (function, changed) = state.catalog.replace(name, manifest).await?;
    let mut body = with_warnings(&state, &function.version)?;
    body["changed"] = Value::Bool(changed);
    Ok(Json(body))
}

/// `DELETE /v1/functions/{name}`: 204.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = plain_name(&name)?;
    state.catalog.delete(name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/functions/{name}/versions`: oldest first.
pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions = state.catalog.history(&name).await?;
    Ok(Json(json!({ "versions": versions })))
}

fn plain_name(segment: &str) -> Result<&str, ApiError> {
    match split_action(segment) {
        (name, None) => Ok(name),
        (_, Some(action)) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!(":{action} takes POST"),
        )),
    }
}
