//! The memory store's node records (heartbeats) and the loads nodes publish, with their
//! times to the millisecond as every store keeps them.

use chrono::{DateTime, Utc};

use super::{ms, State};
use crate::domain::{NodeLoad, NodeRecord};
use crate::store::MAX_NODES;

impl State {
    /// See [`crate::store::Store::heartbeat`].
    pub(super) fn heartbeat(&mut self, node: &NodeRecord) {
        let mut node = node.clone();
        node.started_at = ms(node.started_at);
        node.heartbeat_at = ms(node.heartbeat_at);
        node.stopped_at = node.stopped_at.map(ms);
        self.nodes.insert(node.id.clone(), node);
    }

    /// See [`crate::store::Store::list_nodes`].
    pub(super) fn list_nodes(&self) -> Vec<NodeRecord> {
        self.nodes
            .values()
            .take(MAX_NODES as usize)
            .cloned()
            .collect()
    }

    /// See [`crate::store::Store::publish_load`].
    pub(super) fn publish_load(&mut self, load: &NodeLoad) {
        let mut load = load.clone();
        load.published_at = ms(load.published_at);
        self.loads.insert(load.node_id.clone(), load);
    }

    /// See [`crate::store::Store::peer_loads`].
    pub(super) fn peer_loads(&self, node_id: &str, since: DateTime<Utc>) -> Vec<NodeLoad> {
        self.loads
            .values()
            .filter(|load| load.node_id != node_id && load.published_at >= since)
            .take(MAX_NODES as usize)
            .cloned()
            .collect()
    }
}
