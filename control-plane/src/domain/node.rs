//! Control-plane nodes as the store knows them: who runs, where, with what runtime, how
//! busy, and when each last said it was alive.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a node writes about itself at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's id: the owner of every execution it claims.
    pub id: String,
    /// The URL its API answers on.
    pub address: String,
    /// The runtimes it runs functions with (`process`, `docker`).
    pub runtime: String,
    /// The Gantry version it runs.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Executions it was running at that heartbeat.
    pub running: u32,
    /// When it stopped cleanly; `None` while it runs (or since it was lost).
    pub stopped_at: Option<DateTime<Utc>>,
}

/// What one node holds of one function at a moment, as it tells the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FunctionLoad {
    /// Executions waiting on the node for a slot.
    #[serde(default)]
    pub queued: u32,
    /// Executions running on it.
    #[serde(default)]
    pub running: u32,
    /// Warm instances it runs (starting or ready).
    #[serde(default)]
    pub instances: u32,
    /// Calls its ready warm instances can take right now.
    #[serde(default)]
    pub free: u32,
    /// Executions asked of the function's rate limit on the node lately, per second
    /// (functions with a `rate_limit` only): the nodes' parts of the limit follow it.
    #[serde(default)]
    pub demand: u32,
}

impl FunctionLoad {
    /// Whether there is nothing to tell.
    pub fn is_idle(&self) -> bool {
        *self == FunctionLoad::default()
    }

    /// The sum of two loads.
    pub fn plus(self, other: FunctionLoad) -> FunctionLoad {
        FunctionLoad {
            queued: self.queued.saturating_add(other.queued),
            running: self.running.saturating_add(other.running),
            instances: self.instances.saturating_add(other.instances),
            free: self.free.saturating_add(other.free),
            demand: self.demand.saturating_add(other.demand),
        }
    }
}

/// Most functions one node's load names: past it, the least busy are left out.
pub const MAX_LOAD_FUNCTIONS: usize = 4096;

/// A node's load by function (busy functions only), with the address its API answers
/// on, as it last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    /// The node's id.
    pub node_id: String,
    /// The URL other nodes reach its API at.
    pub address: String,
    /// When it published this.
    pub published_at: DateTime<Utc>,
    /// What it holds, by function name.
    pub functions: BTreeMap<String, FunctionLoad>,
}

/// Whether a node is serving, by its own account and its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Heart-beating.
    Up,
    /// Stopped cleanly.
    Stopped,
    /// Its heartbeats stopped without a clean stop (killed, cut off): what it held is
    /// taken over by the others once its leases lapse.
    Lost,
}

impl NodeState {
    /// The state of `node` at `now`, lost when its last heartbeat is older than `grace`.
    pub fn of(node: &NodeRecord, now: DateTime<Utc>, grace: chrono::TimeDelta) -> NodeState {
        if node.stopped_at.is_some() {
            NodeState::Stopped
        } else if now - node.heartbeat_at > grace {
            NodeState::Lost
        } else {
            NodeState::Up
        }
    }

    /// The wire name: `up`, `stopped` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Stopped => "stopped",
            NodeState::Lost => "lost",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(heartbeat_at: DateTime<Utc>, stopped_at: Option<DateTime<Utc>>) -> NodeRecord {
        NodeRecord {
            id: "n".into(),
            address: "http://127.0.0.1:1".into(),
            runtime: "process".into(),
            version: "0".into(),
            started_at: heartbeat_at,
            heartbeat_at,
            running: 0,
            stopped_at,
        }
    }

    #[test]
    fn a_node_is_lost_once_its_heartbeat_is_older_than_the_grace() {
        let now = Utc::now();
        let grace = chrono::TimeDelta::seconds(30);
        let fresh = node(now - chrono::TimeDelta::seconds(29), None);
        let stale = node(now - chrono::TimeDelta::seconds(31), None);
        let stopped = node(now - chrono::TimeDelta::seconds(300), Some(now));
        assert_eq!(NodeState::of(&fresh, now, grace), NodeState::Up);
        assert_eq!(NodeState::of(&stale, now, grace), NodeState::Lost);
        assert_eq!(NodeState::of(&stopped, now, grace), NodeState::Stopped);
    }
}
