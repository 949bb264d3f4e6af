//! Start-up recovery: what a previous run of the control plane left unfinished is
//! stopped (its processes) and then re-queued or failed (its records), so nothing is
//! silently dropped after a crash.

use std::sync::Arc;

use super::Dispatcher;
use crate::store::{codes, ExecutionError, ExecutionStatus, Finished, StoreError};

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
}

impl Dispatcher {
    /// Stops the earlier run's instances, then re-queues queued executions, retries
    /// running ones whose policy allows another attempt and fails the others. Call it
    /// once, before serving.
    pub async fn recover(self: &Arc<Self>) -> Result<Recovered, StoreError> {
        let mut recovered = Recovered {
            orphans_stopped: self.runtime.remove_orphans().await,
            ..Recovered::default()
        };
        for execution in self.store.list_unfinished().await? {
            let max_in_flight;
            let max_attempts;
            match self
                .catalog
                .version(&execution.function, execution.version)
                .await
            {
                Ok(function) => {
                    max_in_flight = function.spec().max_in_flight();
                    max_attempts = function.spec().max_attempts();
                }
                Err(err) => {
                    let finished = Finished {
                        status: ExecutionStatus::Error,
                        output: None,
                        error: Some(ExecutionError::new(
                            codes::CONTROL_PLANE_RESTARTED,
                            format!("cannot resume after a restart: {err}"),
                        )),
                        exit_code: None,
                        duration_ms: None,
                        finished_at: crate::store::now(),
                    };
                    self.store.finish_execution(execution.id, &finished).await?;
                    recovered.failed += 1;
                    continue;
                }
            }
            let requeue = match execution.status {
                ExecutionStatus::Queued => {
                    recovered.requeued += 1;
                    true
                }
                _ if execution.attempt < max_attempts => {
                    self.store
                        .requeue(execution.id, execution.attempt + 1)
                        .await?;
                    recovered.retried += 1;
                    true
                }
                _ => {
                    let finished = Finished {
                        status: ExecutionStatus::Error,
                        output: None,
                        error: Some(ExecutionError::new(
                            codes::CONTROL_PLANE_RESTARTED,
                            format!(
                                "the control plane stopped while attempt {} was {}; it was not run again because its retry policy allows {} attempt(s)",
                                execution.attempt,
                                execution.status.as_str(),
                                max_attempts
                            ),
                        )),
                        exit_code: None,
                        duration_ms: None,
                        finished_at: crate::store::now(),
                    };
                    self.store.finish_execution(execution.id, &finished).await?;
                    self.metrics.finished(
                        &execution.function,
                        ExecutionStatus::Error.as_str(),
                        None,
                    );
                    recovered.failed += 1;
                    false
                }
            };
            if requeue {
                let (start, load) = self.admission.queue_recovered(
                    &execution.function,
                    execution.id,
                    max_in_flight,
                );
                self.metrics
                    .set_load(&execution.function, load.queued, load.running);
                self.start_queued(&execution.function, start);
            }
        }
        Ok(recovered)
    }
}
