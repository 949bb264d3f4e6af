//! The domain model: executions, their statuses, triggers, claims and attempts, why one
//! failed, captured log lines, the nodes that run them, and the W3C trace context each one continues. It depends on nothing that stores, runs or serves
//! them; the store, the runtimes, the dispatcher and the API all speak it.

mod error_code;
mod execution;
mod logs;
mod node;
mod trace;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error_code::{codes, ErrorCode};
pub use execution::{
    AttemptFailure, Claim, Execution, ExecutionStatus, Finished, Holder, Started, Trigger,
};
pub use logs::{LogLine, LogStream};
pub use node::{FunctionLoad, NodeLoad, NodeRecord, NodeState, MAX_LOAD_FUNCTIONS};
pub use trace::{
    bounded_state, derived_span_id, execution_span_id, TraceContext, TraceError, SAMPLED,
};

/// Why an execution failed: a typed code and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionError {
    /// Machine-readable reason.
    #[schema(value_type = String, example = "TIMEOUT")]
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
}

impl ExecutionError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        ExecutionError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The current time at the precision records keep (milliseconds), so a record read
/// back equals the one written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
