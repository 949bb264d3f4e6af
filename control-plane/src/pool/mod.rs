//! Warm pools: per function, instances of the watchdog in WARM mode that
//! serve many executions each. A call takes the ready instance with the most free
//! capacity, else one is started (up to `max_instances`), else it waits in a bounded
//! queue. Idle instances stop after `idle_timeout_ms` down to `min_instances`,
//! `max_invocations` recycles one, a dead or unhealthy one is replaced, and a new
//! version drains the old instances while its own take the new calls.

pub mod client;
mod instance;
mod lease;
mod lifecycle;
mod slots;
mod status;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use instance::Supervision;
pub use lease::Lease;
pub use status::{InstanceState, InstanceStatus, PoolStatus};

use self::slots::{Phase, PoolState, Waiter};
use crate::cluster::ClusterView;
use crate::domain::FunctionLoad;
use crate::domain::LogLine;
use crate::logs::ExecutionLogs;
use crate::metrics::{Metrics, PoolMetrics};
use crate::registry::catalog::LoadedFunction;
use crate::runtime::Runtime;
use crate::secrets::Vault;

/// How often idle timeouts and `min_instances` are checked.
const MAINTENANCE_TICK: Duration = Duration::from_millis(100);
/// Pause before starting instances for `min_instances` again after a failed start.
const START_BACKOFF: Duration = Duration::from_secs(1);

/// Why a call got no instance.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// `max_instances` are busy and `max_queue` calls wait already.
    #[error("every warm instance of {function:?} is busy and {queued} calls wait (concurrency.max_queue)")]
    QueueFull {
        /// The function.
        function: String,
        /// Calls waiting.
        queued: usize,
    },
    /// No instance became free before the call's deadline.
    #[error("no warm instance of {function:?} became free within {waited_ms} ms")]
    Timeout {
        /// The function.
        function: String,
        /// Time waited.
        waited_ms: u64,
    },
    /// Instances could not be started.
    #[error("{message}")]
    StartFailed {
        /// SPAWN_ERROR or STARTUP_ERROR.
        code: crate::domain::ErrorCode,
        /// What happened.
        message: String,
    },
    /// The function was deleted or is no longer warm.
    #[error("function {0:?} was deleted or its warm pool removed while the call waited")]
    Retired(String),
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// What the pools share.
pub(crate) struct Shared {
    runtime: Arc<dyn Runtime>,
    vault: Arc<Vault>,
    metrics: Arc<Metrics>,
    supervision: Supervision,
    tasks: TaskTracker,
    closing: CancellationToken,
    /// The other nodes' instances, which count against `max_instances`.
    cluster: Arc<ClusterView>,
    /// Where the lines instances mark with an execution go.
    logs: ExecutionLogs,
}

/// Every function's warm pool.
pub struct Pools {
    shared: Arc<Shared>,
    pools: DashMap<String, Arc<FunctionPool>>,
}

/// How a waiting call counts against `max_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queueing {
    /// Refused with [`PoolError::QueueFull`] when the queue is full (sync calls).
    Bounded,
    /// Always waits (executions already stored and promised to run).
    Unbounded,
}

impl Pools {
    /// Pools starting instances on `runtime` with secrets from `vault`, within what
    /// `cluster` says the other nodes run; runs their maintenance until
    /// [`Pools::shutdown`].
    pub fn start(
        runtime: Arc<dyn Runtime>,
        vault: Arc<Vault>,
        metrics: Arc<Metrics>,
        supervision: Supervision,
        cluster: Arc<ClusterView>,
        logs: ExecutionLogs,
    ) -> Arc<Pools> {
        let pools = Arc::new(Pools {
            shared: Arc::new(Shared {
                runtime,
                vault,
                metrics,
                supervision,
                tasks: TaskTracker::new(),
                closing: CancellationToken::new(),
                cluster,
                logs,
            }),
            pools: DashMap::new(),
        });
        let weak = Arc::downgrade(&pools);
        let closing = pools.shared.closing.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = closing.cancelled() => return,
                    () = tokio::time::sleep(MAINTENANCE_TICK) => {}
                }
                let Some(pools) = weak.upgrade() else { return };
                let all: Vec<Arc<FunctionPool>> = pools
                    .pools
                    .iter()
                    .map(|entry| entry.value().clone())
                    .collect();
                for pool in all {
                    pool.maintain();
                }
            }
        });
        pools
    }

    /// The pool of `function`, created (and prewarmed) on first use; a newer version
    /// is adopted (hot deploy).
    fn pool_for(&self, function: &Arc<LoadedFunction>) -> Arc<FunctionPool> {
        let name = &function.version.name;
        if let Some(pool) = self.pools.get(name) {
            let pool = pool.clone();
            pool.adopt(function);
            return pool;
        }
        let pool = self
            .pools
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(FunctionPool {
                    name: name.clone(),
                    metrics: self.shared.metrics.pool(name),
                    state: Mutex::new(PoolState::new(function.clone())),
                    shared: self.shared.clone(),
                })
            })
            .clone();
        pool.adopt(function);
        pool
    }

    /// A deploy of `function`: prewarm its `min_instances` (and drain the instances of
    /// an older version), or remove its pool if it has no `warm` section.
    pub fn deployed(&self, function: &Arc<LoadedFunction>) {
        if self.shared.closing.is_cancelled() {
            return;
        }
        if function.spec().warm.is_some() {
            let pool = self.pool_for(function);
            pool.plan(&mut pool.lock());
        } else {
            self.remove(&function.version.name);
        }
    }

    /// The function `name` was deleted (or is no longer warm): its instances drain and
    /// stop.
    pub fn remove(&self, name: &str) {
        if let Some((_, pool)) = self.pools.remove(name) {
            pool.retire();
        }
    }

    /// Something the instances of `name` were started with changed without a new
    /// version (a secret's value): they drain, and new calls get new instances.
    pub fn recycle(&self, name: &str) {
        let Some(pool) = self.pools.get(name).map(|entry| entry.clone()) else {
            return;
        };
        let mut state = pool.lock();
        for slot in &mut state.slots {
            slot.phase = Phase::Draining;
        }
        pool.plan(&mut state);
    }

    /// An instance for one call of `function`, waiting at most until `deadline`.
    pub async fn acquire(
        &self,
        function: &Arc<LoadedFunction>,
        queueing: Queueing,
        deadline: Instant,
    ) -> Result<Lease, PoolError> {
        if self.shared.closing.is_cancelled() {
            return Err(PoolError::ShuttingDown);
        }
        let pool = self.pool_for(function);
        let waited_since = Instant::now();
        let receiver = {
            let mut state = pool.lock();
            if let Some(index) = state.best_ready() {
                let lease = pool.lease(&mut state, index, false);
                pool.publish(&state);
                drop(state);
                pool.metrics.queue_wait(0.0);
                return Ok(lease);
            }
            state.prune_waiters();
            pool.see_cluster(&mut state);
            if queueing == Queueing::Bounded && state.queue_is_full() {
                return Err(PoolError::QueueFull {
                    function: pool.name.clone(),
                    queued: state.waiters.len(),
                });
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.push_back(Waiter { sender });
            pool.plan(&mut state);
            receiver
        };
        let answer = match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(PoolError::ShuttingDown),
            Err(_) => Err(PoolError::Timeout {
                function: pool.name.clone(),
                waited_ms: waited_since.elapsed().as_millis() as u64,
            }),
        };
        if answer.is_ok() {
            let waited = waited_since.elapsed().as_secs_f64();
            pool.metrics.queue_wait(waited);
        }
        answer
    }

    /// What each pool holds now: calls waiting, instances, and the calls its ready
    /// instances can take.
    pub fn load(&self) -> Vec<(String, FunctionLoad)> {
        self.pools
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().lock().load()))
            .collect()
    }

    /// Whether a call of `function` here gets an instance without waiting for another
    /// one's call to end: one is free, or one more may start.
    pub fn can_take_now(&self, function: &Arc<LoadedFunction>) -> bool {
        let pool = self.pool_for(function);
        let mut state = pool.lock();
        pool.see_cluster(&mut state);
        state.can_take_now()
    }

    /// The latest lines of its own that instance `instance` of `name` wrote, if it runs.
    pub fn instance_lines(&self, name: &str, instance: &str) -> Option<Vec<LogLine>> {
        let pool = self.pools.get(name)?.clone();
        let state = pool.lock();
        let slot = state
            .slots
            .iter()
            .find(|slot| slot.handle.id() == instance)?;
        Some(slot.handle.log.own_lines())
    }

    /// The state of `name`'s pool, if it has one.
    pub fn status(&self, name: &str) -> Option<PoolStatus> {
        let pool = self.pools.get(name)?.clone();
        let state = pool.lock();
        Some(PoolStatus::of(&state))
    }

    /// Stops every instance and waits (at most `limit`) until they are gone.
    pub async fn shutdown(&self, limit: Duration) {
        self.shared.closing.cancel();
        let all: Vec<Arc<FunctionPool>> = self.pools.iter().map(|e| e.value().clone()).collect();
        self.pools.clear();
        for pool in all {
            pool.retire();
            let mut state = pool.lock();
            for slot in &mut state.slots {
                slot.phase = Phase::Draining;
                slot.stopping = true;
                slot.handle.stop();
            }
        }
        self.shared.tasks.close();
        if tokio::time::timeout(limit, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("warm instances still stopping at exit; the next start removes them");
        }
    }
}

/// One function's pool.
pub(crate) struct FunctionPool {
    name: String,
    metrics: PoolMetrics,
    state: Mutex<PoolState>,
    shared: Arc<Shared>,
}
