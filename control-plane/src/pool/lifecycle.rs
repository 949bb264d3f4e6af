//! The life of one function's warm instances: which version new calls take, leases,
//! planning and starting instances, and what the pool does when one becomes ready,
//! is released, fails to start or goes away.

use std::sync::{Arc, MutexGuard};

use chrono::Utc;
use gantry_protocol::env;
use tokio::time::Instant;

use super::instance::{self, InstanceHandle};
use super::lease::Lease;
use super::slots::{Phase, PoolState, Slot};
use super::{FunctionPool, PoolError, START_BACKOFF};
use crate::logs::{ExecutionLogs, LogSink};
use crate::registry::catalog::LoadedFunction;
use crate::runtime::WarmLaunch;

impl FunctionPool {
    pub(super) fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Switches new calls to `function` if it is newer than the pool's version. With
    /// another launch shape, the old instances drain.
    pub(super) fn adopt(self: &Arc<Self>, function: &Arc<LoadedFunction>) {
        let mut state = self.lock();
        if function.version.version <= state.function.version.version && !state.retired {
            return;
        }
        let fresh = PoolState::new(function.clone());
        if fresh.shape != state.shape {
            for slot in &mut state.slots {
                slot.phase = Phase::Draining;
            }
        }
        state.function = fresh.function;
        state.shape = fresh.shape;
        state.warm = fresh.warm;
        state.retired = false;
        self.plan(&mut state);
    }

    /// Stops taking calls: waiting calls fail, instances drain and stop.
    pub(super) fn retire(self: &Arc<Self>) {
        let mut state = self.lock();
        state.retired = true;
        for slot in &mut state.slots {
            slot.phase = Phase::Draining;
        }
        for waiter in state.waiters.drain(..) {
            let _ = waiter
                .sender
                .send(Err(PoolError::Retired(self.name.clone())));
        }
        self.plan(&mut state);
    }

    /// Gives slot `index` one more call.
    pub(super) fn lease(
        self: &Arc<Self>,
        state: &mut PoolState,
        index: usize,
        cold_start: bool,
    ) -> Lease {
        state.take(index);
        let slot = &state.slots[index];
        Lease::new(
            self.clone(),
            slot.handle.clone(),
            state.function.clone(),
            cold_start,
        )
    }

    /// Hands free capacity to waiting calls (`cold` marks leases of `cold_slot`, an
    /// instance that has just become ready), then starts and stops instances as needed.
    fn plan_with(self: &Arc<Self>, state: &mut PoolState, cold_slot: Option<uuid::Uuid>) {
        self.see_cluster(state);
        while !state.waiters.is_empty() {
            let Some(index) = state.best_ready() else {
                break;
            };
            let Some(waiter) = state.waiters.pop_front() else {
                break;
            };
            if waiter.sender.is_closed() {
                continue;
            }
            let cold = cold_slot == Some(state.slots[index].handle.key);
            let lease = self.lease(state, index, cold);
            if let Err(Ok(lease)) = waiter.sender.send(Ok(lease)) {
                // The caller gave up in the meantime: undo without taking the lock again.
                lease.disarm();
                let slot = &mut state.slots[index];
                slot.in_flight -= 1;
                slot.invocations -= 1;
                continue;
            }
            if cold {
                state.cold_starts += 1;
                self.metrics.cold_start();
            }
        }
        let starts = state.starts_needed(Instant::now(), START_BACKOFF);
        for _ in 0..starts {
            self.start_instance(state);
        }
        for index in state.over_the_cluster_limit() {
            state.slots[index].phase = Phase::Draining;
        }
        for slot in &mut state.slots {
            if slot.phase == Phase::Draining && slot.in_flight == 0 && !slot.stopping {
                slot.stopping = true;
                slot.handle.stop();
            }
        }
        self.publish(state);
    }

    pub(super) fn plan(self: &Arc<Self>, state: &mut PoolState) {
        self.plan_with(state, None);
    }

    /// Brings what the other nodes run of the function into `state`.
    pub(super) fn see_cluster(&self, state: &mut PoolState) {
        state.elsewhere = self.shared.cluster.elsewhere(&self.name);
        state.outranked = self.shared.cluster.outranked(&self.name);
    }

    /// Updates the pool's metrics.
    pub(super) fn publish(&self, state: &PoolState) {
        self.metrics.set(state.census());
    }

    fn start_instance(self: &Arc<Self>, state: &mut PoolState) {
        if self.shared.closing.is_cancelled() {
            return;
        }
        let logs = ExecutionLogs {
            function: self.name.clone(),
            ..self.shared.logs.clone()
        };
        let handle = Arc::new(InstanceHandle::new(logs));
        let function = state.function.clone();
        let spec = function.spec();
        let warm = &state.warm;
        let mut launch_env = vec![
            (env::EXECUTION_MODE.to_owned(), "WARM".to_owned()),
            (env::WARM_RUNTIME.to_owned(), spec.mode.as_env().to_owned()),
            (
                env::WARM_CONCURRENCY.to_owned(),
                warm.concurrency_per_instance.max(1).to_string(),
            ),
            // The pool decides when an instance stops.
            (env::WARM_IDLE_TIMEOUT_MS.to_owned(), "0".to_owned()),
            (env::WARM_MAX_INVOCATIONS.to_owned(), "0".to_owned()),
            (env::TIMEOUT_MS.to_owned(), spec.timeout_ms().to_string()),
            (env::WARM_TOKEN.to_owned(), handle.credential().to_owned()),
            (
                env::MAX_OUTPUT_BYTES.to_owned(),
                self.shared.supervision.max_output_bytes.to_string(),
            ),
        ];
        for (key, value) in &spec.env {
            launch_env.push((key.clone(), value.clone()));
        }
        let launch = WarmLaunch {
            key: handle.key,
            function: function.version.clone(),
            env: launch_env,
            logs: LogSink::to_instance(format!("{}/{}", self.name, handle.key), handle.log.clone()),
        };
        state.slots.push(Slot {
            handle: handle.clone(),
            version: function.version.version,
            phase: Phase::Starting,
            in_flight: 0,
            invocations: 0,
            started_at: crate::domain::now(),
            last_used: None,
            idle_since: Instant::now(),
            stopping: false,
        });
        self.metrics.instance_started();
        self.shared
            .tasks
            .spawn(instance::supervise(self.clone(), handle, launch));
    }

    /// A lease of instance `key` ended.
    pub(super) fn release(self: &Arc<Self>, key: uuid::Uuid, broken: bool) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(key) {
            let slot = &mut state.slots[index];
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.last_used = Some(Utc::now());
            if slot.in_flight == 0 {
                slot.idle_since = Instant::now();
            }
            if broken && !slot.stopping {
                slot.phase = Phase::Draining;
                slot.stopping = true;
                slot.handle.stop();
            }
        }
        self.plan(&mut state);
    }

    /// Instance `key` died or failed its health checks: no new call goes to it while
    /// it is being stopped.
    pub(super) fn unavailable(self: &Arc<Self>, key: uuid::Uuid) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(key) {
            let slot = &mut state.slots[index];
            slot.phase = Phase::Draining;
            slot.stopping = true;
        }
        self.plan(&mut state);
    }

    /// Instance `key` answered `/health`.
    pub(super) fn ready(self: &Arc<Self>, key: uuid::Uuid) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(key) {
            let slot = &mut state.slots[index];
            if slot.phase == Phase::Starting {
                // A starting slot's idle clock runs from its start.
                let took = slot.idle_since.elapsed().as_secs_f64();
                self.shared
                    .metrics
                    .instance_start(&self.name, "ready", took);
                slot.phase = Phase::Ready;
                slot.idle_since = Instant::now();
            }
        }
        self.plan_with(&mut state, Some(key));
    }

    /// Instance `key` could not be started.
    pub(super) fn start_failed(
        self: &Arc<Self>,
        key: uuid::Uuid,
        code: crate::domain::ErrorCode,
        message: String,
    ) {
        tracing::warn!(function = %self.name, "a warm instance failed to start: {message}");
        let mut state = self.lock();
        if let Some(index) = state.index_of(key) {
            let slot = state.slots.remove(index);
            let took = slot.idle_since.elapsed().as_secs_f64();
            self.shared
                .metrics
                .instance_start(&self.name, "failed", took);
        }
        state.last_start_failure = Some(Instant::now());
        if state.live() == 0 {
            for waiter in state.waiters.drain(..) {
                let _ = waiter.sender.send(Err(PoolError::StartFailed {
                    code: code.clone(),
                    message: message.clone(),
                }));
            }
        }
        self.plan(&mut state);
    }

    /// Instance `key` is gone: stopped (`died` is `None`) or dead.
    pub(super) fn gone(self: &Arc<Self>, key: uuid::Uuid, died: Option<String>) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(key) {
            let slot = state.slots.remove(index);
            if let Some(reason) = died {
                tracing::warn!(
                    function = %self.name,
                    instance = slot.handle.id(),
                    in_flight = slot.in_flight,
                    "a warm instance is gone ({reason}); replacing it as needed"
                );
            }
        }
        self.plan(&mut state);
    }

    /// Stops instances idle too long and replaces missing ones.
    pub(super) fn maintain(self: &Arc<Self>) {
        let mut state = self.lock();
        for index in state.idle_expired(Instant::now()) {
            let slot = &mut state.slots[index];
            slot.phase = Phase::Draining;
        }
        self.plan(&mut state);
    }
}
