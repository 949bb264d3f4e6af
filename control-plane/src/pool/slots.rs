//! The bookkeeping of one function's pool: its instances (slots) with their phase and
//! load, the calls waiting for capacity, and the decisions taken on them (which instance
//! takes a call, how many to start, which idle ones to stop). No I/O happens here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::instance::InstanceHandle;
use super::{Lease, PoolError};
use crate::domain::FunctionLoad;
use crate::metrics::PoolGauges;
use crate::registry::catalog::LoadedFunction;
use crate::registry::manifest::WarmSpec;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Started, not answering `/health` yet.
    Starting,
    /// Takes calls (idle or busy, by its load).
    Ready,
    /// Takes no new calls; stopped once its calls are done.
    Draining,
}

/// One instance of the pool.
pub struct Slot {
    /// The instance.
    pub handle: Arc<InstanceHandle>,
    /// Version it was started for.
    pub version: u32,
    /// Its phase.
    pub phase: Phase,
    /// Calls it runs now.
    pub in_flight: u32,
    /// Calls it took in all.
    pub invocations: u64,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// When it last finished a call.
    pub last_used: Option<DateTime<Utc>>,
    /// Since when it has had no call (for the idle timeout).
    pub idle_since: Instant,
    /// Whether its stop was asked for.
    pub stopping: bool,
}

/// A call waiting for capacity.
pub struct Waiter {
    /// Where its lease goes.
    pub sender: oneshot::Sender<Result<Lease, PoolError>>,
}

/// Everything about one function's pool, behind its lock.
pub struct PoolState {
    /// The version new calls run on.
    pub function: Arc<LoadedFunction>,
    /// Its launch shape.
    pub shape: Arc<str>,
    /// Its pool settings.
    pub warm: WarmSpec,
    /// The instances.
    pub slots: Vec<Slot>,
    /// Calls waiting, oldest first.
    pub waiters: VecDeque<Waiter>,
    /// Calls that waited for an instance to start.
    pub cold_starts: u64,
    /// When an instance last failed to start (starts for `min_instances` back off).
    pub last_start_failure: Option<Instant>,
    /// The function was deleted or lost its `warm` section: nothing new starts.
    pub retired: bool,
    /// What the other nodes run of the function: their instances count against
    /// `max_instances`, their waiting calls against `max_queue`.
    pub elsewhere: FunctionLoad,
    /// A node with a smaller id runs instances of the function too (see
    /// [`crate::cluster::ClusterView::outranked`]).
    pub outranked: bool,
}

/// What identifies the processes a version runs: two versions with the same shape
/// (say, one only changed `warm.min_instances` or a schema) share instances.
pub fn shape_of(function: &LoadedFunction) -> Arc<str> {
    let spec = function.spec();
    let shape = serde_json::json!([
        spec.image,
        spec.command,
        spec.working_dir,
        spec.env,
        spec.mode,
        spec.resources,
        spec.secrets,
        spec.warm.as_ref().map(|warm| warm.concurrency_per_instance),
    ]);
    Arc::from(shape.to_string())
}

impl PoolState {
    /// A pool for `function`, with no instance yet.
    pub fn new(function: Arc<LoadedFunction>) -> PoolState {
        let warm = function.spec().warm.clone().unwrap_or_default();
        PoolState {
            shape: shape_of(&function),
            function,
            warm,
            slots: Vec::new(),
            waiters: VecDeque::new(),
            cold_starts: 0,
            last_start_failure: None,
            retired: false,
            elsewhere: FunctionLoad::default(),
            outranked: false,
        }
    }

    fn concurrency(&self) -> u32 {
        self.warm.concurrency_per_instance.max(1)
    }

    /// The index of the ready instance with the most free capacity.
    pub fn best_ready(&self) -> Option<usize> {
        let concurrency = self.concurrency();
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.phase == Phase::Ready && slot.in_flight < concurrency)
            .max_by_key(|(_, slot)| (concurrency - slot.in_flight, slot.invocations))
            .map(|(index, _)| index)
    }

    /// Counts one more call on slot `index`; a slot that reached `max_invocations`
    /// drains from now on.
    pub fn take(&mut self, index: usize) {
        let max = self.warm.max_invocations;
        let slot = &mut self.slots[index];
        slot.in_flight += 1;
        slot.invocations += 1;
        if max > 0 && slot.invocations >= max {
            slot.phase = Phase::Draining;
        }
    }

    /// Instances that take or will take calls (starting or ready).
    pub fn live(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.phase != Phase::Draining)
            .count()
    }

    /// Drops waiters whose caller gave up.
    pub fn prune_waiters(&mut self) {
        self.waiters.retain(|waiter| !waiter.sender.is_closed());
    }

    /// Instances starting.
    fn starting(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.phase == Phase::Starting)
            .count()
    }

    /// Whether a new call would wait past `max_queue`: calls that instances starting
    /// now (or that may still be started) will take do not count as queued.
    pub fn queue_is_full(&self) -> bool {
        let concurrency = self.concurrency() as usize;
        let provisioned = (self.starting() + self.room()) * concurrency;
        let max_queue = self.function.spec().max_queue() as usize;
        let waiting = self.waiters.len() + self.elsewhere.queued as usize;
        waiting >= provisioned + max_queue
    }

    /// Instances this node may run: `max_instances` less those the other nodes run.
    fn max_here(&self) -> usize {
        (self.warm.max_instances as usize).saturating_sub(self.elsewhere.instances as usize)
    }

    /// How many more instances may start here.
    pub fn room(&self) -> usize {
        self.max_here().saturating_sub(self.live())
    }

    /// Whether one more call gets an instance without waiting for another call to end:
    /// one is free, or the instances starting (or that may start) cover every waiter.
    pub fn can_take_now(&self) -> bool {
        let provisioned = (self.starting() + self.room()) * self.concurrency() as usize;
        self.best_ready().is_some() || provisioned > self.waiters.len()
    }

    /// What this pool holds, for the other nodes: waiting calls, live instances and
    /// the calls its ready instances can take now.
    pub fn load(&self) -> FunctionLoad {
        let concurrency = self.concurrency();
        let free = self
            .slots
            .iter()
            .filter(|slot| slot.phase == Phase::Ready)
            .map(|slot| concurrency.saturating_sub(slot.in_flight))
            .sum();
        FunctionLoad {
            queued: u32::try_from(self.waiters.len()).unwrap_or(u32::MAX),
            running: 0,
            instances: u32::try_from(self.live()).unwrap_or(u32::MAX),
            free,
            demand: 0,
        }
    }

    /// How many instances to start now: enough for `min_instances`, and for the waiting
    /// calls that the starting instances will not absorb, within `max_instances`.
    pub fn starts_needed(&self, now: Instant, backoff: Duration) -> usize {
        if self.retired {
            return 0;
        }
        let live = self.live();
        let room = self.room();
        let concurrency = self.concurrency() as usize;
        let starting = self.starting();
        let uncovered = self.waiters.len().saturating_sub(starting * concurrency);
        let for_waiters = uncovered.div_ceil(concurrency);
        let backing_off = self
            .last_start_failure
            .is_some_and(|failed| now.duration_since(failed) < backoff);
        let for_min = if backing_off {
            0
        } else {
            (self.warm.min_instances as usize)
                .min(self.max_here())
                .saturating_sub(live)
        };
        for_waiters.max(for_min).min(room)
    }

    /// Ready instances idle past `idle_timeout_ms` beyond `min_instances`, longest idle
    /// first: they are to be stopped.
    pub fn idle_expired(&self, now: Instant) -> Vec<usize> {
        let timeout = Duration::from_millis(self.warm.idle_timeout_ms);
        let mut idle: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                slot.phase == Phase::Ready
                    && slot.in_flight == 0
                    && now.duration_since(slot.idle_since) >= timeout
            })
            .map(|(index, _)| index)
            .collect();
        idle.sort_by_key(|&index| self.slots[index].idle_since);
        let surplus = self.live().saturating_sub(self.warm.min_instances as usize);
        idle.truncate(surplus);
        idle
    }

    /// Idle instances to stop because the cluster runs more than `max_instances` (two
    /// nodes started one each in the same moment): only on a node outranked by another
    /// that runs instances, and only while no call waits here.
    pub fn over_the_cluster_limit(&self) -> Vec<usize> {
        let total = self.live() + self.elsewhere.instances as usize;
        let excess = total.saturating_sub(self.warm.max_instances as usize);
        if excess == 0 || !self.outranked || !self.waiters.is_empty() {
            return Vec::new();
        }
        let mut idle: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.phase == Phase::Ready && slot.in_flight == 0)
            .map(|(index, _)| index)
            .collect();
        idle.sort_by_key(|&index| self.slots[index].idle_since);
        idle.truncate(excess);
        idle
    }

    /// Index of the slot of instance `key`.
    pub fn index_of(&self, key: Uuid) -> Option<usize> {
        self.slots.iter().position(|slot| slot.handle.key == key)
    }

    /// Counts by state.
    pub fn census(&self) -> PoolGauges {
        let mut census = PoolGauges {
            queued: self.waiters.len(),
            ..PoolGauges::default()
        };
        for slot in &self.slots {
            census.in_flight += slot.in_flight as usize;
            match slot.phase {
                Phase::Starting => census.starting += 1,
                Phase::Ready if slot.in_flight == 0 => census.idle += 1,
                Phase::Ready => census.busy += 1,
                Phase::Draining => census.draining += 1,
            }
        }
        census
    }
}
