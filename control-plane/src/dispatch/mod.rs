//! Executions from request to result: admission against the function's limits, the
//! durable record, the run on a runtime, the watchdog's callback, cancel, and recovery
//! of what a previous run of the control plane left unfinished.

mod accept;
mod admission;
mod attempt;
mod callback;
mod cancel;
mod compose;
mod destined;
mod due;
mod error;
mod expiry;
#[cfg(test)]
mod expiry_tests;
mod finish;
mod leases;
mod local_run;
mod outcome;
mod pacing;
mod rate;
mod recovery;
mod remote;
mod report;
mod retry;
mod run;
mod scheduled;
#[cfg(test)]
mod tests;
mod warm;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use accept::Storing;
pub use admission::{Admission, Load};
pub(crate) use callback::hash_token;
pub use compose::{ChainNode, ChainPage, EventTarget};
pub use error::DispatchError;
pub use leases::{lease, LEASE};
pub use local_run::{run_outcome, timed_out_run, validate_input};
pub use rate::retry_after_secs;
pub use report::{CallbackReport, MAX_OUTPUT_DEPTH};
pub use scheduled::TickFire;

use crate::cluster::{ClusterView, LoadSource};
use crate::domain::{Execution, Finished, FunctionLoad, TraceContext, Trigger};
use crate::logs::{ExecutionLogs, LogHub};
use crate::metrics::Metrics;
use crate::pool::{Pools, Supervision};
use crate::registry::catalog::{Catalog, LoadedFunction};
use crate::runtime::Runtime;
use crate::secrets::Vault;
use crate::store::{Store, StoreError, WriteBehind};

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// `{advertise}/v1/internal/executions`: CALLBACK_URL of every instance.
    pub callback_base: String,
    /// Largest captured log of one execution.
    pub log_cap_bytes: usize,
    /// Inputs longer than this go through PAYLOAD_URL instead of the environment.
    pub max_env_payload_bytes: usize,
    /// Supervision of warm instances.
    pub warm: Supervision,
    /// Deepest chain: a child past it is recorded failed (CHAIN_DEPTH_EXCEEDED).
    pub max_chain_depth: u32,
    /// Largest output of a function (every instance's MAX_OUTPUT_BYTES).
    pub max_output_bytes: usize,
    /// This node's id: the owner of the executions it claims.
    pub owner: String,
    /// When other nodes share the store, how often a caller waiting for a result reads
    /// the record (another node may run it); `None` when this node runs everything.
    pub poll_results: Option<Duration>,
    /// A due execution that waited longer than this to start ends `EXPIRED` (a
    /// function's `max_queue_age_ms` overrides it); `None`: no limit.
    pub max_queue_age: Option<Duration>,
}

/// The span of the work on execution `id`: in JSON logs, every line written inside it
/// carries the execution id and, once known, its trace id.
pub(crate) fn execution_span(id: Uuid, trace_id: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("execution", id = %id, trace_id = tracing::field::Empty);
    if let Some(trace_id) = trace_id {
        span.record("trace_id", trace_id);
    }
    span
}

/// Room a result report needs beside its output (its envelope, an error message).
pub const REPORT_ENVELOPE_BYTES: usize = 64 * 1024;

/// A request to run a function.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The function's name.
    pub function: String,
    /// The input.
    pub input: Value,
    /// `X-Trace-Id`.
    pub trace_id: Option<String>,
    /// The caller's W3C trace context (`traceparent`, `tracestate`): the execution
    /// runs as a span below it. `None` starts a new trace.
    pub trace: Option<TraceContext>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `X-Timeout-Ms`: lowers the function's timeout for this execution.
    pub timeout_ms: Option<u64>,
    /// What started it.
    pub trigger: Trigger,
    /// `X-Callback-Url` of `:enqueue`: where the final result is POSTed (checked by the
    /// caller against the address policy).
    pub callback_url: Option<String>,
}

/// An accepted request.
#[derive(Debug)]
pub struct Accepted {
    /// The record as stored (or the earlier one with the same idempotency key).
    pub execution: Execution,
    /// Whether an earlier execution was answered because of the idempotency key.
    pub existing: bool,
}

/// A report delivered by the callback route, with the channel that acknowledges it once
/// the result is durable.
type ReportDelivery = (CallbackReport, oneshot::Sender<Recorded>);

/// What became of a reported result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// It is the execution's durable result.
    Applied,
    /// The execution was final already; the report changed nothing.
    AlreadyFinal,
    /// The store cannot take it now: the server keeps it and records it when the store
    /// is back; the watchdog may report again.
    Unavailable,
}

/// What a waiting caller learns.
#[derive(Debug, Clone)]
enum Waited {
    /// The execution's final record.
    Final(Box<Execution>),
    /// Its result could not be recorded yet (the store fails).
    StoreUnavailable,
}

/// An execution with a live instance.
struct ActiveRun {
    token_hash: String,
    reports: mpsc::Sender<ReportDelivery>,
    cancel: CancellationToken,
    /// The input, kept for PAYLOAD_URL when it is too large for the environment.
    large_payload: Option<Arc<String>>,
}

/// Runs executions: the heart of the control plane.
pub struct Dispatcher {
    /// The store, with the write-behind of sync warm calls in front of it.
    store: Arc<WriteBehind>,
    runtime: Arc<dyn Runtime>,
    catalog: Arc<Catalog>,
    vault: Arc<Vault>,
    admission: Admission,
    /// Token buckets of the functions with a `rate_limit`.
    rates: rate::RateLimits,
    active: DashMap<Uuid, ActiveRun>,
    /// Executions running on warm instances, with what cancels them.
    warm_active: DashMap<Uuid, CancellationToken>,
    pools: Arc<Pools>,
    waiters: DashMap<Uuid, watch::Sender<Option<Waited>>>,
    logs: Arc<LogHub>,
    metrics: Arc<Metrics>,
    settings: DispatchSettings,
    shutdown: CancellationToken,
    closing: AtomicBool,
    /// Wakes the due task when an execution with a `run_at` was stored.
    due_wake: tokio::sync::Notify,
    /// What the other nodes sharing the store hold of each function.
    cluster: Arc<ClusterView>,
    /// Where final results are sent, once set.
    destinations: std::sync::OnceLock<Arc<crate::destinations::Destinations>>,
}

impl Dispatcher {
    /// A dispatcher running on `runtime`, recording in `store` (the same decorator the
    /// API reads through, so it sees the records written behind).
    pub fn new(
        store: Arc<WriteBehind>,
        runtime: Arc<dyn Runtime>,
        catalog: Arc<Catalog>,
        vault: Arc<Vault>,
        logs: Arc<LogHub>,
        metrics: Arc<Metrics>,
        settings: DispatchSettings,
    ) -> Arc<Dispatcher> {
        let cluster = Arc::new(ClusterView::new(settings.owner.clone()));
        let execution_logs = ExecutionLogs {
            // Each pool names its own function.
            function: String::new(),
            store: store.clone(),
            hub: logs.clone(),
            cap_bytes: settings.log_cap_bytes,
        };
        let pools = Pools::start(
            runtime.clone(),
            vault.clone(),
            metrics.clone(),
            settings.warm,
            cluster.clone(),
            execution_logs,
        );
        Arc::new(Dispatcher {
            store,
            runtime,
            catalog,
            vault,
            admission: Admission::default(),
            rates: rate::RateLimits::default(),
            active: DashMap::new(),
            warm_active: DashMap::new(),
            pools,
            waiters: DashMap::new(),
            logs,
            metrics,
            settings,
            shutdown: CancellationToken::new(),
            closing: AtomicBool::new(false),
            due_wake: tokio::sync::Notify::new(),
            cluster,
            destinations: std::sync::OnceLock::new(),
        })
    }

    /// Validates, admits and durably stores a new execution, then starts or queues it.
    /// With `wait`, the answer carries a receiver for the final record.
    pub async fn submit(
        self: &Arc<Self>,
        request: InvokeRequest,
    ) -> Result<Accepted, DispatchError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(DispatchError::ShuttingDown);
        }
        let function = self.catalog.current(&request.function).await?;
        check_input(&function, &request).await?;
        let spec = function.spec();
        if let Some(key) = &request.idempotency_key {
            if let Some(existing) = self
                .store
                .find_by_idempotency_key(&request.function, key)
                .await?
            {
                return same_input(existing, &request.input, key);
            }
        }
        let mut execution = Execution::queued(&function.version, request.input, request.trigger);
        execution.begin_trace(request.trace.as_ref(), request.trace_id);
        execution.idempotency_key = request.idempotency_key;
        if let Some(timeout_ms) = request.timeout_ms {
            execution.timeout_ms = timeout_ms.min(execution.timeout_ms);
        }
        let callback = self
            .register_callback(&execution, spec, request.callback_url)
            .await?;
        let admitted = self.admit(spec, &mut execution, Storing::New).await;
        if callback && admitted.is_err() {
            self.drop_callback(execution.id).await;
        }
        match admitted {
            Ok(()) => {}
            Err(DispatchError::Store(StoreError::DuplicateIdempotencyKey(id))) => {
                return match self.store.get_execution(id).await? {
                    Some(existing) => {
                        let key = execution.idempotency_key.as_deref().unwrap_or_default();
                        same_input(existing, &execution.input, key)
                    }
                    None => Err(DispatchError::ExecutionNotFound(id)),
                };
            }
            Err(err) => return Err(err),
        }
        Ok(Accepted {
            execution,
            existing: false,
        })
    }

    /// Waits until execution `id` is final (or the server shuts down, in which case the
    /// record is answered as it is).
    pub async fn wait_final(&self, id: Uuid) -> Result<Execution, DispatchError> {
        let mut receiver = self
            .waiters
            .entry(id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        // Checked after subscribing, so a finish in between is not missed.
        let current = self
            .store
            .get_execution(id)
            .await?
            .ok_or(DispatchError::ExecutionNotFound(id))?;
        if current.status.is_terminal() {
            // Nobody will notify this entry: drop it unless another caller waits on it.
            drop(receiver);
            self.waiters
                .remove_if(&id, |_, sender| sender.receiver_count() == 0);
            return Ok(current);
        }
        loop {
            match receiver.borrow_and_update().clone() {
                Some(Waited::Final(execution)) => return Ok(*execution),
                Some(Waited::StoreUnavailable) => return Err(DispatchError::StoreUnavailable(id)),
                None => {}
            }
            let changed = match self.settings.poll_results {
                None => receiver.changed().await,
                Some(every) => tokio::select! {
                    changed = receiver.changed() => changed,
                    () = tokio::time::sleep(every) => {
                        // Another node may have run it: its end is only in the store.
                        match self.store.get_execution(id).await? {
                            Some(now) if now.status.is_terminal() => {
                                drop(receiver);
                                self.waiters
                                    .remove_if(&id, |_, sender| sender.receiver_count() == 0);
                                return Ok(now);
                            }
                            Some(_) => continue,
                            None => return Err(DispatchError::ExecutionNotFound(id)),
                        }
                    }
                },
            };
            if changed.is_err() {
                // The entry was replaced or dropped: read the record as it is now.
                return self
                    .store
                    .get_execution(id)
                    .await?
                    .ok_or(DispatchError::ExecutionNotFound(id));
            }
        }
    }

    fn notify(&self, execution: &Execution) {
        if let Some((_, sender)) = self.waiters.remove(&execution.id) {
            let _ = sender.send(Some(Waited::Final(Box::new(execution.clone()))));
        }
    }

    /// Tells the callers waiting for `id` that its result cannot be recorded now.
    fn notify_unavailable(&self, id: Uuid) {
        if let Some((_, sender)) = self.waiters.remove(&id) {
            let _ = sender.send(Some(Waited::StoreUnavailable));
        }
    }

    fn start_queued(self: &Arc<Self>, function: &str, ids: Vec<Uuid>) {
        for id in ids {
            tokio::spawn(self.clone().run(function.to_owned(), id, None));
        }
    }

    /// Queued and running executions of `function`.
    pub fn load(&self, function: &str) -> Load {
        self.admission.load(function)
    }

    /// This node's id: the owner of the executions it claims.
    pub fn node_id(&self) -> &str {
        &self.settings.owner
    }

    /// What the other nodes sharing the store hold of each function.
    pub fn cluster(&self) -> &ClusterView {
        &self.cluster
    }

    /// Executions with a live instance.
    pub fn running(&self) -> usize {
        self.active.len() + self.warm_active.len()
    }

    /// The warm pools.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Stops taking executions and starting queued ones (they stay queued for the next
    /// start), waits up to `grace` for running ones, then stops the rest without
    /// recording a result: the next start recovers them.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        let busy = || !self.active.is_empty() || !self.warm_active.is_empty();
        while busy() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shutdown.cancel();
        while busy() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pools.shutdown(grace.max(Duration::from_secs(5))).await;
    }
}

/// Refuses a request for a disabled function or with an input its schema rejects.
async fn check_input(
    function: &LoadedFunction,
    request: &InvokeRequest,
) -> Result<(), DispatchError> {
    if !function.spec().enabled {
        return Err(DispatchError::Disabled(request.function.clone()));
    }
    check_schema(function, &request.function, &request.input).await
}

/// Checks `input` against the function's `input_schema`.
pub(crate) async fn check_schema(
    function: &LoadedFunction,
    name: &str,
    input: &Value,
) -> Result<(), DispatchError> {
    if let Some(schema) = &function.input_schema {
        let violations = schema
            .check(input)
            .await
            .map_err(|_| DispatchError::InputTooComplex(name.to_owned()))?;
        if !violations.is_empty() {
            return Err(DispatchError::InvalidInput {
                function: name.to_owned(),
                violations,
            });
        }
    }
    Ok(())
}

/// The earlier execution with the same idempotency key, if it had the same input.
fn same_input(existing: Execution, input: &Value, key: &str) -> Result<Accepted, DispatchError> {
    if existing.input == *input {
        Ok(Accepted {
            execution: existing,
            existing: true,
        })
    } else {
        Err(DispatchError::IdempotencyKeyReused {
            key: key.to_owned(),
            existing: existing.id,
        })
    }
}

/// Copies a terminal update into a record.
pub(crate) fn apply_finished(execution: &mut Execution, finished: &Finished) {
    execution.status = finished.status;
    execution.output = finished.output.clone();
    execution.error = finished.error.clone();
    execution.exit_code = finished.exit_code;
    execution.duration_ms = finished.duration_ms;
    execution.finished_at = Some(finished.finished_at);
}

impl LoadSource for Dispatcher {
    fn local_load(&self) -> BTreeMap<String, FunctionLoad> {
        let mut loads: BTreeMap<String, FunctionLoad> = BTreeMap::new();
        for (function, load) in self.admission.loads() {
            let entry = loads.entry(function).or_default();
            entry.queued = u32::try_from(load.queued).unwrap_or(u32::MAX);
            entry.running = u32::try_from(load.running).unwrap_or(u32::MAX);
        }
        for (function, pool) in self.pools.load() {
            let entry = loads.entry(function).or_default();
            *entry = entry.plus(pool);
        }
        for (function, demand) in self.rates.demands(tokio::time::Instant::now()) {
            // Rounded: a demand that died down drops out, and the load is not published
            // again for every small change.
            let demand = demand.round().min(f64::from(u32::MAX)) as u32;
            if demand > 0 {
                loads.entry(function).or_default().demand = demand;
            }
        }
        loads
    }

    fn view(&self) -> &ClusterView {
        &self.cluster
    }
}
