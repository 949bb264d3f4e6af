//! `/v1/internal/executions`: the watchdog's callback (`{id}:complete`) and the large
//! payload fetch, each authenticated by the execution's own token, not the API token.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

use super::error::{parse_body, ApiError};
use super::{bearer, parse_id, split_action, AppState};
use crate::dispatch::{CallbackReport, DispatchError};
use crate::wire::CompletionAnswer;

/// `POST /v1/internal/executions/{id}:complete`: 200 `{"applied": bool}`; `false` when
/// the execution was already final (a repeated or late report changes nothing).
pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, action) = split_action(&segment);
    if action != Some("complete") {
        return Err(ApiError::not_found("the only internal action is :complete"));
    }
    let id = parse_id(id)?;
    // An unauthenticated caller learns nothing about the body it sent.
    let Some(token) = bearer(&headers) else {
        return Err(DispatchError::MissingToken.into());
    };
    let body = parse_body(body)?;
    let report = parse_report(&body)?;
    let applied = state.dispatcher.complete(id, Some(token), report).await?;
    Ok((StatusCode::OK, Json(CompletionAnswer { applied })).into_response())
}

/// Reads a callback body: a report the control plane cannot use is a 400. Read from the
/// bytes, not through a JSON value: an output a value cannot hold (`1e400`) becomes an
/// INVALID_OUTPUT failure (see [`CallbackReport`]), not a refused report.
pub fn parse_report(body: &[u8]) -> Result<CallbackReport, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("invalid completion report: {err}")))
}

/// `GET /v1/internal/executions/{id}/payload`: the input of a running execution.
#[utoipa::path(
    operation_id = "getExecutionPayload",get, path = "/executions/{id}/payload", tag = "internal",
    security(("execution" = [])),
    params(("id" = String, Path, description = "The execution's id (a UUID).")),
    responses(
        (status = 200, description = "The running execution's input.", content_type = "application/json", body = serde_json::Value),
        (status = 401, description = "No execution token (`UNAUTHORIZED`).", body = crate::wire::ErrorBody),
        (status = 403, description = "Not this execution's token (`FORBIDDEN`).", body = crate::wire::ErrorBody),
        (status = 404, description = "No such running execution (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn payload(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let payload = state.dispatcher.payload(id, bearer(&headers))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        payload.as_ref().clone(),
    )
        .into_response())
}
