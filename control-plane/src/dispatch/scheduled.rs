//! Executions started by a schedule's tick: admitted like any other, and stored in the
//! same transaction as the move of the schedule's cursor, so each tick fires once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::accept::Storing;
use super::{DispatchError, Dispatcher};
use crate::domain::{Execution, Trigger};
use crate::registry::catalog::LoadedFunction;
use crate::schedule::{idempotency_key, ScheduleSpec};
use crate::store::ScheduleAdvance;

/// One tick of one schedule to fire.
#[derive(Debug, Clone, Copy)]
pub struct TickFire<'a> {
    /// The function's current version.
    pub function: &'a LoadedFunction,
    /// The schedule.
    pub schedule: &'a ScheduleSpec,
    /// The schedule's key.
    pub key: &'a str,
    /// Where the schedule's cursor is.
    pub from: DateTime<Utc>,
    /// The tick.
    pub tick: DateTime<Utc>,
}

impl Dispatcher {
    /// Fires `fire.tick`: a queued execution with trigger `schedule`, the tick as its
    /// `scheduled_for` and in its idempotency key (`schedule:KEY:TICK`), stored only if the cursor is still at
    /// `fire.from`. `None` when another node (or an earlier pass) fired it.
    pub async fn fire_tick(
        self: &Arc<Self>,
        fire: TickFire<'_>,
    ) -> Result<Option<Uuid>, DispatchError> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(DispatchError::ShuttingDown);
        }
        let version = &fire.function.version;
        let mut execution =
            Execution::queued(version, fire.schedule.input.clone(), Trigger::Schedule);
        execution.begin_trace(None, None);
        execution.idempotency_key = Some(idempotency_key(fire.key, fire.tick));
        execution.scheduled_for = Some(fire.tick);
        let advance = ScheduleAdvance {
            function: version.name.clone(),
            key: fire.key.to_owned(),
            from: Some(fire.from),
            to: fire.tick,
        };
        match self
            .admit(
                fire.function.spec(),
                &mut execution,
                Storing::Tick(&advance),
            )
            .await
        {
            Ok(()) => {
                self.metrics.schedule_fired(&version.name);
                Ok(Some(execution.id))
            }
            Err(DispatchError::TickTaken) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
