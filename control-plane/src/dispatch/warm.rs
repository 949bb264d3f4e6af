//! Executions on warm instances. A sync `:invoke` of a warm function takes the fast
//! path: no write before the call (the record is held in memory and written behind once
//! the result is known), one lease from the pool, one HTTP exchange with the instance.
//! Stored executions (`:enqueue`, recovery, idempotent calls) run on the same pool with
//! their records written as usual. Failed attempts are retried by the retry policy.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::attempt::{self, Bounds, Ended, Running};
use super::finish::{attempt_failure, retry_wait};
use super::outcome;
use super::{
    apply_finished, check_input, CallbackReport, DispatchError, Dispatcher, InvokeRequest,
};
use crate::cluster::Peer;
use crate::domain::{codes, Execution, ExecutionError, ExecutionStatus, Finished, Started};
use crate::pool::client::{CallError, InvokeCall};
use crate::pool::{Lease, PoolError, Queueing};
use crate::registry::catalog::LoadedFunction;
use crate::store::Store;

/// Refusals (instance draining or full) a call takes before it fails.
const MAX_REFUSALS: u32 = 8;
/// Longest a warm call waits for the store to catch up with the records written behind
/// (never longer than its own timeout) before it is refused.
const MAX_WAIT_FOR_STORE: Duration = Duration::from_secs(2);

/// Whether the record of a warm execution is stored before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// Held in memory while it runs, written behind when it is done.
    Behind,
    /// Already stored; each step is written and waited for.
    Stored,
}

/// A warm attempt: one call on a leased instance, which answers with its report.
struct WarmCall<'a> {
    call: InvokeCall<'a>,
    input: Bytes,
    /// The function version of the instance.
    ran_on: Arc<LoadedFunction>,
    /// Taken when the call is done with the instance (given back or discarded).
    lease: Option<Lease>,
    /// The instance's OOM kills before the call: one more after it means the memory
    /// limit killed a process of the call.
    oom_before: u64,
}

impl Running for WarmCall<'_> {
    type Answer = Result<Bytes, CallError>;

    fn answer(&mut self) -> impl Future<Output = Self::Answer> + Send {
        let (lease, call, input) = (self.lease.as_ref(), &self.call, self.input.clone());
        async move {
            match lease {
                Some(lease) => lease.invoke(call, input).await,
                None => Err(CallError::Refused {
                    status: 503,
                    body: "no instance".into(),
                }),
            }
        }
    }

    async fn outcome(&mut self, answer: Self::Answer, elapsed: Duration) -> Ended {
        let Some(lease) = self.lease.take() else {
            return Ended::Refused(outcome::crashed("no instance".into(), elapsed));
        };
        // Read only for a call that failed: a kill since the call began is its cause.
        let oom = |lease: &Lease| lease.oom_kills() > self.oom_before;
        match answer {
            Ok(body) => match serde_json::from_slice::<CallbackReport>(&body) {
                Ok(report) => {
                    let mut report = outcome::masked(&lease.masker(), report);
                    if !report.success && oom(&lease) {
                        report.error = Some(outcome::oom_error());
                    }
                    drop(lease);
                    let finished = outcome::report_outcome(&self.ran_on, report, elapsed).await;
                    Ended::Finished(finished, None)
                }
                Err(err) => {
                    lease.discard();
                    let message =
                        format!("the warm instance answered something that is not a report: {err}");
                    Ended::Finished(outcome::crashed(message, elapsed), None)
                }
            },
            // The instance refused the call (draining, full) or was not there to take it.
            Err(err @ (CallError::Refused { .. } | CallError::Connect { .. })) => {
                lease.discard();
                let message = format!("warm instances kept refusing the call: {err}");
                Ended::Refused(outcome::crashed(message, elapsed))
            }
            Err(_) if oom(&lease) => {
                lease.discard();
                let error = outcome::oom_error();
                let failed = outcome::failed(ExecutionStatus::Error, error, Some(elapsed));
                Ended::Finished(failed, None)
            }
            Err(err) => {
                let instance = lease.instance_id().to_owned();
                lease.discard();
                let message = format!("the warm instance {instance} failed during the call: {err}");
                Ended::Finished(outcome::crashed(message, elapsed), None)
            }
        }
    }

    async fn stop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.discard();
        }
    }
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
        execution.begin_trace(request.trace.as_ref(), request.trace_id);
        if let Some(timeout_ms) = request.timeout_ms {
            execution.timeout_ms = timeout_ms.min(execution.timeout_ms);
        }
        // Its record is written behind the answer: while the store falls behind (or
        // fails), held records must not pile up in memory without bound. A store that
        // is merely slower than the calls makes them wait; one that refuses them makes
        // them fail.
        let patience = Duration::from_millis(execution.timeout_ms).min(MAX_WAIT_FOR_STORE);
        self.store
            .wait_for_room(patience)
            .await
            .map_err(DispatchError::ResultsUnwritten)?;
        self.pace(function.spec(), &mut execution)?;
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
        let span = super::execution_span(execution.id, execution.trace_id.as_deref());
        let run = tokio::spawn(
            async move {
                dispatcher
                    .run_warm(&mut execution, &function, lease, Record::Behind)
                    .await;
                execution
            }
            .instrument(span),
        );
        run.await
            .map_err(|err| DispatchError::Internal(err.to_string()))
    }

    /// For a sync call of `name` that this node cannot serve now (no free instance
    /// here, and the function's `max_instances` across the cluster lets no other
    /// start), the other node to serve it (see [`ClusterView::warm_peer`]), if any.
    ///
    /// [`ClusterView::warm_peer`]: crate::cluster::ClusterView::warm_peer
    pub async fn warm_peer(&self, name: &str) -> Option<Peer> {
        let peer = self.cluster.warm_peer(name)?;
        let function = self.catalog.current(name).await.ok()?;
        function.spec().warm.as_ref()?;
        (!self.pools.can_take_now(&function)).then_some(peer)
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
        self.rates.forget(name);
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
            let since = lease.is_none().then(crate::telemetry::started).flatten();
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
            crate::telemetry::instance_started(
                since,
                execution,
                lease.instance_id(),
                lease.cold_start(),
            );
            let ran_on = lease.function().clone();
            // The lines the instance marks with this execution go to its log.
            let _log = lease.attach_log(id);
            let mut call = WarmCall {
                call: InvokeCall {
                    execution_id: id,
                    trace_id: execution.trace_id.as_deref(),
                    traceparent: execution.traceparent.as_deref(),
                    tracestate: execution.tracestate.as_deref(),
                    timeout_ms: deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis()
                        .max(1) as u64,
                },
                input: input.clone(),
                ran_on: ran_on.clone(),
                oom_before: lease.oom_kills_known(),
                lease: Some(lease),
            };
            let bounds = Bounds {
                cancel: &cancel,
                shutdown: &self.shutdown,
                limit: attempt::hard_limit(deadline),
                timeout_ms: execution.timeout_ms,
                instance: "warm instance",
                started: std::time::Instant::now(),
            };
            let outcome = match attempt::drive(&mut call, bounds).await {
                Ended::Finished(finished, _) => finished,
                // The call never ran: another instance takes it; no attempt is used.
                Ended::Refused(finished) => {
                    refusals += 1;
                    if refusals < MAX_REFUSALS {
                        continue;
                    }
                    finished
                }
                Ended::Abandoned if record == Record::Stored => {
                    // Left running in the store: the next start settles it.
                    self.warm_active.remove(&id);
                    self.notify(execution);
                    return;
                }
                Ended::Abandoned => {
                    break outcome::error(
                        codes::CONTROL_PLANE_RESTARTED,
                        "the server stopped while the call ran",
                        None,
                    )
                }
            };
            crate::telemetry::ran(execution, &outcome);
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
                () = cancel.cancelled() => break outcome::cancelled("while waiting to retry"),
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
            () = cancel.cancelled() => return Err(outcome::cancelled("while waiting for a warm instance")),
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
            outcome::failed(status, ExecutionError::new(code, err.to_string()), None)
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
                let mut follow = self.result_deliveries(execution, Some(function));
                follow.children = self.chain_children(execution, function).await;
                let (children, sends) = (follow.children.clone(), follow.sends_results());
                self.store.write_behind(execution.clone(), follow);
                self.recorded(execution, &children);
                if sends {
                    self.wake_deliveries();
                }
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
