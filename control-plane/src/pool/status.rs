//! The state of a pool as the API shows it (`pool` in `GET /v1/functions/{name}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::slots::{Phase, PoolState};

/// A pool: its settings, counts and instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// `warm.min_instances`.
    pub min_instances: u32,
    /// `warm.max_instances`.
    pub max_instances: u32,
    /// `warm.concurrency_per_instance`.
    pub concurrency_per_instance: u32,
    /// `warm.idle_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// `warm.max_invocations`.
    pub max_invocations: u64,
    /// Instances starting.
    pub starting: usize,
    /// Instances ready with no call.
    pub idle: usize,
    /// Instances ready with calls.
    pub busy: usize,
    /// Instances draining or stopping.
    pub draining: usize,
    /// Calls waiting for capacity.
    pub queued: usize,
    /// Calls running.
    pub in_flight: usize,
    /// Calls that waited for an instance to start.
    pub cold_starts: u64,
    /// Every instance.
    pub instances: Vec<InstanceStatus>,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The runtime's id.
    pub id: String,
    /// The function version it was started for.
    pub version: u32,
    /// Where it is in its life.
    pub state: InstanceState,
    /// Calls running on it.
    pub in_flight: u32,
    /// Calls it took.
    pub invocations: u64,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// When it last finished a call.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Where a warm instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Being started.
    Starting,
    /// Ready, with no call.
    Idle,
    /// Ready, with calls.
    Busy,
    /// Draining or stopping: takes no new call.
    Draining,
}

impl InstanceState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Idle => "idle",
            InstanceState::Busy => "busy",
            InstanceState::Draining => "draining",
        }
    }
}

impl PoolStatus {
    pub(super) fn of(state: &PoolState) -> PoolStatus {
        let census = state.census();
        PoolStatus {
            min_instances: state.warm.min_instances,
            max_instances: state.warm.max_instances,
            concurrency_per_instance: state.warm.concurrency_per_instance,
            idle_timeout_ms: state.warm.idle_timeout_ms,
            max_invocations: state.warm.max_invocations,
            starting: census.starting,
            idle: census.idle,
            busy: census.busy,
            draining: census.draining,
            queued: census.queued,
            in_flight: census.in_flight,
            cold_starts: state.cold_starts,
            instances: state
                .slots
                .iter()
                .map(|slot| InstanceStatus {
                    id: slot.handle.id().to_owned(),
                    version: slot.version,
                    state: match slot.phase {
                        Phase::Starting => InstanceState::Starting,
                        Phase::Ready if slot.in_flight == 0 => InstanceState::Idle,
                        Phase::Ready => InstanceState::Busy,
                        Phase::Draining => InstanceState::Draining,
                    },
                    in_flight: slot.in_flight,
                    invocations: slot.invocations,
                    started_at: slot.started_at,
                    last_used_at: slot.last_used,
                })
                .collect(),
        }
    }
}
