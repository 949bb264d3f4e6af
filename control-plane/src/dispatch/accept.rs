//! Taking in a new execution: admitted against its function's limits (`max_in_flight`,
//! `max_queue`) and its `rate_limit`, stored durably, then started or queued (or, when
//! the rate limit delays it, left to the due task). Calls, events, re-drives and
//! schedule ticks all come in this way, so none of them can exceed a function's queue
//! or rate.

use std::sync::Arc;

use uuid::Uuid;

use super::admission::Admit;
use super::{DispatchError, Dispatcher};
use crate::domain::Execution;
use crate::registry::FunctionSpec;
use crate::store::{Redrive, ScheduleAdvance, Store};

/// How an admitted execution is stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Storing<'a> {
    /// A new execution.
    New,
    /// The re-drive of the failed execution with this id (stored with the mark that it
    /// was re-driven, in one transaction).
    Redrive(Uuid),
    /// A schedule's tick: stored with the move of the schedule's cursor, in one
    /// transaction, only if the cursor is where the move expects it.
    Tick(&'a ScheduleAdvance),
}

impl Dispatcher {
    /// Admits `execution` of a function with `spec`, stores it as `storing` says, then
    /// starts or queues it. On any failure nothing is stored and the slot is given back.
    /// Past the rate limit an API call is refused and anything else gets a `run_at`
    /// (see [`Dispatcher::pace`]).
    pub(super) async fn admit(
        self: &Arc<Self>,
        spec: &FunctionSpec,
        execution: &mut Execution,
        storing: Storing<'_>,
    ) -> Result<(), DispatchError> {
        let since = crate::telemetry::started();
        self.pace(spec, execution)?;
        let admitted = self.admit_paced(spec, execution, storing, since).await;
        if admitted.is_err() && spec.rate_limit.is_some() {
            // Not stored: its token is free for the next execution.
            self.rates.give_back(&execution.function);
        }
        admitted
    }

    /// [`Dispatcher::admit`] once the rate limit let `execution` in (`since`: when its
    /// admission began).
    async fn admit_paced(
        self: &Arc<Self>,
        spec: &FunctionSpec,
        execution: &Execution,
        storing: Storing<'_>,
        since: Option<std::time::SystemTime>,
    ) -> Result<(), DispatchError> {
        if execution.run_at.is_some() {
            // Delayed: it waits in the store for its time, as a delayed chain does, and
            // the due task queues it then.
            self.store_admitted(execution, storing).await?;
            crate::telemetry::admitted(since, execution);
            self.due_wake.notify_one();
            return Ok(());
        }
        let function = &execution.function;
        let elsewhere = self.cluster.elsewhere(function).queued as usize;
        let (admit, load) =
            self.admission
                .try_admit(function, spec.max_in_flight(), spec.max_queue(), elsewhere);
        self.metrics.set_load(function, load.queued, load.running);
        let admit = admit.map_err(|full| DispatchError::QueueFull {
            function: function.clone(),
            queued: full.queued,
        })?;
        if let Err(err) = self.store_admitted(execution, storing).await {
            let (start, _) = self.admission.release(function, admit);
            self.start_queued(function, start);
            return Err(err);
        }
        crate::telemetry::admitted(since, execution);
        match admit {
            Admit::Run => {
                tokio::spawn(self.clone().run(
                    function.clone(),
                    execution.id,
                    Some(execution.clone()),
                ));
            }
            Admit::Queue => {
                let (start, load) = self.admission.queue_reserved(function, execution.id);
                self.metrics.set_load(function, load.queued, load.running);
                self.start_queued(function, start);
            }
        }
        Ok(())
    }

    async fn store_admitted(
        &self,
        execution: &Execution,
        storing: Storing<'_>,
    ) -> Result<(), DispatchError> {
        match storing {
            Storing::New => Ok(self.store.insert_execution(execution).await?),
            Storing::Redrive(failed) => match self.store.redrive(failed, execution).await? {
                Redrive::Done => Ok(()),
                Redrive::Already(by) => Err(DispatchError::AlreadyRedriven { failed, by }),
                Redrive::NotFailed => Err(DispatchError::NotFailed(failed, "not failed")),
            },
            Storing::Tick(advance) => {
                if self
                    .store
                    .advance_schedule(advance, Some(execution))
                    .await?
                {
                    Ok(())
                } else {
                    Err(DispatchError::TickTaken)
                }
            }
        }
    }
}
