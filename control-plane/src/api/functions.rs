//! `/v1/functions`: create, list, read, replace, delete, version history.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::error::{ApiError, ApiErrorCode, JsonBody};
use super::{split_action, AppState};
use crate::registry::FunctionVersion;
use crate::schedule;
use crate::store::CursorScope;
use crate::wire::{FunctionAnswer, FunctionList, ScaleRequest, VersionList};

/// `POST /v1/functions`: 201 with the first version, 409 if the name is taken.
#[utoipa::path(
    operation_id = "createFunction",post, path = "/functions", tag = "functions",
    request_body(content = crate::registry::FunctionSpec, description = "The function's manifest."),
    responses(
        (status = 201, description = "The first version.", body = FunctionAnswer),
        (status = 400, description = "An invalid manifest (`INVALID_FUNCTION`) or body (`BAD_REQUEST`).", body = crate::wire::ErrorBody),
        (status = 409, description = "The name is taken (`ALREADY_EXISTS`).", body = crate::wire::ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    JsonBody(manifest): JsonBody,
) -> Result<Response, ApiError> {
    let created = state.catalog.create(manifest).await?;
    state.dispatcher.deployed(&created);
    let body = with_warnings(&state, &created.version);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A version as answered, with `warnings` naming settings the runtime does not apply.
fn with_warnings(state: &AppState, version: &FunctionVersion) -> FunctionAnswer {
    let mut body = FunctionAnswer::from(version.clone());
    body.warnings = state.catalog.ignored(&version.spec);
    body
}

/// `GET /v1/functions`.
#[utoipa::path(
    operation_id = "listFunctions",get, path = "/functions", tag = "functions",
    responses((status = 200, description = "Every function's current version.", body = FunctionList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<FunctionList>, ApiError> {
    let functions = state.catalog.list().await?;
    Ok(Json(FunctionList {
        functions: functions.into_iter().map(FunctionAnswer::from).collect(),
    }))
}

/// `GET /v1/functions/{name}`: the current version, with `pool` for a warm function.
#[utoipa::path(
    operation_id = "getFunction",get, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The current version, with its warm pool and schedules.", body = FunctionAnswer),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = crate::wire::ErrorBody),
        (status = 405, description = "`name:action` takes POST (`METHOD_NOT_ALLOWED`).", body = crate::wire::ErrorBody),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionAnswer>, ApiError> {
    let name = plain_name(&name)?;
    let function = state.catalog.current(name).await?;
    let mut body = FunctionAnswer::from(function.version.as_ref().clone());
    body.pool = state.dispatcher.pools().status(name);
    let schedules = &function.spec().schedules;
    if !schedules.is_empty() {
        let cursors = state.store.list_schedule_cursors().await?;
        body.schedules = schedule::statuses(name, schedules, &cursors, chrono::Utc::now());
    }
    Ok(Json(body))
}

/// `POST /v1/functions/{name}:scale`: a new version with the warm pool's bounds changed
/// (a `warm` section is added if there was none). Instances keep running when nothing
/// else about how they start changed.
pub async fn scale(state: Arc<AppState>, name: &str, body: Value) -> Result<Response, ApiError> {
    let request: ScaleRequest = serde_json::from_value(body).map_err(|err| {
        ApiError::bad_request(format!(
            "the body must be {{\"min_instances\": N, \"max_instances\": N}}: {err}"
        ))
    })?;
    if request.min_instances.is_none() && request.max_instances.is_none() {
        return Err(ApiError::bad_request(
            "give min_instances, max_instances or both".to_owned(),
        ));
    }
    let current = state.catalog.current(name).await?;
    let mut spec = current.spec().clone();
    let mut warm = spec.warm.take().unwrap_or_default();
    if let Some(min) = request.min_instances {
        warm.min_instances = min;
    }
    if let Some(max) = request.max_instances {
        warm.max_instances = max;
    }
    spec.warm = Some(warm);
    let manifest = serde_json::to_value(&spec).map_err(|err| ApiError::internal(&err))?;
    let (function, changed) = state.catalog.replace(name, manifest).await?;
    state.dispatcher.deployed(&function);
    let mut body = with_warnings(&state, &function.version);
    body.changed = Some(changed);
    body.pool = state.dispatcher.pools().status(name);
    Ok(Json(body).into_response())
}

/// `PUT /v1/functions/{name}`: a new version unless the definition is unchanged.
#[utoipa::path(
    operation_id = "replaceFunction",put, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    request_body(content = crate::registry::FunctionSpec, description = "The new manifest; its name must be the path's."),
    responses(
        (status = 200, description = "The current version; `changed` says whether it is new.", body = FunctionAnswer),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = crate::wire::ErrorBody),
        (status = 405, description = "`name:action` takes POST (`METHOD_NOT_ALLOWED`).", body = crate::wire::ErrorBody),
    ))]
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(manifest): JsonBody,
) -> Result<Json<FunctionAnswer>, ApiError> {
    let name = plain_name(&name)?;
    let (function, changed) = state.catalog.replace(name, manifest).await?;
    if changed {
        state.dispatcher.deployed(&function);
    }
    let mut body = with_warnings(&state, &function.version);
    body.changed = Some(changed);
    Ok(Json(body))
}

/// `DELETE /v1/functions/{name}`: 204.
#[utoipa::path(
    operation_id = "deleteFunction",delete, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 204, description = "Deleted with its versions."),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = crate::wire::ErrorBody),
        (status = 405, description = "`name:action` takes POST (`METHOD_NOT_ALLOWED`).", body = crate::wire::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = plain_name(&name)?;
    state.catalog.delete(name).await?;
    state.dispatcher.removed(name);
    state
        .store
        .delete_schedule_cursors(name, CursorScope::All)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/functions/{name}/versions`: oldest first.
#[utoipa::path(
    operation_id = "listFunctionVersions",get, path = "/functions/{name}/versions", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "Every version, oldest first.", body = VersionList),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    let versions = state.catalog.history(&name).await?;
    Ok(Json(VersionList {
        versions: versions.into_iter().map(FunctionAnswer::from).collect(),
    }))
}

fn plain_name(segment: &str) -> Result<&str, ApiError> {
    match split_action(segment) {
        (name, None) => Ok(name),
        (_, Some(action)) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorCode::MethodNotAllowed,
            format!(":{action} takes POST"),
        )),
    }
}
