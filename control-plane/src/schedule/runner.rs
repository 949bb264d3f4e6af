//! The scheduler loop every node runs: just after each whole second it reads the
//! functions with schedules and their cursors, and fires the ticks that are due through
//! the dispatcher. Nodes race freely: a tick's execution is stored only with the move of
//! its cursor from where this node read it, so exactly one node fires each tick.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{ticks, ScheduleSpec};
use crate::dispatch::{DispatchError, Dispatcher, TickFire};
use crate::registry::catalog::{Catalog, RegistryError};
use crate::registry::freshness::CatalogView;
use crate::registry::FunctionVersion;
use crate::store::{CursorScope, ScheduleAdvance, Store, StoreError};

/// How long after a whole second a pass starts (ticks are whole seconds; a little
/// later keeps a slightly slow clock from finding the tick not yet due).
const AFTER_SECOND: Duration = Duration::from_millis(20);

/// Why a pass, or one schedule of it, failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The function could not be loaded.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The tick's execution was refused.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

/// The loop's state: the functions that have schedules, read again when the catalog
/// changes.
struct Scheduler {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    dispatcher: Arc<Dispatcher>,
    /// The functions that have schedules.
    functions: CatalogView,
}

/// Runs the scheduler until `stop` is cancelled.
pub fn start(
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut scheduler = Scheduler {
        store,
        catalog,
        dispatcher,
        functions: CatalogView::new(|version| !version.spec.schedules.is_empty()),
    };
    tokio::spawn(async move {
        loop {
            let into_second = Utc::now().timestamp_subsec_millis();
            let wait = Duration::from_millis(u64::from(1_000 - into_second.min(999)));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait + AFTER_SECOND) => {}
            }
            if let Err(err) = scheduler.pass(Utc::now(), &stop).await {
                tracing::warn!("schedules: {err}");
            }
        }
    })
}

impl Scheduler {
    /// One pass: every schedule of every function, at `now`.
    async fn pass(
        &mut self,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> Result<(), SchedulerError> {
        self.functions.refresh(&self.catalog).await?;
        if self.functions.functions().is_empty() {
            return Ok(());
        }
        let cursors: HashMap<(String, String), DateTime<Utc>> = self
            .store
            .list_schedule_cursors()
            .await?
            .into_iter()
            .map(|cursor| ((cursor.function, cursor.key), cursor.last_tick))
            .collect();
        self.drop_stale(&cursors).await?;
        for version in self.functions.functions() {
            for schedule in &version.spec.schedules {
                if stop.is_cancelled() {
                    return Ok(());
                }
                let key = schedule.key();
                let last = cursors.get(&(version.name.clone(), key.clone())).copied();
                if let Err(err) = self.one(version, schedule, &key, last, now).await {
                    tracing::warn!(function = %version.name, cron = %schedule.cron, "schedule: {err}");
                }
            }
        }
        Ok(())
    }

    /// Deletes the cursors of schedules a function no longer has. Only a cursor that
    /// has not moved since the function's current version was deployed goes: one that
    /// moved since is in use by a node that knows a newer version than this one.
    async fn drop_stale(
        &self,
        cursors: &HashMap<(String, String), DateTime<Utc>>,
    ) -> Result<(), SchedulerError> {
        let versions: HashMap<&str, &FunctionVersion> = self
            .functions
            .functions()
            .iter()
            .map(|version| (version.name.as_str(), version))
            .collect();
        let mut stale: HashMap<&str, Vec<String>> = HashMap::new();
        for ((function, key), last) in cursors {
            let Some(version) = versions.get(function.as_str()) else {
                continue;
            };
            let current = version.spec.schedules.iter().any(|s| s.key() == *key);
            if !current && *last < version.created_at {
                stale.entry(function).or_default().push(key.clone());
            }
        }
        for (function, keys) in stale {
            self.store
                .delete_schedule_cursors(function, CursorScope::Keys(&keys))
                .await?;
        }
        Ok(())
    }

    /// Fires (or passes over) what is due of one schedule.
    async fn one(
        &self,
        version: &FunctionVersion,
        schedule: &ScheduleSpec,
        key: &str,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let mut from = match last {
            Some(last) => last,
            // A new schedule starts from when it was deployed: no tick before it fires.
            None if self.advance(version, key, None, version.created_at).await? => {
                version.created_at
            }
            // Another node started it: the next pass reads its cursor.
            None => return Ok(()),
        };
        let parsed = schedule.parse().map_err(|err| {
            RegistryError::Invalid(vec![format!("stored schedule is invalid: {err}")])
        })?;
        let due = ticks::due(&parsed, from, now);
        if !version.spec.enabled {
            // Paused: the ticks pass by unfired, also with catch-up.
            if let Some(latest) = due.fire.last() {
                self.advance(version, key, Some(from), *latest).await?;
            }
            return Ok(());
        }
        if due.skipped && schedule.catch_up {
            tracing::warn!(
                function = %version.name, cron = %schedule.cron,
                "schedule missed more than {} ticks; the older ones are dropped",
                super::MAX_CATCH_UP
            );
        }
        let function = self.catalog.version(&version.name, version.version).await?;
        for tick in due.fire {
            let fire = TickFire {
                function: &function,
                schedule,
                key,
                from,
                tick,
            };
            if !self.fire(version, fire).await? {
                return Ok(());
            }
            from = tick;
        }
        Ok(())
    }

    /// Fires one tick; `false` when the schedule's later ticks must wait for the next
    /// pass (another node moved its cursor, the server is stopping).
    async fn fire(
        &self,
        version: &FunctionVersion,
        fire: TickFire<'_>,
    ) -> Result<bool, SchedulerError> {
        let (from, tick, key) = (fire.from, fire.tick, fire.key);
        match self.dispatcher.fire_tick(fire).await {
            Ok(fired) => Ok(fired.is_some()),
            // Fired already though the cursor says not (it was deleted and made again):
            // the cursor catches up.
            Err(DispatchError::Store(StoreError::DuplicateIdempotencyKey(_))) => {
                Ok(self.advance(version, key, Some(from), tick).await?)
            }
            Err(DispatchError::QueueFull { .. }) => {
                tracing::warn!(function = %version.name, %tick, "schedule tick skipped: the function's queue is full");
                Ok(self.advance(version, key, Some(from), tick).await?)
            }
            Err(DispatchError::ShuttingDown) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Moves a cursor without firing.
    async fn advance(
        &self,
        version: &FunctionVersion,
        key: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let advance = ScheduleAdvance {
            function: version.name.clone(),
            key: key.to_owned(),
            from,
            to,
        };
        self.store.advance_schedule(&advance, None).await
    }
}
