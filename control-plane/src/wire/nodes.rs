//! `/v1/nodes`: the control-plane nodes sharing the store, as each last reported.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{NodeRecord, NodeState};

/// A node as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Its id: the owner of the executions it claims.
    pub id: String,
    /// `up`, `stopped` (cleanly) or `lost` (no heartbeat for longer than a lease).
    pub state: String,
    /// The URL its API answers on.
    pub address: String,
    /// The runtimes it runs functions with.
    pub runtime: String,
    /// The Gantry version it runs.
    pub version: String,
    /// Executions it was running at its last heartbeat.
    pub running: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// When it stopped cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
}

impl NodeInfo {
    /// `record` as seen at `now`, lost past `grace` without a heartbeat.
    pub fn new(record: NodeRecord, now: DateTime<Utc>, grace: chrono::TimeDelta) -> NodeInfo {
        let state = NodeState::of(&record, now, grace).as_str().to_owned();
        NodeInfo {
            id: record.id,
            state,
            address: record.address,
            runtime: record.runtime,
            version: record.version,
            running: record.running,
            started_at: record.started_at,
            heartbeat_at: record.heartbeat_at,
            stopped_at: record.stopped_at,
        }
    }
}

/// The answer of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeList {
    /// The id of the node that answered.
    pub this_node: String,
    /// Every node, by id.
    pub nodes: Vec<NodeInfo>,
}
