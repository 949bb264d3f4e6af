//! Cancel: a queued execution leaves its queue and is recorded cancelled, a running
//! one has its instance killed; a cancel that loses the race to the result is a
//! conflict.

use std::sync::Arc;

use uuid::Uuid;

use super::{finish, outcome, DispatchError, Dispatcher};
use crate::domain::{Execution, ExecutionStatus};
use crate::store::Store;

impl Dispatcher {
    /// Cancels an execution: a queued one leaves its queue, a running one has its
    /// instance killed. Answers the final record.
    pub async fn cancel(self: &Arc<Self>, id: Uuid) -> Result<Execution, DispatchError> {
        let execution = self
            .store
            .get_execution(id)
            .await?
            .ok_or(DispatchError::ExecutionNotFound(id))?;
        if execution.status.is_terminal() {
            return Err(DispatchError::AlreadyFinished(
                id,
                execution.status.as_str(),
            ));
        }
        let active_cancel = self
            .active
            .get(&id)
            .map(|run| run.cancel.clone())
            .or_else(|| self.warm_active.get(&id).map(|cancel| cancel.clone()));
        if let Some(cancel) = active_cancel {
            cancel.cancel();
            return cancelled_or_finished(self.wait_final(id).await?);
        }
        let (removed, load) = self.admission.remove_queued(&execution.function, id);
        self.metrics
            .set_load(&execution.function, load.queued, load.running);
        let finished = outcome::cancelled("before it started");
        let function = self
            .catalog
            .version(&execution.function, execution.version)
            .await
            .ok();
        let mut done = execution;
        if self
            .conclude(&mut done, finished, function.as_deref(), None)
            .await
            == finish::Ending::Final(true)
        {
            self.notify(&done);
            return Ok(done);
        }
        if !removed {
            // It started in the meantime: cancel the run instead.
            if let Some(cancel) = self.active.get(&id).map(|run| run.cancel.clone()) {
                cancel.cancel();
            }
        }
        cancelled_or_finished(self.wait_final(id).await?)
    }
}

/// The record of a cancelled execution, or the conflict of one that finished otherwise
/// first (its result came before the cancel).
fn cancelled_or_finished(record: Execution) -> Result<Execution, DispatchError> {
    if record.status == ExecutionStatus::Cancelled {
        Ok(record)
    } else {
        Err(DispatchError::AlreadyFinished(
            record.id,
            record.status.as_str(),
        ))
    }
}
