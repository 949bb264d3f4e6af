//! Error answers: `{"error": {"code", "message", "details"?}}` on every route.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One error: a stable code, a sentence, optional structured details.
pub use gantry_protocol::ApiError as ErrorDetail;
/// The body of every error answer; the same type the watchdog's protocol uses.
pub use gantry_protocol::ApiErrorBody as ErrorBody;

/// The `details` of an `ALREADY_REDRIVEN` error: the execution that re-drove it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedrivenDetails {
    /// The re-driving execution.
    pub redriven_by: Uuid,
}
