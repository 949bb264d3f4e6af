//! Due work: executions that must not run before their `run_at` (scheduled retries,
//! delayed chains) wait in the store, not in a sleeping task. One task takes them when
//! their time comes, the way queued work is taken, so a crash or restart loses none and
//! each is taken once.

use std::sync::Arc;
use std::time::Duration;

use super::Dispatcher;
use crate::domain::Execution;
use crate::store::Store;

/// Executions taken per round.
const PAGE: u32 = 1_000;
/// Longest sleep between two looks at the store (work another node scheduled, a clock
/// that jumped).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// Pause after the store failed.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Queues `execution` (queued, just stored) for a slot now, or leaves it to the due
    /// task when it has a `run_at`.
    pub(super) fn schedule(self: &Arc<Self>, execution: &Execution) {
        if execution.status != crate::domain::ExecutionStatus::Queued {
            return;
        }
        if execution.run_at.is_some() {
            self.due_wake.notify_one();
        } else {
            let (this, function, id) = (self.clone(), execution.function.clone(), execution.id);
            tokio::spawn(async move { this.enqueue_stored(&function, id).await });
        }
    }

    /// Starts the task that takes due executions until shutdown.
    pub(super) fn take_due_work(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = this.take_due_round().await;
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = this.due_wake.notified() => {}
                    () = this.shutdown.cancelled() => return,
                }
                if this.closing.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
            }
        });
    }

    /// Queues what is due now; answers how long to sleep before the next look.
    async fn take_due_round(self: &Arc<Self>) -> Duration {
        loop {
            match self.store.take_due(crate::domain::now(), PAGE).await {
                Ok(due) => {
                    let full = due.len() == PAGE as usize;
                    for (id, function) in due {
                        self.enqueue_stored(&function, id).await;
                    }
                    if !full {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!("cannot take due executions: {err}");
                    return AFTER_FAILURE;
                }
            }
        }
        match self.store.next_due().await {
            Ok(Some(at)) => (at - crate::domain::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE_LOOK),
            Ok(None) => IDLE_LOOK,
            Err(_) => AFTER_FAILURE,
        }
    }
}
