//! Wire types shared by the watchdog and the control plane. No I/O lives here.
//!
//! - [`env`]: the watchdog's environment variables and their defaults.
//! - [`ErrorCode`] and [`FunctionError`]: why an execution failed, the same in every mode.
//! - [`CompletionReport`]: the callback body the watchdog posts when an execution ends,
//!   and the response body of a WARM `/invoke`.
//! - [`InvokeEnvelope`]: the body of a WARM `/invoke` request.
//! - [`ApiErrorBody`]: `{"error": {"code", "message", "details"?}}`, every HTTP error body.
//! - [`log_tag`]: how a WARM watchdog marks the output lines of one execution.

pub mod env;
mod error_code;
pub mod log_tag;
mod report;

pub use error_code::{ErrorCode, UnknownErrorCode};
pub use report::{ApiError, ApiErrorBody, CompletionReport, FunctionError, InvokeEnvelope};

/// HTTP header names used between the control plane, the watchdog and runtimes.
pub mod headers {
    /// Execution id of an invocation (WARM raw-body form, and on requests to runtimes).
    pub const EXECUTION_ID: &str = "x-execution-id";
    /// Trace id propagated end to end.
    pub const TRACE_ID: &str = "x-trace-id";
    /// Per-invocation timeout in milliseconds.
    pub const TIMEOUT_MS: &str = "x-timeout-ms";
    /// Callback base URL for a WARM raw-body invocation.
    pub const CALLBACK_URL: &str = "x-callback-url";
    /// W3C trace context: the trace and the span an invocation runs under.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace context: vendors' state passed along with `traceparent`.
    pub const TRACESTATE: &str = "tracestate";
}

/// The callback path for an execution: `{base}/{execution_id}:complete`.
///
/// `base` may end in a slash; the execution id is percent-encoded where needed by the
/// caller (ids produced by Gantry are UUIDs and need none).
pub fn completion_url(base: &str, execution_id: &str) -> String {
    format!("{}/{}:complete", base.trim_end_matches('/'), execution_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_url_joins_without_double_slash() {
        assert_eq!(
            completion_url("http://cp:8080/v1/internal/executions/", "abc"),
            "http://cp:8080/v1/internal/executions/abc:complete"
        );
        assert_eq!(
            completion_url("http://cp/v1/internal/executions", "e-1"),
            "http://cp/v1/internal/executions/e-1:complete"
        );
    }
}
