//! Bodies that cross the wire: the completion report, the WARM invoke envelope, API errors.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ErrorCode;

/// Why an execution failed, as sent in [`CompletionReport::error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionError {
    /// The machine-readable reason.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
}

impl FunctionError {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FunctionError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FunctionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The result of one execution: the callback body (`POST {CALLBACK_URL}/{id}:complete`)
/// and the response body of a WARM `POST /invoke`.
///
/// `output` is kept as raw JSON so the watchdog forwards what the function wrote without
/// re-encoding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionReport {
    /// Whether the function produced a result.
    pub success: bool,
    /// The function's JSON result on success, `null` otherwise.
    pub output: Option<Box<RawValue>>,
    /// Why it failed, `null` on success.
    pub error: Option<FunctionError>,
    /// Wall time of the invocation in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Exit code of the function's process, when it exited on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl CompletionReport {
    /// A successful report carrying `output`.
    pub fn success(output: Box<RawValue>) -> Self {
        CompletionReport {
            success: true,
            output: Some(output),
            error: None,
            duration_ms: None,
            exit_code: None,
        }
    }

    /// A failed report carrying `error`.
    pub fn failure(error: FunctionError) -> Self {
        CompletionReport {
            success: false,
            output: None,
            error: Some(error),
            duration_ms: None,
            exit_code: None,
        }
    }
}

/// Body of a WARM `POST /invoke` (when no `X-Execution-Id` header is sent).
///
/// Its `Debug` output leaves out the callback token.
#[derive(Clone, Serialize, Deserialize)]
pub struct InvokeEnvelope {
    /// The execution this invocation belongs to.
    pub execution_id: String,
    /// When set, the result is also posted to `{callback_url}/{execution_id}:complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Bearer token for that callback (falls back to the watchdog's `CALLBACK_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_token: Option<String>,
    /// Trace id forwarded as `X-Trace-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The function's input; `null` when absent.
    #[serde(default = "json_null")]
    pub payload: Box<RawValue>,
    /// Per-invocation timeout, overriding `TIMEOUT_MS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl std::fmt::Debug for InvokeEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeEnvelope")
            .field("execution_id", &self.execution_id)
            .field("callback_url", &self.callback_url)
            .field(
                "callback_token",
                &self.callback_token.as_ref().map(|_| "<redacted>"),
            )
            .field("trace_id", &self.trace_id)
            .field("payload", &self.payload)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn json_null() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// `{"error": {...}}`: the body of every HTTP error answered by Gantry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ErrorBody))]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiError,
}

/// One HTTP error: a stable code, a sentence, optional structured details.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ErrorDetail))]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `TOO_MANY_REQUESTS`.
    pub code: String,
    /// What went wrong and, where possible, what to do.
    pub message: String,
    /// Extra data (validator messages and the like).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiErrorBody {
    /// An error body without details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiErrorBody {
            error: ApiError {
                code: code.into(),
                message: message.into(),
                details: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_report_has_null_error_and_raw_output() {
        let output = RawValue::from_string(r#"{"a": [1, 2]}"#.to_owned()).unwrap();
        let body = serde_json::to_value(CompletionReport::success(output)).unwrap();
        assert_eq!(
            body,
            json!({"success": true, "output": {"a": [1, 2]}, "error": null})
        );
    }

    #[test]
    fn failure_report_has_null_output_and_code_name() {
        let mut report =
            CompletionReport::failure(FunctionError::new(ErrorCode::Timeout, "too slow"));
        report.duration_ms = Some(12);
        let body = serde_json::to_value(report).unwrap();
        assert_eq!(
            body,
            json!({"success": false, "output": null,
                   "error": {"code": "TIMEOUT", "message": "too slow"}, "duration_ms": 12})
        );
    }

    #[test]
    fn envelope_payload_defaults_to_null_and_extras_are_optional() {
        let env: InvokeEnvelope = serde_json::from_str(r#"{"execution_id": "e1"}"#).unwrap();
        assert_eq!(env.payload.get(), "null");
        assert!(env.callback_url.is_none() && env.timeout_ms.is_none());
        let env: InvokeEnvelope =
            serde_json::from_str(r#"{"execution_id":"e2","payload":{"x":1},"timeout_ms":5}"#)
                .unwrap();
        assert_eq!(env.payload.get(), r#"{"x":1}"#);
        assert_eq!(env.timeout_ms, Some(5));
    }

    #[test]
    fn envelope_debug_hides_the_callback_token() {
        let env: InvokeEnvelope =
            serde_json::from_str(r#"{"execution_id":"e","callback_token":"s3cret"}"#).unwrap();
        let printed = format!("{env:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn envelope_without_execution_id_names_the_field() {
        let err = serde_json::from_str::<InvokeEnvelope>(r#"{"payload": 1}"#).unwrap_err();
        assert!(err.to_string().contains("execution_id"), "{err}");
    }
}
