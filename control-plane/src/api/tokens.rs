//! `/v1/tokens`: create (the token is shown once), list (never the token) and revoke
//! API tokens. Admin only.

use std::sync::Arc;

use super::error::{typed_body, ApiError, ApiErrorCode, JsonBody};
use super::AppState;
use crate::access::credentials::CreateTokenError;
use crate::wire::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `POST /v1/tokens`: 201 with the new token, 409 if the name is taken.
#[utoipa::path(
    operation_id = "createToken",post, path = "/tokens", tag = "access",
    request_body(content = CreateTokenRequest),
    responses(
        (status = 201, description = "The new token: the only time its text is shown.", body = CreatedToken),
        (status = 409, description = "The name is taken (`ALREADY_EXISTS`).", body = crate::wire::ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request: CreateTokenRequest = typed_body(
        body,
        r#"{"name": "...", "role": "admin" | "deploy" | "invoke" | "read"}"#,
    )?;
    let (record, token) = state
        .credentials
        .create(&request.name, request.role)
        .await
        .map_err(|err| match err {
            CreateTokenError::InvalidName(message) => ApiError::bad_request(message),
            CreateTokenError::Exists(_) => ApiError::new(
                StatusCode::CONFLICT,
                ApiErrorCode::AlreadyExists,
                err.to_string(),
            ),
            CreateTokenError::Store(err) => err.into(),
        })?;
    let created = CreatedToken {
        info: record.into(),
        token,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/tokens`.
#[utoipa::path(
    operation_id = "listTokens",get, path = "/tokens", tag = "access",
    responses((status = 200, description = "Every token, never its text.", body = TokenList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Json<TokenList> {
    let tokens = state
        .credentials
        .list()
        .into_iter()
        .map(TokenInfo::from)
        .collect();
    Json(TokenList { tokens })
}

/// `DELETE /v1/tokens/{name}`: 204; the token stops working at once.
#[utoipa::path(
    operation_id = "revokeToken",delete, path = "/tokens/{name}", tag = "access",
    params(("name" = String, Path, description = "The token's name.")),
    responses(
        (status = 204, description = "Revoked: it stops working at once."),
        (status = 404, description = "No such token (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.credentials.revoke(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("token {name:?} not found")))
    }
}
