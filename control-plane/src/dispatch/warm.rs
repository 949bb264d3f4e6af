//! Executions on warm instances. A sync `:invoke` of a warm function takes the fast
//! path: no write before the call (the record is held in memory and written behind once
//! the result is known), one lease from the pool, one HTTP exchange with the instance.
//! Stored executions (`:enqueue`, recovery, idempotent calls) run on the same pool with
//! their records written as usual. Failed attempts are retried by the retry policy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::env;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::finish::{attempt_failure, retry_wait};
use super::run::{failed, masked};
use super::{
    apply_finished, check_input, CallbackReport, DispatchError, Dispatcher, InvokeRequest,
};
use crate::domain::{codes, Execution, ExecutionError, ExecutionStatus, Finished, Started};
use crate::pool::client::{CallError, InvokeCall};
use crate::pool::{Lease, PoolError, Queueing};
use crate::registry::catalog::LoadedFunction;

/// Time the control plane grants beyond a call's timeout and the watchdog's kill grace
/// before it gives up on the instance.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1_000);
/// Refusals (instance draining or full) a call takes before it fails.
const MAX_REFUSALS: u32 = 8;

/// Whether the record of a warm execution is stored before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// Held in memory while it runs, written behind when it is done.
    Behind,
    /// Already stored; each step is written and waited for.
    Stored,
}

/// What ended one attempt.
enum Attempt {
    Answer(Result<Bytes, CallError>),
    Cancelled,
    Deadline,
    Shutdown,
}

impl Dispatcher {
    /// `:invoke`: runs the function and answers the final record. Warm functions take
    /// the fast path; the others (and calls with an idempotency key) are stored first.
    pub async fn invoke(
        self: &Arc<Self>,
        request: InvokeRequest,
    ) -> Result<Execution, DispatchError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(DispatchError::ShuttingDown);
        }
        let function = self.catalog.current(&request.function).await?;
        if function.spec().warm.is_none() || request.idempotency_key.is_some() {
            let accepted = self.submit(request).await?;
            return self.wait_final(accepted.execution.id).await;
        }
        check_input(&function, &request).await?;
        let mut execution = Execution::queued(&function.version, request.input, request.trigger);
        execution.trace_id = Some(
            request
                .trace_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        );
        if let Some(timeout_ms) = request.timeout_ms {
            execution.timeout_ms = timeout_ms.min(execution.timeout_ms);
        }
        let deadline = Instant::now() + Duration::from_millis(execution.timeout_ms);
        let lease = match self
            .pools
            .acquire(&function, Queueing::Bounded, deadline)
            .await
        {
            Ok(lease) => Some(lease),
            Err(PoolError::QueueFull { function, queued }) => {
                return Err(DispatchError::QueueFull { function, queued })
            }
            Err(PoolError::ShuttingDown) => return Err(DispatchError::ShuttingDown),
            // Recorded as the execution's failure below.
            Err(_) => None,
        };
        // From here on the call runs to its end and is recorded even if the caller goes
        // away (the request future is dropped when the client disconnects).
        let dispatcher = self.clone();
        let run = tokio::spawn(async move {
            dispatcher
                .run_warm(&mut execution, &function, lease, Record::Behind)
                .await;
            execution
        });
        run.await
            .map_err(|err| DispatchError::Internal(err.to_string()))
    }

    /// Starts the `min_instances` of every warm function (at server start).
    pub async fn prewarm(&self) {
        let functions = match self.catalog.list().await {
            Ok(functions) => functions,
            Err(err) => {
                tracing::warn!("cannot list the functions to prewarm their pools: {err}");
                return;
            }
        };
        for version in functions
            .iter()
            .filter(|version| version.spec.warm.is_some())
        {
            if let Ok(function) = self.catalog.current(&version.name).await {
                self.pools.deployed(&function);
            }
        }
    }

    /// A function was created or replaced: prewarm (or drain) its pool.
    pub fn deployed(&self, function: &Arc<LoadedFunction>) {
        self.pools.deployed(function);
    }

    /// A function was deleted: its warm instances drain and stop.
    pub fn removed(&self, name: &str) {
        self.pools.remove(name);
    }

    /// Runs `execution` on a warm instance of `function` (on `lease` when the caller
    /// already has one), retrying as its policy says, and records the result.
    pub(super) async fn run_warm(
        self: &Arc<Self>,
        execution: &mut Execution,
        function: &Arc<LoadedFunction>,
        mut lease: Option<Lease>,
        record: Record,
    ) {
        let id = execution.id;
        let cancel = CancellationToken::new();
        self.warm_active.insert(id, cancel.clone());
        let deadline = Instant::now() + Duration::from_millis(execution.timeout_ms);
        let input = Bytes::from(serde_json::to_vec(&execution.input).unwrap_or_default());
        let mut refusals = 0;
        let finished = loop {
            let lease = match lease.take() {
                Some(lease) => lease,
                None => match self.lease_for(function, deadline, &cancel).await {
                    Ok(lease) => lease,
                    Err(finished) => break finished,
                },
            };
            if !self.mark_warm_running(execution, &lease, record).await {
                // Cancelled before it started.
                drop(lease);
                self.warm_active.remove(&id);
                if let Ok(Some(now)) = self.store.get_execution(id).await {
                    self.notify(&now);
                }
                return;
            }
            let started = std::time::Instant::now();
            let call = InvokeCall {
                execution_id: id,
                trace_id: execution.trace_id.as_deref(),
                timeout_ms: deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .max(1) as u64,
            };
            let limit =
                deadline + Duration::from_millis(env::defaults::KILL_GRACE_MS) + DEADLINE_MARGIN;
            let ended = tokio::select! {
                biased;
                answer = lease.invoke(&call, input.clone()) => Attempt::Answer(answer),
                () = cancel.cancelled() => Attempt::Cancelled,
                () = self.shutdown.cancelled() => Attempt::Shutdown,
                () = tokio::time::sleep_until(limit) => Attempt::Deadline,
            };
            let elapsed = started.elapsed();
            let ran_on = lease.function().clone();
            let outcome = match ended {
                Attempt::Answer(Ok(body)) => {
                    match serde_json::from_slice::<CallbackReport>(&body) {
                        Ok(report) => {
                            let report = masked(&lease.masker(), report);
                            drop(lease);
                            Self::report_outcome(&ran_on, report, elapsed).await
                        }
                        Err(err) => {
                            lease.discard();
                            crashed(format!("the warm instance answered something that is not a report: {err}"), elapsed)
                        }
                    }
                }
                // The call never ran: the instance refused it (draining, full) or was
                // not there to take it. Another instance takes it; no attempt is used.
                Attempt::Answer(Err(
                    err @ (CallError::Refused { .. } | CallError::Connect { .. }),
                )) => {
                    lease.discard();
                    refusals += 1;
                    if refusals < MAX_REFUSALS {
                        continue;
                    }
                    crashed(
                        format!("warm instances kept refusing the call: {err}"),
                        elapsed,
                    )
                }
                Attempt::Answer(Err(err)) => {
                    let instance = lease.instance_id().to_owned();
                    lease.discard();
                    crashed(
                        format!("the warm instance {instance} failed during the call: {err}"),
                        elapsed,
                    )
                }
                Attempt::Cancelled => {
                    lease.discard();
                    let error = ExecutionError::new(
                        codes::CANCELLED,
                        "cancelled while running; its warm instance was stopped",
                    );
                    break failed(ExecutionStatus::Cancelled, error, Some(elapsed));
                }
                Attempt::Deadline => {
                    lease.discard();
                    let error = ExecutionError::new(
                        codes::TIMEOUT,
                        format!(
                            "no result within {} ms; the control plane stopped the warm instance",
                            execution.timeout_ms
                        ),
                    );
                    break failed(ExecutionStatus::Timeout, error, Some(elapsed));
                }
                Attempt::Shutdown => {
                    lease.discard();
                    if record == Record::Stored {
                        // Left running in the store: the next start recovers it.
                        self.warm_active.remove(&id);
                        self.notify(execution);
                        return;
                    }
                    let error = ExecutionError::new(
                        codes::CONTROL_PLANE_RESTARTED,
                        "the server stopped while the call ran",
                    );
                    break failed(ExecutionStatus::Error, error, Some(elapsed));
                }
            };
            // A stored execution's retry is scheduled durably when it is concluded; a
            // sync call held in memory retries here, within its deadline.
            let retry = match record {
                Record::Stored => None,
                Record::Behind => retry_wait(&ran_on, execution, &outcome),
            };
            let Some(wait) = retry else { break outcome };
            if Instant::now() + wait >= deadline {
                break outcome;
            }
            execution
                .attempts
                .push(attempt_failure(execution.attempt, &outcome));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {
                    let error = ExecutionError::new(codes::CANCELLED, "cancelled while waiting to retry");
                    break failed(ExecutionStatus::Cancelled, error, None);
                }
            }
            execution.attempt += 1;
        };
        self.finish_warm(execution, finished, function, record)
            .await;
    }

    /// A lease for the next attempt, or the failure that ends the execution.
    async fn lease_for(
        &self,
        function: &Arc<LoadedFunction>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Lease, Finished> {
        let acquired = tokio::select! {
            acquired = self.pools.acquire(function, Queueing::Unbounded, deadline) => acquired,
            () = cancel.cancelled() => {
                let error = ExecutionError::new(codes::CANCELLED, "cancelled while waiting for a warm instance");
                return Err(failed(ExecutionStatus::Cancelled, error, None));
            }
        };
        acquired.map_err(|err| {
            let (status, code) = match &err {
                PoolError::Timeout { .. } => (ExecutionStatus::Timeout, codes::TIMEOUT),
                PoolError::StartFailed { code, .. } => (ExecutionStatus::Error, code.clone()),
                PoolError::QueueFull { .. } => (ExecutionStatus::Error, codes::QUEUE_FULL),
                PoolError::Retired(_) | PoolError::ShuttingDown => {
                    (ExecutionStatus::Error, codes::SPAWN_ERROR)
                }
            };
            failed(status, ExecutionError::new(code, err.to_string()), None)
        })
    }

    /// Records the start of an attempt on `lease`. `false` when a stored execution was
    /// cancelled before it started.
    async fn mark_warm_running(
        &self,
        execution: &mut Execution,
        lease: &Lease,
        record: Record,
    ) -> bool {
        execution.status = ExecutionStatus::Running;
        execution.instance_id = Some(lease.instance_id().to_owned());
        execution.cold_start = Some(lease.cold_start());
        execution.started_at = Some(crate::domain::now());
        match record {
            Record::Behind => {
                self.store.hold(execution);
                true
            }
            Record::Stored => {
                let started = Started {
                    instance_id: lease.instance_id().to_owned(),
                    cold_start: lease.cold_start(),
                    callback_token_hash: String::new(),
                    started_at: execution.started_at.unwrap_or_else(crate::domain::now),
                };
                let owner = &self.settings.owner;
                match self.store.mark_running(execution.id, owner, &started).await {
                    Ok(applied) => applied,
                    Err(err) => {
                        tracing::warn!(execution = %execution.id, "cannot record the start: {err}");
                        true
                    }
                }
            }
        }
    }

    async fn finish_warm(
        self: &Arc<Self>,
        execution: &mut Execution,
        finished: Finished,
        function: &Arc<LoadedFunction>,
        record: Record,
    ) {
        let id = execution.id;
        match record {
            Record::Behind => {
                let finished = self.dead_lettered(finished, Some(function));
                apply_finished(execution, &finished);
                let children = self.chain_children(execution, function).await;
                self.store.write_behind(execution.clone(), children.clone());
                self.recorded(execution, &children);
                self.warm_active.remove(&id);
                self.notify(execution);
            }
            Record::Stored => {
                let ending = self
                    .conclude(execution, finished, Some(function), None)
                    .await;
                self.warm_active.remove(&id);
                self.after(ending, execution).await;
            }
        }
    }
}

fn crashed(message: String, elapsed: Duration) -> Finished {
    failed(
        ExecutionStatus::Error,
        ExecutionError::new(codes::RUNTIME_CRASHED, message),
        Some(elapsed),
    )
}
