//! `/v1/tokens` and `/v1/secrets`: what goes in and what comes back. Neither ever
//! answers a secret value; a token's text is answered once, when it is created.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{Role, TokenRecord};
pub use crate::secrets::SecretMeta;

/// The body of `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Unique name.
    pub name: String,
    /// `admin`, `deploy`, `invoke` or `read`.
    pub role: Role,
}

/// A token as listed: never its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The token's metadata.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The token itself.
    pub token: String,
}

/// The answer of `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Every token, by name.
    pub tokens: Vec<TokenInfo>,
}

/// The body of `PUT /v1/secrets/{name}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecretRequest {
    /// The new value.
    pub value: String,
}

/// The answer of `GET /v1/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretList {
    /// Every secret's metadata, by name.
    pub secrets: Vec<SecretMeta>,
}
