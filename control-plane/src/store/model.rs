//! The records the store keeps: executions, their statuses, errors and attempts, the
//! updates that move them along, listing filters and captured log lines.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::now;
use crate::registry::FunctionVersion;

/// Where an execution is in its life. The last four are terminal and final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Stored, waiting for a free slot.
    Queued,
    /// An instance is being started for it.
    Starting,
    /// Its function is running.
    Running,
    /// Finished with an output.
    Success,
    /// Finished with an error.
    Error,
    /// Ran past its deadline.
    Timeout,
    /// Stopped by a user.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in life order.
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Starting,
        ExecutionStatus::Running,
        ExecutionStatus::Success,
        ExecutionStatus::Error,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
    ];

    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Success
                | ExecutionStatus::Error
                | ExecutionStatus::Timeout
                | ExecutionStatus::Cancelled
        )
    }

    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Starting => "starting",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Success => "success",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<ExecutionStatus> {
        ExecutionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// What started an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `:invoke` or `:enqueue`.
    Api,
    /// A published event.
    Event,
    /// A chained function.
    Chain,
    /// A retry of a failed attempt.
    Retry,
}

impl Trigger {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Event => "event",
            Trigger::Chain => "chain",
            Trigger::Retry => "retry",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<Trigger> {
        [Trigger::Api, Trigger::Event, Trigger::Chain, Trigger::Retry]
            .into_iter()
            .find(|trigger| trigger.as_str() == text)
    }
}

/// Why an execution failed. Codes are the watchdog's plus the control
/// plane's own (see [`codes`]); unknown codes from a newer watchdog are kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionError {
    /// Machine-readable reason.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
}

impl ExecutionError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ExecutionError {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Error codes the control plane sets itself, beside the watchdog's.
pub mod codes {
    /// The output did not satisfy the function's `output_schema`.
    pub const OUTPUT_SCHEMA_VIOLATION: &str = "OUTPUT_SCHEMA_VIOLATION";
    /// A user cancelled the execution.
    pub const CANCELLED: &str = "CANCELLED";
    /// The execution ran past its deadline (also sent by the watchdog).
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The instance died without reporting a result (also sent by the watchdog).
    pub const RUNTIME_CRASHED: &str = "RUNTIME_CRASHED";
    /// The instance could not be started (also sent by the watchdog).
    pub const SPAWN_ERROR: &str = "SPAWN_ERROR";
    /// A chain's target function no longer exists.
    pub const CHAIN_TARGET_MISSING: &str = "CHAIN_TARGET_MISSING";
    /// A chain would have gone deeper than the depth cap.
    pub const CHAIN_DEPTH_EXCEEDED: &str = "CHAIN_DEPTH_EXCEEDED";
    /// A warm instance started but never became ready (also sent by the watchdog).
    pub const STARTUP_ERROR: &str = "STARTUP_ERROR";
    /// A sync call found every warm instance busy and the queue full.
    pub const QUEUE_FULL: &str = "QUEUE_FULL";
    /// A chained execution's target is disabled.
    pub const FUNCTION_DISABLED: &str = "FUNCTION_DISABLED";
    /// The instance ran out of its memory limit and was killed (docker runtime).
    pub const OOM_KILLED: &str = "OOM_KILLED";
    /// The control plane stopped while the execution ran and its retry policy does not
    /// allow running it again.
    pub const CONTROL_PLANE_RESTARTED: &str = "CONTROL_PLANE_RESTARTED";
}

/// One execution record, as stored and as answered by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// UUID v7: ordered by creation time.
    pub id: Uuid,
    /// The function's name.
    pub function: String,
    /// The function version it runs on.
    pub version: u32,
    /// Where it is.
    pub status: ExecutionStatus,
    /// The input.
    pub input: Value,
    /// The output, once finished with success.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<ExecutionError>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The execution whose chain started this one.
    pub parent_id: Option<Uuid>,
    /// The first execution of the chain.
    pub root_id: Option<Uuid>,
    /// Chain depth (0 for a direct call).
    pub depth: u32,
    /// What started it.
    pub trigger: Trigger,
    /// Trace id, given with `X-Trace-Id` or generated.
    pub trace_id: Option<String>,
    /// `Idempotency-Key` of the request that created it.
    pub idempotency_key: Option<String>,
    /// Per-invocation timeout in effect.
    pub timeout_ms: u64,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When its instance started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Run time reported by the watchdog, else measured by the control plane.
    pub duration_ms: Option<u64>,
    /// Whether an instance was started for it.
    pub cold_start: Option<bool>,
    /// The instance that ran it.
    pub instance_id: Option<String>,
    /// The function's exit code, when it exited on its own.
    pub exit_code: Option<i32>,
    /// Failed for good with a retry policy (attempts exhausted or not retryable): in
    /// the dead-letter list until re-driven.
    #[serde(default)]
    pub dead_letter: bool,
    /// Not to run before this time (a delayed chain, a scheduled retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// The failures of the earlier attempts, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptFailure>,
    /// SHA-256 (hex) of the callback token of the running attempt. Never answered.
    #[serde(skip)]
    pub callback_token_hash: Option<String>,
    /// The execution that re-drove this failed one (`:retry`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_by: Option<Uuid>,
    /// The node that claimed it, while it is starting or running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Until when its owner's claim holds unless renewed; past it another node may
    /// reclaim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
}

impl Execution {
    /// A queued execution of `version` with `input`, triggered by `trigger`.
    pub fn queued(function: &FunctionVersion, input: Value, trigger: Trigger) -> Execution {
        Execution {
            id: Uuid::now_v7(),
            function: function.name.clone(),
            version: function.version,
            status: ExecutionStatus::Queued,
            input,
            output: None,
            error: None,
            attempt: 1,
            parent_id: None,
            root_id: None,
            depth: 0,
            trigger,
            trace_id: None,
            idempotency_key: None,
            timeout_ms: function.spec.timeout_ms(),
            created_at: now(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            cold_start: None,
            instance_id: None,
            exit_code: None,
            dead_letter: false,
            run_at: None,
            attempts: Vec::new(),
            callback_token_hash: None,
            redriven_by: None,
            owner: None,
            lease_until: None,
        }
    }
}

/// Which unfinished executions [`super::Store::list_unfinished`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// Queued ones that may run now (no `run_at`: those are due work, see
    /// [`super::Store::take_due`]).
    Queued,
    /// Starting or running ones this owner holds (or that no owner holds: records
    /// written before claims existed).
    HeldBy(String),
    /// Every unfinished one.
    All,
}

/// A runner's claim on an execution: who runs it, and until when the claim holds
/// unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claiming node's id.
    pub owner: String,
    /// When the claim lapses.
    pub lease_until: DateTime<Utc>,
}

/// Which functions' executions [`super::Store::prune_executions`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneScope {
    /// This function's.
    Function(String),
    /// Every function's but these.
    AllBut(Vec<String>),
}

/// What [`super::Store::delete_execution`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// It is gone, with its logs.
    Deleted,
    /// There is no such execution.
    NotFound,
    /// It has not finished: it stays.
    Unfinished,
}

/// What [`super::Store::redrive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redrive {
    /// The re-drive is stored.
    Done,
    /// The failure was re-driven before, by this execution.
    Already(Uuid),
    /// The execution is not a finished failure.
    NotFailed,
}

/// The update that moves an execution to `running`.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// The instance it runs on.
    pub instance_id: String,
    /// Whether the instance was started for it.
    pub cold_start: bool,
    /// SHA-256 (hex) of the attempt's callback token.
    pub callback_token_hash: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// How one attempt that was retried failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptFailure {
    /// Which attempt (1 for the first).
    pub attempt: u32,
    /// Its status (error or timeout).
    pub status: ExecutionStatus,
    /// Why it failed.
    pub error: Option<ExecutionError>,
    /// The function's exit code, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// The update that moves an execution to a terminal status.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// A terminal status.
    pub status: ExecutionStatus,
    /// The output, on success.
    pub output: Option<Value>,
    /// The reason, on failure.
    pub error: Option<ExecutionError>,
    /// The function's exit code, if known.
    pub exit_code: Option<i32>,
    /// Run time in milliseconds.
    pub duration_ms: Option<u64>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Whether it goes to the dead-letter list.
    pub dead_letter: bool,
}

/// Which executions to list: every field narrows; `cursor` pages (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    /// Only this function's.
    pub function: Option<String>,
    /// Only these statuses (any of them).
    pub statuses: Vec<ExecutionStatus>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Only dead-lettered ones (`Some(true)`) or only others (`Some(false)`).
    pub dead_letter: Option<bool>,
    /// Only ids older than this one (the last id of the previous page).
    pub before_id: Option<Uuid>,
    /// Most records answered.
    pub limit: u32,
    /// Read `input` and `output` too (otherwise they come back as `null`).
    pub with_payloads: bool,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The instance's stdout.
    Stdout,
    /// The instance's stderr.
    Stderr,
    /// A line written by Gantry itself (truncation notes and the like).
    System,
}

impl LogStream {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<LogStream> {
        [LogStream::Stdout, LogStream::Stderr, LogStream::System]
            .into_iter()
            .find(|stream| stream.as_str() == text)
    }
}

/// One captured line of an execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1, 2, 3… per execution, in arrival order.
    pub seq: u64,
    /// Where it came from.
    pub stream: LogStream,
    /// When it was captured.
    pub time: DateTime<Utc>,
    /// The line, without its newline.
    pub line: String,
}
