//! Cancel: a queued execution leaves its queue and is recorded cancelled, a running
//! one has its instance killed (by the node that runs it, when that is another); a
//! cancel that loses the race to the result is a conflict.

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
        if let Some(cancel) = self.cancel_handle(id) {
            cancel.cancel();
            return cancelled_or_finished(self.wait_final(id).await?);
        }
        let held_elsewhere = execution
            .owner
            .as_deref()
            .is_some_and(|owner| owner != self.settings.owner);
        if held_elsewhere && execution.status != ExecutionStatus::Queued {
            // Another node runs it and kills the instance when it sees the request (one
            // that ended meanwhile is answered as it ended).
            self.store.request_cancel(id).await?;
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
