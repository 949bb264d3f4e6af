//! How an execution ends: a failed attempt the retry policy covers is scheduled again
//! (durably, same id, attempt + 1); a final result is recorded together with the
//! executions its chains start (one transaction, so a chain fires exactly once), failed
//! results of functions with a retry policy go to the dead-letter list, final results
//! are stored with their deliveries to their destinations, and scheduled executions (delayed chains, retries) run when
//! their time comes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::retry::next_attempt;
use super::{apply_finished, Dispatcher, Recorded};
use crate::domain::{
    codes, AttemptFailure, ErrorCode, Execution, ExecutionError, ExecutionStatus, Finished, Holder,
    Trigger,
};
use crate::metrics::Timing;
use crate::registry::catalog::LoadedFunction;
use crate::registry::manifest::DEFAULT_MAX_IN_FLIGHT;
use crate::store::{FollowUps, Store};

/// First pause before a result the store refused is written again.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between attempts to write a kept result.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

/// What became of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Recorded as final (`true`), or not because the execution was already final.
    Final(bool),
    /// Another attempt is scheduled.
    Retried,
}

/// The finished execution as chain conditions and input mappings see it.
pub(super) fn chain_context(execution: &Execution) -> Value {
    json!({
        "executionId": execution.id,
        "function": execution.function,
        "status": execution.status.as_str(),
        "input": execution.input,
        "output": execution.output,
        "error": execution.error,
        "attempt": execution.attempt,
        "exitCode": execution.exit_code,
    })
}

impl Dispatcher {
    /// Ends an attempt of a stored execution with `finished`: retried if the policy of
    /// `function` says so, else recorded for good with its chains. Acknowledges `ack`
    /// (the watchdog's callback) once the outcome is durable.
    pub(super) async fn conclude(
        self: &Arc<Self>,
        execution: &mut Execution,
        finished: Finished,
        function: Option<&LoadedFunction>,
        mut ack: Option<oneshot::Sender<Recorded>>,
    ) -> Ending {
        if let Some(wait) = function.and_then(|function| retry_wait(function, execution, &finished))
        {
            let failure = attempt_failure(execution.attempt, &finished);
            let run_at = crate::domain::now()
                + chrono::Duration::from_std(wait).unwrap_or(chrono::TimeDelta::zero());
            match self
                .store
                .schedule_retry(
                    execution.id,
                    &self.settings.owner,
                    execution.attempt + 1,
                    run_at,
                    &failure,
                )
                .await
            {
                Ok(true) => {
                    if let Some(ack) = ack {
                        let _ = ack.send(Recorded::Applied);
                    }
                    execution.attempt += 1;
                    execution.status = ExecutionStatus::Queued;
                    execution.run_at = Some(run_at);
                    execution.attempts.push(failure);
                    tracing::info!(execution = %execution.id, attempt = execution.attempt, "retrying in {wait:?}");
                    return Ending::Retried;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(execution = %execution.id, "cannot schedule the retry: {err}")
                }
            }
        }
        let finished = self.dead_lettered(finished, function);
        let mut done = execution.clone();
        apply_finished(&mut done, &finished);
        let mut follow = self.result_deliveries(&done, function);
        if let Some(function) = function {
            follow.children = self.chain_children(&done, function).await;
        }
        // One this node never claimed is ended only while it is still queued.
        let holder = if execution.status == ExecutionStatus::Queued {
            Holder::Queue
        } else {
            Holder::Owner(&self.settings.owner)
        };
        let applied = self
            .record_final(execution.id, holder, &finished, &follow, &mut ack)
            .await;
        if let Some(ack) = ack {
            let _ = ack.send(if applied {
                Recorded::Applied
            } else {
                Recorded::AlreadyFinal
            });
        }
        if applied {
            *execution = done;
            self.recorded(execution, &follow.children);
            if follow.sends_results() {
                self.wake_deliveries();
            }
        }
        Ending::Final(applied)
    }

    /// Stores a final result with what it sets off (`follow`). While the store cannot take it
    /// (a full or failing disk), the result is kept here and written again with backoff
    /// until it is stored or the server stops; meanwhile the watchdog's callback is
    /// answered 503 (it may report again) and waiting callers learn that the store fails.
    /// Answers whether it applied (`false`: the execution was final already, or the
    /// store refused it for good).
    async fn record_final(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
        ack: &mut Option<oneshot::Sender<Recorded>>,
    ) -> bool {
        let mut pause = RECORD_RETRY_FIRST;
        let mut told = false;
        loop {
            let err = match self
                .store
                .finish_with_follow_ups(id, holder, finished, follow)
                .await
            {
                Ok(applied) => return applied,
                Err(err) => err,
            };
            if !err.is_unavailable() || self.shutdown.is_cancelled() {
                tracing::error!(execution = %id, "cannot record the result, giving up: {err}");
                return false;
            }
            if !told {
                told = true;
                tracing::error!(execution = %id, "cannot record the result yet, keeping it: {err}");
                self.metrics.store_failure();
                if let Some(ack) = ack.take() {
                    let _ = ack.send(Recorded::Unavailable);
                }
                self.notify_unavailable(id);
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.shutdown.cancelled() => {}
            }
            pause = (pause * 2).min(RECORD_RETRY_MAX);
        }
    }

    /// After a final result is stored with its `children`: counts it and schedules the
    /// children that are to run.
    pub(super) fn recorded(self: &Arc<Self>, execution: &Execution, children: &[Execution]) {
        crate::telemetry::recorded(execution, children);
        self.metrics.finished(timing(execution));
        for child in children {
            self.schedule(child);
        }
    }

    /// Marks a failure of a function with a retry policy for the dead-letter list.
    pub(super) fn dead_lettered(
        &self,
        mut finished: Finished,
        function: Option<&LoadedFunction>,
    ) -> Finished {
        finished.dead_letter = matches!(
            finished.status,
            ExecutionStatus::Error | ExecutionStatus::Timeout
        ) && function
            .is_some_and(|function| function.spec().retry.is_some());
        finished
    }

    /// The executions the chains of `function` start for the finished `parent`. Those
    /// that cannot run (past the depth cap, target gone, input rejected by the target's
    /// schema) are answered already failed, so the error shows in the tree.
    pub(super) async fn chain_children(
        &self,
        parent: &Execution,
        function: &LoadedFunction,
    ) -> Vec<Execution> {
        let chains = &function.spec().chains;
        if chains.is_empty() {
            return Vec::new();
        }
        let context = chain_context(parent);
        let mut children = Vec::new();
        for chain in chains {
            if !chain.condition.holds(&context) {
                continue;
            }
            let input = chain.input.apply(&context);
            let depth = parent.depth + 1;
            let mut child = match self.catalog.current(&chain.target).await {
                Ok(target) => {
                    let mut child = Execution::queued(&target.version, input, Trigger::Chain);
                    let spec = target.spec();
                    let queued = self.admission.load(&chain.target).queued
                        + self.cluster.elsewhere(&chain.target).queued as usize;
                    if !spec.enabled {
                        fail(
                            &mut child,
                            codes::FUNCTION_DISABLED,
                            format!("the chained function {:?} is disabled", chain.target),
                        );
                    } else if queued >= spec.max_queue() as usize {
                        fail(
                            &mut child,
                            codes::QUEUE_FULL,
                            format!(
                                "the queue of the chained function {:?} is full ({queued} waiting, max_queue {})",
                                chain.target,
                                spec.max_queue()
                            ),
                        );
                    } else if let Some(schema) = &target.input_schema {
                        let violations = schema
                            .check(&child.input)
                            .await
                            .unwrap_or_else(|slow| vec![slow.to_string()]);
                        if !violations.is_empty() {
                            fail(
                                &mut child,
                                codes::INVALID_INPUT,
                                format!(
                                    "the chained input does not match the input_schema of {:?}: {}",
                                    chain.target,
                                    violations.join("; ")
                                ),
                            );
                        }
                    }
                    if child.status == ExecutionStatus::Queued {
                        // Past the target's rate limit the child is delayed, not failed.
                        if let Err(err) = self.pace(spec, &mut child) {
                            fail(&mut child, codes::QUEUE_FULL, err.to_string());
                        }
                    }
                    child
                }
                Err(err) => {
                    let mut child = parent.clone();
                    child.id = Uuid::now_v7();
                    child.function = chain.target.clone();
                    child.version = 0;
                    child.input = input;
                    fail(
                        &mut child,
                        codes::CHAIN_TARGET_MISSING,
                        format!("cannot start the chained function: {err}"),
                    );
                    child
                }
            };
            child.trigger = Trigger::Chain;
            child.parent_id = Some(parent.id);
            child.root_id = Some(parent.root_id.unwrap_or(parent.id));
            child.depth = depth;
            child.follow_trace(parent);
            child.created_at = crate::domain::now();
            if child.status == ExecutionStatus::Queued {
                if depth > self.settings.max_chain_depth {
                    fail(
                        &mut child,
                        codes::CHAIN_DEPTH_EXCEEDED,
                        format!(
                            "chain depth {depth} is past the cap of {} (--max-chain-depth); a chain that calls itself stops here",
                            self.settings.max_chain_depth
                        ),
                    );
                } else if chain.delay_ms > 0 {
                    let delayed = crate::domain::now()
                        + chrono::Duration::milliseconds(
                            i64::try_from(chain.delay_ms).unwrap_or(i64::MAX),
                        );
                    // The later of its delay and its rate limit's.
                    child.run_at = child.run_at.max(Some(delayed));
                }
            }
            children.push(child);
        }
        children
    }

    /// Queues stored execution `id` of `function` for a slot, past `max_queue` (it was
    /// promised to run).
    pub(super) async fn enqueue_stored(self: &Arc<Self>, function: &str, id: Uuid) {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let max_in_flight = match self.catalog.current(function).await {
            Ok(function) => function.spec().max_in_flight(),
            Err(_) => DEFAULT_MAX_IN_FLIGHT,
        };
        let (start, load) = self.admission.queue_recovered(function, id, max_in_flight);
        self.metrics.set_load(function, load.queued, load.running);
        self.start_queued(function, start);
    }
}

/// The wait before another attempt, if `function`'s policy retries this failure.
pub(super) fn retry_wait(
    function: &LoadedFunction,
    execution: &Execution,
    finished: &Finished,
) -> Option<Duration> {
    if !matches!(
        finished.status,
        ExecutionStatus::Error | ExecutionStatus::Timeout
    ) {
        return None;
    }
    let error = finished.error.as_ref()?;
    next_attempt(
        function.spec().retry.as_ref(),
        execution.attempt,
        error,
        finished.exit_code,
    )
}

/// How attempt `attempt` failed, for the record's `attempts`.
pub(super) fn attempt_failure(attempt: u32, finished: &Finished) -> AttemptFailure {
    AttemptFailure {
        attempt,
        status: finished.status,
        error: finished.error.clone(),
        exit_code: finished.exit_code,
        finished_at: finished.finished_at,
    }
}

/// Makes a new child execution a failure that never runs.
fn fail(child: &mut Execution, code: ErrorCode, message: String) {
    let now = crate::domain::now();
    child.status = ExecutionStatus::Error;
    child.error = Some(ExecutionError::new(code, message));
    child.finished_at = Some(now);
    child.output = None;
    child.started_at = None;
    child.run_at = None;
}

/// How a finished execution counts in the latency histograms. The queue wait is that of
/// first attempts: a retry's start also follows the earlier attempts and their backoff.
fn timing(execution: &Execution) -> Timing<'_> {
    let waited = execution
        .started_at
        .filter(|_| execution.attempt <= 1)
        .map(|started| (started - execution.created_at).as_seconds_f64());
    Timing {
        function: &execution.function,
        outcome: execution.status.as_str(),
        ran: execution.duration_ms.map(|ms| ms as f64 / 1000.0),
        waited,
        trace_id: execution.trace_id.as_deref(),
        cold_start: execution.cold_start == Some(true),
    }
}
