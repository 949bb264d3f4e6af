//! An execution's record and what moves it along: its status, trigger and attempts,
//! the claim a runner holds on it, and the updates that start and finish it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{now, ExecutionError, TraceContext};
use crate::registry::FunctionVersion;

/// Where an execution is in its life. The last four are terminal and final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// A tick of one of the function's schedules.
    Schedule,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 5] = [
        Trigger::Api,
        Trigger::Event,
        Trigger::Chain,
        Trigger::Retry,
        Trigger::Schedule,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Event => "event",
            Trigger::Chain => "chain",
            Trigger::Retry => "retry",
            Trigger::Schedule => "schedule",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<Trigger> {
        Trigger::ALL
            .into_iter()
            .find(|trigger| trigger.as_str() == text)
    }
}

/// One execution record, as stored and as answered by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Trace id: the caller's `X-Trace-Id`, else the W3C trace id of `traceparent`.
    pub trace_id: Option<String>,
    /// The W3C `traceparent` the execution runs under: its trace and its own span id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` passed along with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
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
    /// When it became due to run after waiting for a `run_at` (kept once the `run_at`
    /// is taken): where its queue age starts. `None`: at its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// The schedule tick it fires (trigger `schedule`): the time the cron expression
    /// named, not when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
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
            traceparent: None,
            tracestate: None,
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
            due_at: None,
            scheduled_for: None,
            attempts: Vec::new(),
            callback_token_hash: None,
            redriven_by: None,
            owner: None,
            lease_until: None,
        }
    }

    /// When it became due to run: its queue age counts from there (see
    /// [`Execution::due_at`]; a `run_at` not yet taken is that time).
    pub fn due_since(&self) -> DateTime<Utc> {
        self.due_at.or(self.run_at).unwrap_or(self.created_at)
    }

    /// The W3C trace context stored with it (none on records from before trace contexts).
    pub fn trace_context(&self) -> Option<TraceContext> {
        let traceparent = self.traceparent.as_deref()?;
        TraceContext::parse(traceparent, self.tracestate.as_deref()).ok()
    }

    /// Gives it a span of its own: below `incoming` when the caller sent a trace
    /// context, else the first of a new trace. Its `trace_id` is `correlation` (the
    /// caller's `X-Trace-Id`) when given, else the W3C trace id.
    pub fn begin_trace(&mut self, incoming: Option<&TraceContext>, correlation: Option<String>) {
        let mut context = TraceContext::for_execution(incoming, correlation.as_deref());
        // Named by the execution's id, so its children and its exported spans find it.
        context.parent_span_id = super::trace::execution_span_id(self.id);
        self.trace_id = Some(correlation.unwrap_or_else(|| context.trace_id_hex()));
        self.traceparent = Some(context.traceparent());
        self.tracestate = context.state;
    }

    /// Joins `parent`'s trace (chained children, re-drives) with a span of its own.
    pub fn follow_trace(&mut self, parent: &Execution) {
        self.begin_trace(parent.trace_context().as_ref(), parent.trace_id.clone());
    }
}

/// A runner's claim on an execution: who runs it, and until when the claim holds
/// unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claiming node's id.
    pub owner: String,
    /// When the claim lapses.
    pub lease_until: DateTime<Utc>,
    /// At most this many executions of the function may be held (starting or running)
    /// at once, by every node together; `None` when the node's own admission is the
    /// only bound (one node on its own store).
    pub max_in_flight: Option<u32>,
}

/// Who may end an execution: the queue, for one that never started (a cancel or an
/// admission refusal before any claim), or the runner that holds its claim. A runner's
/// late report can thus never end an execution that went back to the queue, and the
/// queue never ends one that a runner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    /// The execution must still be queued.
    Queue,
    /// The execution must be starting or running and held by this owner (or by no
    /// owner: a record from before claims).
    Owner(&'a str),
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
