//! Start-up recovery: what a previous run of the control plane left unfinished is
//! stopped (its processes) and then re-queued or failed (its records), so nothing is
//! silently dropped after a crash.

use std::sync::Arc;

use super::Dispatcher;
use crate::store::{codes, ExecutionError, ExecutionStatus, Finished, StoreError};

/// The failure of an execution the restart cannot resume.
fn restarted(message: String) -> Finished {
    Finished {
        status: ExecutionStatus::Error,
        output: None,
        error: Some(ExecutionError::new(codes::CONTROL_PLANE_RESTARTED, message)),
        exit_code: None,
        duration_ms: None,
        finished_at: crate::store::now(),
        dead_letter: false,
    }
}

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Processes or containers of the earlier run that were stopped.
    pub orphans_stopped: usize,
    /// Queued executions queued again.
    pub requeued: usize,
    /// Running executions started again (their retry policy allowed another attempt).
    pub retried: usize,
    /// Running executions failed with CONTROL_PLANE_RESTARTED.
    pub failed: usize,
    /// Executions the store could not update (a full or failing disk): left for the
    /// next start.
    pub deferred: usize,
}

impl Dispatcher {
    /// Stops the earlier run's instances, then re-queues queued executions (those with
    /// a later `run_at`, delayed chains and scheduled retries, at their time), retries
    /// running ones whose policy allows another attempt and fails the others. Call it
    /// once, before serving.
    pub async fn recover(self: &Arc<Self>) -> Result<Recovered, StoreError> {
        let mut recovered = Recovered {
            orphans_stopped: self.runtime.remove_orphans().await,
            ..Recovered::default()
        };
        let now = crate::store::now();
        for mut execution in self.store.list_unfinished().await? {
            let function = match self
                .catalog
                .version(&execution.function, execution.version)
                .await
            {
                Ok(function) => function,
                Err(err) => {
                    let finished = restarted(format!("cannot resume after a restart: {err}"));
                    self.conclude_in_background(execution, finished, None);
                    recovered.failed += 1;
                    continue;
                }
            };
            let max_attempts = function.spec().max_attempts();
            match execution.status {
                ExecutionStatus::Queued => recovered.requeued += 1,
                _ if execution.attempt < max_attempts => {
                    if let Err(err) = self
                        .store
                        .requeue(execution.id, execution.attempt + 1)
                        .await
                    {
                        // Left as it is for the next start; this one keeps serving.
                        tracing::error!(execution = %execution.id, "cannot re-queue the execution: {err}");
                        recovered.deferred += 1;
                        continue;
                    }
                    execution.status = ExecutionStatus::Queued;
                    execution.run_at = None;
                    recovered.retried += 1;
                }
                _ => {
                    let finished = restarted(format!(
                        "the control plane stopped while attempt {} was {}; it was not run again because its retry policy allows {} attempt(s)",
                        execution.attempt,
                        execution.status.as_str(),
                        max_attempts
                    ));
                    self.conclude_in_background(execution, finished, Some(function));
                    recovered.failed += 1;
                    continue;
                }
            }
            if execution.run_at.is_some_and(|run_at| run_at > now) {
                // A delayed chain or a scheduled retry: it runs at its time.
                self.schedule(&execution);
            } else {
                self.enqueue_stored(&execution.function, execution.id).await;
            }
        }
        Ok(recovered)
    }

    /// Records the end of a recovered execution without holding up the start: while the
    /// store cannot take it, it is kept and written when the store is back.
    fn conclude_in_background(
        self: &Arc<Self>,
        mut execution: crate::store::Execution,
        finished: Finished,
        function: Option<Arc<crate::registry::catalog::LoadedFunction>>,
    ) {
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let ending = dispatcher
                .conclude(&mut execution, finished, function.as_deref(), None)
                .await;
            dispatcher.after(ending, &execution).await;
        });
    }
}
