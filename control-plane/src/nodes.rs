//! This node's record in the store: a heartbeat every few seconds saying that it is
//! alive, where its API answers and how busy it is, and a last one when it stops
//! cleanly, so every node (and `GET /v1/nodes`) sees which nodes share the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::domain::NodeRecord;
use crate::store::Store;

/// Time between two heartbeats: well inside [`LEASE`](crate::dispatch::LEASE), after
/// which a silent node is shown lost.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long a node may go without a heartbeat before it is shown lost: as long as a
/// claim holds without renewal, after which the others take over what it held.
pub fn lost_after() -> chrono::TimeDelta {
    crate::dispatch::lease()
}

/// Writes `node`'s heartbeat now and every [`HEARTBEAT_EVERY`] until `stop`; then one
/// last record saying it stopped. A heartbeat the store refuses is logged and tried
/// again at the next beat.
pub fn keep_heartbeat(
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    mut node: NodeRecord,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            node.heartbeat_at = crate::domain::now();
            node.running = u32::try_from(dispatcher.running()).unwrap_or(u32::MAX);
            if let Err(err) = store.heartbeat(&node).await {
                tracing::warn!("cannot record this node's heartbeat: {err}");
            }
            tokio::select! {
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                () = stop.cancelled() => break,
            }
        }
        let now = crate::domain::now();
        node.heartbeat_at = now;
        node.running = 0;
        node.stopped_at = Some(now);
        if let Err(err) = store.heartbeat(&node).await {
            tracing::warn!("cannot record that this node stopped: {err}");
        }
    })
}
