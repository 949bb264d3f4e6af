//! What other nodes sharing the store tell this one. A cancel taken by a node that does
//! not run the execution is written to the store for the node that holds it, which looks
//! for such requests every [`LOOK_EVERY`] and kills the instance the way a local cancel
//! does. An execution another node ended wakes the callers waiting for it here, when the
//! store has a feed of ended executions (else they poll).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::Dispatcher;
use crate::store::Store;

/// Time between two looks for cancels other nodes took: a remote cancel reaches the
/// instance within it.
pub(super) const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Requests handled per look.
const PAGE: u32 = 100;

impl Dispatcher {
    /// Starts the task that carries out the cancels other nodes took for executions
    /// this node runs, until shutdown.
    pub(super) fn take_remote_cancels(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(LOOK_EVERY) => {}
                    () = this.shutdown.cancelled() => return,
                }
                this.cancel_requested().await;
            }
        });
    }

    /// Starts the task that answers the callers waiting here for executions other
    /// nodes end, from the store's feed, until shutdown.
    pub(super) fn take_remote_results(self: &Arc<Self>) {
        let Some(mut feed) = self.store.finished_feed() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let id = tokio::select! {
                    received = feed.recv() => match received {
                        Ok(id) => id,
                        // Missed ones are found by the waiters' polling.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    () = this.shutdown.cancelled() => return,
                };
                if this.waiters.contains_key(&id) {
                    match this.store.get_execution(id).await {
                        Ok(Some(record)) if record.status.is_terminal() => this.notify(&record),
                        Ok(_) => {}
                        Err(err) => {
                            tracing::debug!(execution = %id, "cannot read an ended execution: {err}")
                        }
                    }
                }
            }
        });
    }

    /// Cancels the runs of this node that another node asked to cancel.
    pub(super) async fn cancel_requested(&self) {
        let requested = match self.store.cancel_requests(&self.settings.owner, PAGE).await {
            Ok(requested) => requested,
            Err(err) => {
                tracing::warn!("cannot look for cancels other nodes took: {err}");
                return;
            }
        };
        for id in requested {
            if let Some(cancel) = self.cancel_handle(id) {
                tracing::info!(execution = %id, "cancelled at another node's request");
                cancel.cancel();
            }
        }
    }

    /// The cancel handle of a run of this node.
    pub(super) fn cancel_handle(&self, id: Uuid) -> Option<tokio_util::sync::CancellationToken> {
        self.active
            .get(&id)
            .map(|run| run.cancel.clone())
            .or_else(|| self.warm_active.get(&id).map(|cancel| cancel.clone()))
    }
}
