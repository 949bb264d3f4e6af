//! Event age: a queued execution that waited longer than its function's
//! `max_queue_age_ms` (else the server's `--max-queue-age-ms`) since it became due ends
//! `EXPIRED` without running, through the same end as every failed execution (so its
//! `on_failure` chains fire). It is checked when a runner claims it, and a sweep ends
//! those stuck in a queue (behind `max_in_flight`) that no runner reaches in time.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::outcome;
use super::Dispatcher;
use crate::domain::{codes, Execution, ExecutionStatus};
use crate::registry::freshness::CatalogView;
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::store::Store;

/// Time between two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Most executions one sweep ends, all functions together: a large backlog expires
/// over several sweeps instead of holding the store.
const SWEEP_BUDGET: u32 = 500;

impl Dispatcher {
    /// The queue age limit of a function with `spec`: its own, else the server's.
    fn max_queue_age(&self, spec: &FunctionSpec) -> Option<Duration> {
        spec.max_queue_age_ms
            .map(Duration::from_millis)
            .or(self.settings.max_queue_age)
    }

    /// How long `execution` waited past `limit` since it became due, if it did.
    fn overdue(execution: &Execution, limit: Duration) -> Option<Duration> {
        let waited = (crate::domain::now() - execution.due_since())
            .to_std()
            .ok()?;
        (waited > limit).then_some(waited)
    }

    /// Ends `execution`, which this node just claimed, `EXPIRED` when it waited past its
    /// function's queue age: answers `true` then, and it must not start.
    pub(super) async fn end_if_expired(self: &Arc<Self>, execution: &mut Execution) -> bool {
        let limit = match self.catalog.current(&execution.function).await {
            Ok(current) => self.max_queue_age(current.spec()),
            Err(_) => self.settings.max_queue_age,
        };
        let Some(limit) = limit else {
            return false;
        };
        let Some(waited) = Self::overdue(execution, limit) else {
            return false;
        };
        self.expire(execution, waited, limit).await;
        true
    }

    /// Records `execution` (queued, or starting and held by this node) `EXPIRED` with
    /// its chains, and answers whoever waits for it.
    async fn expire(
        self: &Arc<Self>,
        execution: &mut Execution,
        waited: Duration,
        limit: Duration,
    ) {
        let finished = outcome::error(
            codes::EXPIRED,
            format!(
                "waited {} ms to start, past the queue age limit of {} ms; it never ran",
                waited.as_millis(),
                limit.as_millis()
            ),
            None,
        );
        let function = self
            .catalog
            .version(&execution.function, execution.version)
            .await
            .ok();
        tracing::info!(execution = %execution.id, "expired in the queue after {waited:?}");
        let ending = self
            .conclude(execution, finished, function.as_deref(), None)
            .await;
        self.after(ending, execution).await;
    }

    /// Starts the sweep of expired queued executions, every [`SWEEP_EVERY`] until
    /// shutdown. It also forgets the rate-limit buckets of deleted functions.
    pub(super) fn sweep_expired(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut deployed = CatalogView::new(|_| true);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                    () = this.shutdown.cancelled() => return,
                }
                if this.closing.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                match deployed.refresh(&this.catalog).await {
                    Ok(()) => {
                        this.forget_deleted_buckets(deployed.functions());
                        this.sweep_round(deployed.functions()).await;
                    }
                    Err(err) => {
                        tracing::warn!("cannot list the functions to expire old executions: {err}")
                    }
                }
            }
        });
    }

    /// One sweep: for each function with a queue age limit, ends the queued executions
    /// past it, at most [`SWEEP_BUDGET`] in all. Several nodes may sweep at once: the
    /// end is a conditional update from `queued`, so each execution ends once.
    async fn sweep_round(self: &Arc<Self>, functions: &[FunctionVersion]) {
        let mut budget = SWEEP_BUDGET;
        for version in functions {
            let Some(limit) = self.max_queue_age(&version.spec) else {
                continue;
            };
            let Some(due_before) = chrono::Duration::from_std(limit)
                .ok()
                .and_then(|limit| crate::domain::now().checked_sub_signed(limit))
            else {
                continue;
            };
            let overdue = match self
                .store
                .list_overdue(&version.name, due_before, budget)
                .await
            {
                Ok(overdue) => overdue,
                Err(err) => {
                    tracing::warn!(function = %version.name, "cannot list expired executions: {err}");
                    return;
                }
            };
            budget = budget.saturating_sub(u32::try_from(overdue.len()).unwrap_or(u32::MAX));
            for id in overdue {
                self.expire_queued(id, limit).await;
            }
            if budget == 0 {
                return;
            }
        }
    }

    /// Ends queued execution `id` `EXPIRED`, unless it started or ended meanwhile.
    async fn expire_queued(self: &Arc<Self>, id: Uuid, limit: Duration) {
        let mut execution = match self.store.get_execution(id).await {
            Ok(Some(execution)) if execution.status == ExecutionStatus::Queued => execution,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(execution = %id, "cannot read an expired execution: {err}");
                return;
            }
        };
        let Some(waited) = Self::overdue(&execution, limit) else {
            return;
        };
        let (_, load) = self.admission.remove_queued(&execution.function, id);
        self.metrics
            .set_load(&execution.function, load.queued, load.running);
        self.expire(&mut execution, waited, limit).await;
    }
}
