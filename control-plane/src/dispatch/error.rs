//! Why the dispatcher refuses a request or an operation.

use uuid::Uuid;

use crate::registry::catalog::RegistryError;
use crate::store::StoreError;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The function or its version is unknown or invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The function is disabled.
    #[error("function {0:?} is disabled; set `enabled: true` to invoke it")]
    Disabled(String),
    /// The input breaks the function's `input_schema`.
    #[error("the input does not match the input_schema of {function:?}")]
    InvalidInput {
        /// The function.
        function: String,
        /// Each violation.
        violations: Vec<String>,
    },
    /// Checking the input against the `input_schema` took too long.
    #[error(
        "checking the input against the input_schema of {0:?} took too long; send a smaller input"
    )]
    InputTooComplex(String),
    /// `max_in_flight` executions run and `max_queue` wait.
    #[error("function {function:?} is at capacity: {queued} executions are waiting (max_queue)")]
    QueueFull {
        /// The function.
        function: String,
        /// Executions waiting.
        queued: usize,
    },
    /// An API call past the function's `rate_limit`.
    #[error("function {function:?} is over its rate_limit ({per_second}/s, burst {burst}); try again in {} s", super::rate::retry_after_secs(*retry_after))]
    RateLimited {
        /// The function.
        function: String,
        /// Its `rate_limit.per_second`.
        per_second: f64,
        /// Its `rate_limit.burst`.
        burst: u32,
        /// When a token is free.
        retry_after: std::time::Duration,
    },
    /// The idempotency key was used before with another input.
    #[error("Idempotency-Key {key:?} was already used for execution {existing} with a different input; use a new key for a new call")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The execution that has it.
        existing: Uuid,
    },
    /// No such execution.
    #[error("execution {0} not found")]
    ExecutionNotFound(Uuid),
    /// The execution is already finished.
    #[error("execution {0} already finished with status {1}")]
    AlreadyFinished(Uuid, &'static str),
    /// Missing callback token.
    #[error("the callback needs the execution's token as a bearer token")]
    MissingToken,
    /// Wrong callback token.
    #[error("the token does not belong to execution {0}")]
    WrongToken(Uuid),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A schedule's tick was fired already (by another node, or an earlier pass).
    #[error("the schedule's tick was fired already")]
    TickTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The execution's result could not be recorded yet: the store fails; the server
    /// keeps the result and records it when the store is back.
    #[error("the result of execution {0} could not be recorded yet (the server's store fails); it is kept and recorded when the store is back: see GET /v1/executions/{0}")]
    StoreUnavailable(Uuid),
    /// Too many warm results wait for the store to take them (it fails or is slow):
    /// new warm calls are refused until it catches up.
    #[error("{0} results of warm calls are still waiting for the server's store to take them; new warm calls are refused until it catches up")]
    ResultsUnwritten(usize),
    /// The failure was re-driven already (once is the rule).
    #[error("execution {failed} was already re-driven as execution {by}")]
    AlreadyRedriven {
        /// The failed execution.
        failed: Uuid,
        /// The execution that re-drove it.
        by: Uuid,
    },
    /// Only a failed execution can be re-driven.
    #[error("execution {0} is {1}; only a failed (error, timeout or cancelled) execution can be re-driven")]
    NotFailed(Uuid, &'static str),
    /// A bug: the task running the execution failed.
    #[error("the task running the execution failed: {0}")]
    Internal(String),
}
