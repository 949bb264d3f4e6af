//! Rate limits at admission: every new execution of a function with a `rate_limit`
//! takes a token of its bucket before it is stored. What happens past the limit depends
//! only on what started it: an API call is refused (429 with `Retry-After`), anything
//! else is admitted to run once its token is free.

use std::time::Duration;

use tokio::time::Instant;

use super::rate::Limit;
use super::{DispatchError, Dispatcher};
use crate::domain::{Execution, Trigger};
use crate::registry::{FunctionSpec, FunctionVersion};

impl Dispatcher {
    /// Applies the `rate_limit` of `spec` to the new `execution`, before it is stored.
    ///
    /// Keyed on its trigger: a caller of `:invoke`/`:enqueue` can come back, so past the
    /// limit it is refused ([`DispatchError::RateLimited`]). Every other trigger (an
    /// event, a chain, a re-drive, and any trigger added later, such as a schedule) has
    /// no caller to tell: it is never dropped for the rate, but delayed, its `run_at`
    /// set to when its token is free. Refused only when as many executions as the
    /// function's `max_queue` already wait for a token (bounded, like its queue).
    ///
    /// With several nodes sharing the store, each enforces a part of the limit in
    /// proportion to the demand it sees (see [`ClusterView::rate_fraction`]).
    ///
    /// [`ClusterView::rate_fraction`]: crate::cluster::ClusterView::rate_fraction
    pub(super) fn pace(
        &self,
        spec: &FunctionSpec,
        execution: &mut Execution,
    ) -> Result<(), DispatchError> {
        let function = execution.function.as_str();
        let Some(limit) = spec.rate_limit else {
            // Not (or no longer) limited: keep no bucket for it.
            self.rates.forget(function);
            return Ok(());
        };
        let now = Instant::now();
        let fraction = self
            .cluster
            .rate_fraction(function, self.rates.demand(function, now));
        let whole = Limit::new(limit.per_second, limit.burst());
        match execution.trigger {
            Trigger::Api => self
                .rates
                .try_take(function, whole, fraction, now)
                .map_err(|wait| {
                    self.metrics.rate_limited(function, "refused");
                    DispatchError::RateLimited {
                        function: function.to_owned(),
                        per_second: limit.per_second,
                        burst: limit.burst(),
                        retry_after: wait,
                    }
                }),
            _ => {
                let backlog = spec.max_queue() as usize;
                let wait = self
                    .rates
                    .reserve(function, whole, fraction, backlog, now)
                    .map_err(|full| DispatchError::QueueFull {
                        function: function.to_owned(),
                        queued: full.owed,
                    })?;
                if wait > Duration::ZERO {
                    self.metrics.rate_limited(function, "delayed");
                    let at = chrono::Duration::from_std(wait)
                        .ok()
                        .and_then(|wait| crate::domain::now().checked_add_signed(wait))
                        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
                    execution.run_at = execution.run_at.max(Some(at));
                }
                Ok(())
            }
        }
    }

    /// Forgets the token buckets of functions not among `functions` (the deployed
    /// ones), so they stay one per deployed function whichever node deleted one.
    pub(super) fn forget_deleted_buckets(&self, functions: &[FunctionVersion]) {
        if self.rates.len() == 0 {
            return;
        }
        let names: std::collections::HashSet<&str> = functions
            .iter()
            .map(|version| version.name.as_str())
            .collect();
        self.rates.retain(|function| names.contains(function));
    }
}
