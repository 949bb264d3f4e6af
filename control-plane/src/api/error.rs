//! HTTP errors: every failure becomes `{"error": {"code", "message", "details"?}}` with
//! the right status. Internal causes are logged, never sent.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

pub use super::error_code::ApiErrorCode;
use crate::dispatch::DispatchError;
use crate::registry::catalog::RegistryError;
use crate::store::StoreError;
use crate::wire::{ErrorBody, ErrorDetail, RedrivenDetails};

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    message: String,
    details: Option<Value>,
    retry_after_secs: Option<u64>,
    challenge: bool,
}

impl ApiError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// An error with `status`, a stable `code` and a `message` for humans.
    pub fn new(status: StatusCode, code: ApiErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
            challenge: false,
        }
    }

    /// Adds `WWW-Authenticate: Bearer` (an answer to a missing or invalid token).
    pub fn challenge(mut self) -> ApiError {
        self.challenge = true;
        self
    }

    /// 409 with `message`.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, ApiErrorCode::Conflict, message)
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::BadRequest, message)
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, message)
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// 500 for a failure the caller cannot fix; the cause goes to the server log only.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {cause}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            "internal error; the server log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        if err.is_full() {
            tracing::error!("the store is full: {err}");
            let mut error = ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ApiErrorCode::InsufficientStorage,
                "the server's disk is full: nothing new can be accepted until space is freed (what was accepted before is kept)",
            );
            error.retry_after_secs = Some(30);
            return error;
        }
        if err.is_unavailable() {
            tracing::error!("the store is unavailable: {err}");
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiErrorCode::StoreUnavailable,
                "the server cannot write to its store right now; try again shortly",
            );
            error.retry_after_secs = Some(5);
            return error;
        }
        ApiError::internal(&err)
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> ApiError {
        match err {
            RegistryError::Invalid(problems) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::InvalidFunction,
                format!("invalid function definition: {}", problems.join("; ")),
            )
            .with_details(Value::from(problems)),
            RegistryError::NotFound(_) | RegistryError::VersionNotFound(..) => {
                ApiError::not_found(err.to_string())
            }
            RegistryError::Exists(_) => ApiError::new(
                StatusCode::CONFLICT,
                ApiErrorCode::AlreadyExists,
                err.to_string(),
            ),
            RegistryError::NameMismatch { .. } => ApiError::bad_request(err.to_string()),
            RegistryError::Store(err) => err.into(),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(err: DispatchError) -> ApiError {
        let message = err.to_string();
        match err {
            DispatchError::Registry(err) => err.into(),
            DispatchError::Disabled(_) => ApiError::new(
                StatusCode::CONFLICT,
                ApiErrorCode::FunctionDisabled,
                message,
            ),
            DispatchError::InvalidInput { violations, .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::InvalidInput,
                format!("{message}: {}", violations.join("; ")),
            )
            .with_details(Value::from(violations)),
            DispatchError::InputTooComplex(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiErrorCode::InputTooComplex,
                message,
            ),
            DispatchError::QueueFull { .. } => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ApiErrorCode::QueueFull,
                    message,
                );
                error.retry_after_secs = Some(1);
                error
            }
            DispatchError::RateLimited { retry_after, .. } => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ApiErrorCode::RateLimited,
                    message,
                );
                error.retry_after_secs = Some(crate::dispatch::retry_after_secs(retry_after));
                error
            }
            DispatchError::ExecutionNotFound(_) => ApiError::not_found(message),
            DispatchError::IdempotencyKeyReused { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ApiErrorCode::IdempotencyKeyReused,
                message,
            ),
            DispatchError::AlreadyFinished(..) => {
                ApiError::new(StatusCode::CONFLICT, ApiErrorCode::AlreadyFinished, message)
            }
            DispatchError::MissingToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                ApiErrorCode::Unauthorized,
                message,
            ),
            DispatchError::WrongToken(_) => {
                ApiError::new(StatusCode::FORBIDDEN, ApiErrorCode::Forbidden, message)
            }
            DispatchError::ShuttingDown => {
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ApiErrorCode::ShuttingDown,
                    message,
                );
                error.retry_after_secs = Some(1);
                error
            }
            DispatchError::Store(err) => err.into(),
            DispatchError::StoreUnavailable(_) | DispatchError::ResultsUnwritten(_) => {
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ApiErrorCode::StoreUnavailable,
                    message,
                );
                error.retry_after_secs = Some(5);
                error
            }
            DispatchError::Internal(cause) => ApiError::internal(&cause),
            DispatchError::AlreadyRedriven { by, .. } => {
                ApiError::new(StatusCode::CONFLICT, ApiErrorCode::AlreadyRedriven, message)
                    .with_details(details(&RedrivenDetails { redriven_by: by }))
            }
            DispatchError::NotFailed(..) | DispatchError::TickTaken => {
                ApiError::new(StatusCode::CONFLICT, ApiErrorCode::Conflict, message)
            }
        }
    }
}

/// Structured `details` as JSON (`null` in the unlikely case they do not serialize).
fn details(details: &impl serde::Serialize) -> Value {
    serde_json::to_value(details).unwrap_or(Value::Null)
}

/// A JSON request body: an empty body is `null`; bad JSON or a body over the limit is a
/// 400 or 413 in the usual error shape.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody, ApiError> {
        parse_json_body(Bytes::from_request(request, state).await).map(JsonBody)
    }
}

/// The JSON in a read body: empty is `null`; a read failure or bad JSON is a 400, a body
/// over the limit a 413, both in the usual error shape.
pub fn parse_json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = parse_body(body)?;
    if bytes.trim_ascii().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))
}

/// The bytes of a read body: a read failure is a 400, a body over the limit a 413.
pub fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                ApiErrorCode::TooLarge,
                "the request body is over the server's limit (GANTRY_MAX_BODY_BYTES)",
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// `body` read as a `T`; a body of another shape is a 400 that says which shape was
/// expected (`shape`) and what did not fit.
pub fn typed_body<T: serde::de::DeserializeOwned>(body: Value, shape: &str) -> Result<T, ApiError> {
    serde_json::from_value(body)
        .map_err(|err| ApiError::bad_request(format!("the body must be {shape}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Fault;

    /// A store failure answers by its fault, whatever the database behind it.
    #[test]
    fn store_faults_map_to_their_statuses() {
        let answer = |fault| ApiError::from(StoreError::database("probe", fault, "failed"));
        let full = answer(Fault::Full);
        assert_eq!(
            (full.status, full.code),
            (
                StatusCode::INSUFFICIENT_STORAGE,
                ApiErrorCode::InsufficientStorage
            )
        );
        let down = answer(Fault::Unavailable);
        assert_eq!(
            (down.status, down.code),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ApiErrorCode::StoreUnavailable
            )
        );
        assert_eq!(
            ApiError::from(StoreError::Closed).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        for fault in [Fault::Conflict, Fault::Corrupt, Fault::Other] {
            assert_eq!(answer(fault).status, StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
