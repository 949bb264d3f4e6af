//! `/v1/secrets`: set, list and delete secrets. No route ever answers a value: only
//! names, versions and dates. Setting a value recycles the warm instances of every
//! function that uses it, so new calls see the new value.

use std::sync::Arc;

use super::error::{typed_body, ApiError, JsonBody};
use super::AppState;
use crate::secrets::VaultError;
use crate::wire::{PutSecretRequest, SecretList, SecretMeta};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

impl From<VaultError> for ApiError {
    fn from(err: VaultError) -> ApiError {
        match err {
            VaultError::InvalidName(message) | VaultError::InvalidValue(message) => {
                ApiError::bad_request(message)
            }
            VaultError::NotFound(_) => ApiError::not_found(err.to_string()),
            VaultError::WrongKey { .. } => ApiError::internal(&err),
            VaultError::Store(err) => err.into(),
        }
    }
}

/// `PUT /v1/secrets/{name}`: 201 for a new secret, 200 for a new value of one.
#[utoipa::path(
    operation_id = "putSecret",put, path = "/secrets/{name}", tag = "access",
    params(("name" = String, Path, description = "The secret's name.")),
    request_body(content = PutSecretRequest),
    responses(
        (status = 200, description = "A new value of an existing secret.", body = SecretMeta),
        (status = 201, description = "A new secret.", body = SecretMeta),
    ))]
pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request: PutSecretRequest = typed_body(body, r#"{"value": "..."}"#)?;
    let meta = state.vault.put(&name, &request.value).await?;
    for function in users_of(&state, &name).await? {
        state.dispatcher.pools().recycle(&function);
    }
    let status = if meta.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(meta)).into_response())
}

/// `GET /v1/secrets`.
#[utoipa::path(
    operation_id = "listSecrets",get, path = "/secrets", tag = "access",
    responses((status = 200, description = "Every secret's metadata, never a value.", body = SecretList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<SecretList>, ApiError> {
    let secrets = state.vault.list().await?;
    Ok(Json(SecretList { secrets }))
}

/// `GET /v1/secrets/{name}`: its metadata.
#[utoipa::path(
    operation_id = "getSecret",get, path = "/secrets/{name}", tag = "access",
    params(("name" = String, Path, description = "The secret's name.")),
    responses(
        (status = 200, description = "Its metadata, never its value.", body = SecretMeta),
        (status = 404, description = "No such secret (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<SecretMeta>, ApiError> {
    state
        .vault
        .list()
        .await?
        .into_iter()
        .find(|meta| meta.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("secret {name:?} not found")))
}

/// `DELETE /v1/secrets/{name}`: 204; 409 while a function maps it.
#[utoipa::path(
    operation_id = "deleteSecret",delete, path = "/secrets/{name}", tag = "access",
    params(("name" = String, Path, description = "The secret's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such secret (`NOT_FOUND`).", body = crate::wire::ErrorBody),
        (status = 409, description = "A function maps it (`CONFLICT`).", body = crate::wire::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let users = users_of(&state, &name).await?;
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "secret {name:?} is used by {}; remove it from their `secrets` first",
            users.join(", ")
        )));
    }
    if state.vault.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("secret {name:?} not found")))
    }
}

/// The functions whose current version maps secret `name`.
async fn users_of(state: &AppState, name: &str) -> Result<Vec<String>, ApiError> {
    let functions = state.catalog.list().await?;
    Ok(functions
        .into_iter()
        .filter(|function| {
            function
                .spec
                .secrets
                .values()
                .any(|reference| reference.secret() == name)
        })
        .map(|function| function.name)
        .collect())
}
