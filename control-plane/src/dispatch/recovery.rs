//! Start-up recovery: what a previous run of the control plane left unfinished is
//! stopped (its processes) and then re-queued or failed (its records), so nothing is
//! silently dropped after a crash. Executions that had started are settled before the
//! server serves; queued ones, however many, are queued again in pages in the
//! background, their inputs read only when they run, so a large backlog does not hold
//! up the start.

use std::sync::Arc;

use uuid::Uuid;

use super::Dispatcher;
use crate::domain::{codes, Execution, Finished};
use crate::registry::catalog::LoadedFunction;
use crate::store::Store;
use crate::store::{StoreError, Unfinished};

/// Executions read per page of the store.
const PAGE: u32 = 10_000;
/// Executions queued again between two yields to the runtime.
const YIELD_EVERY: usize = 256;

/// Why a started execution is settled by a node that did not see it end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interrupted<'a> {
    /// This node stopped while it ran (a crash, a kill, a stop past its grace).
    Restart,
    /// Node `.0` held it and stopped heart-beating; this node took its claim over.
    NodeLost(&'a str),
}

/// What recovery did before serving.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Processes or containers of the earlier run that were stopped.
    pub orphans_stopped: usize,
    /// Started executions started again (their retry policy allowed another attempt).
    pub retried: usize,
    /// Started executions failed with CONTROL_PLANE_RESTARTED.
    pub failed: usize,
    /// Executions the store could not update (a full or failing disk): left for the
    /// next start.
    pub deferred: usize,
}

impl Dispatcher {
    /// Stops the earlier run's instances, then settles the executions this node had
    /// started: retried where their policy allows another attempt, else failed. Queued
    /// ones are queued again in the background; due work (a later `run_at`: delayed
    /// chains, scheduled retries) is taken by the due task at its time, and leases are
    /// kept from now on. Call it once, before serving.
    pub async fn recover(self: &Arc<Self>) -> Result<Recovered, StoreError> {
        let mut recovered = Recovered {
            orphans_stopped: self.runtime.remove_orphans().await,
            ..Recovered::default()
        };
        let mut after = None;
        loop {
            let page = self
                .store
                .list_unfinished(Unfinished::HeldBy(self.settings.owner.clone()), after, PAGE)
                .await?;
            let Some(last) = page.last().map(|execution| execution.id) else {
                break;
            };
            after = Some(last);
            for execution in page {
                self.settle_started(execution, Interrupted::Restart, &mut recovered)
                    .await;
            }
        }
        // Due work (delayed chains, scheduled retries) is the due task's, whenever it
        // was scheduled.
        self.take_due_work();
        self.sweep_expired();
        self.keep_leases();
        if self.settings.poll_results.is_some() {
            self.take_remote_cancels();
            self.take_remote_results();
        }
        let dispatcher = self.clone();
        self.metrics.recovery_active(true);
        tokio::spawn(async move {
            let requeued = dispatcher.requeue_queued().await;
            dispatcher.metrics.recovery_active(false);
            match requeued {
                Ok(requeued) => {
                    tracing::info!(requeued, "queued the earlier run's executions again")
                }
                Err(err) => tracing::error!(
                    "cannot queue the earlier run's executions again: {err}; the next start will"
                ),
            }
        });
        Ok(recovered)
    }

    /// An execution that was starting or running when its runner stopped: run again
    /// where its retry policy allows, else ended `CONTROL_PLANE_RESTARTED` (this node
    /// restarted) or `NODE_LOST` (another node was lost).
    pub(super) async fn settle_started(
        self: &Arc<Self>,
        execution: Execution,
        why: Interrupted<'_>,
        recovered: &mut Recovered,
    ) {
        let function = match self
            .catalog
            .version(&execution.function, execution.version)
            .await
        {
            Ok(function) => function,
            Err(err) => {
                let finished = interrupted(why, format!("cannot run it again: {err}"));
                self.conclude_in_background(execution.id, finished, None);
                recovered.failed += 1;
                return;
            }
        };
        let max_attempts = function.spec().max_attempts();
        if execution.attempt < max_attempts {
            if let Err(err) = self
                .store
                .requeue(execution.id, &self.settings.owner, execution.attempt + 1)
                .await
            {
                // Left as it is for the next start; this one keeps serving.
                tracing::error!(execution = %execution.id, "cannot re-queue the execution: {err}");
                recovered.deferred += 1;
                return;
            }
            recovered.retried += 1;
            self.enqueue_stored(&execution.function, execution.id).await;
            return;
        }
        let stopped = match why {
            Interrupted::Restart => "the control plane stopped".to_owned(),
            Interrupted::NodeLost(node) => format!("node {node} stopped heart-beating"),
        };
        let finished = interrupted(why, format!(
            "{stopped} while attempt {} was {}; it was not run again because its retry policy allows {} attempt(s)",
            execution.attempt,
            execution.status.as_str(),
            max_attempts
        ));
        self.conclude_in_background(execution.id, finished, Some(function));
        recovered.failed += 1;
    }

    /// Queues every queued execution again, a page at a time; answers how many.
    async fn requeue_queued(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut after: Option<Uuid> = None;
        let mut requeued = 0;
        loop {
            let page = self
                .store
                .list_unfinished(Unfinished::Queued, after, PAGE)
                .await?;
            let Some(last) = page.last().map(|execution| execution.id) else {
                return Ok(requeued);
            };
            after = Some(last);
            self.metrics.recovery_requeued(page.len());
            for (index, execution) in page.into_iter().enumerate() {
                requeued += 1;
                self.enqueue_stored(&execution.function, execution.id).await;
                // Queueing a page does not otherwise wait: let the calls being served in
                // the meantime run.
                if index % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Records the end of a recovered execution without holding up the start: while the
    /// store cannot take it, it is kept and written when the store is back. The whole
    /// record is read first (its chains may map its input).
    fn conclude_in_background(
        self: &Arc<Self>,
        id: Uuid,
        finished: Finished,
        function: Option<Arc<LoadedFunction>>,
    ) {
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let mut execution = match dispatcher.store.get_execution(id).await {
                Ok(Some(execution)) => execution,
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(execution = %id, "cannot read the execution to end it: {err}; the next start will");
                    return;
                }
            };
            let ending = dispatcher
                .conclude(&mut execution, finished, function.as_deref(), None)
                .await;
            dispatcher.after(ending, &execution).await;
        });
    }
}

/// The end of an execution interrupted by `why`, saying `message`.
fn interrupted(why: Interrupted<'_>, message: String) -> Finished {
    match why {
        Interrupted::Restart => super::outcome::restarted(message),
        Interrupted::NodeLost(_) => super::outcome::error(codes::NODE_LOST, message, None),
    }
}
