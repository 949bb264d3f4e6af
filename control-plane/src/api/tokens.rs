//! `/v1/tokens`: create (the token is shown once), list (never the token) and revoke
//! API tokens. Admin only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{typed_body, ApiError, JsonBody};
use super::AppState;
use crate::access::credentials::CreateTokenError;
use crate::access::{Role, TokenRecord};

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Unique name.
    pub name: String,
    /// `admin`, `deploy`, `invoke` or `read`.
    pub role: Role,
}

/// A token as listed: never its text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to about a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<TokenRecord> for TokenInfo {
    fn from(record: TokenRecord) -> TokenInfo {
        TokenInfo {
            name: record.name,
            role: record.role,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
        }
    }
}

/// The answer of `POST /v1/tokens`: the only time the token's text is shown.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The token's metadata.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The token itself.
    pub token: String,
}

/// The answer of `GET /v1/tokens`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, by name.
    pub tokens: Vec<TokenInfo>,
}

/// `POST /v1/tokens`: 201 with the new token, 409 if the name is taken.
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
            CreateTokenError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", err.to_string())
            }
            CreateTokenError::Store(err) => err.into(),
        })?;
    let created = CreatedToken {
        info: record.into(),
        token,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/tokens`.
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
