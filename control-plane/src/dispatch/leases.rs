//! Claims and their leases: every execution this node runs is claimed in the store with
//! a lease that a background task renews; executions whose owner stopped renewing are
//! reclaimed and settled like the ones a restart finds (run again under their retry
//! policy, else ended `NODE_LOST`).

use std::sync::Arc;
use std::time::Duration;

use super::recovery::{Interrupted, Recovered};
use super::Dispatcher;
use crate::domain::Claim;
use crate::store::Store;

/// How long a claim holds without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// Time between two renewals (and two looks for lapsed claims of other owners).
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Lapsed executions reclaimed per round.
const RECLAIM_PAGE: u32 = 100;
/// Queued executions made due per round when the store is shared.
const STALE_PAGE: u32 = 1_000;

impl Dispatcher {
    /// A claim for this node, valid for [`LEASE`] from now.
    pub(super) fn claim(&self) -> Claim {
        Claim {
            owner: self.settings.owner.clone(),
            lease_until: crate::domain::now() + lease(),
            max_in_flight: None,
        }
    }

    /// Starts the task that renews this node's leases and reclaims lapsed ones until
    /// shutdown.
    pub(super) fn keep_leases(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(RENEW_EVERY) => {}
                    () = this.shutdown.cancelled() => return,
                }
                let until = crate::domain::now() + lease();
                if let Err(err) = this.store.renew_leases(&this.settings.owner, until).await {
                    tracing::warn!("cannot renew the leases of running executions: {err}");
                }
                this.reclaim_lapsed().await;
                if this.settings.poll_results.is_some() {
                    this.adopt_stale_at(crate::domain::now()).await;
                }
            }
        });
    }

    /// When nodes share the store: queued executions nobody has claimed for two leases
    /// (a minute) may wait in the memory of a node that is gone, so they are made due
    /// and the due work of any node (this one's is woken) takes them; the claim lets
    /// one run each. A backlog that a live node is working through is shared the same
    /// way.
    pub(super) async fn adopt_stale_at(self: &Arc<Self>, now: chrono::DateTime<chrono::Utc>) {
        let before = now - lease() - lease();
        match self.store.make_stale_due(before, now, STALE_PAGE).await {
            Ok(0) => {}
            Ok(made) => {
                tracing::info!(made, "queued executions unclaimed for a minute were made due; a node holding them may be gone");
                self.due_wake.notify_one();
            }
            Err(err) => tracing::warn!("cannot look for queued executions left unclaimed: {err}"),
        }
    }

    /// Takes over and settles executions whose owner's lease lapsed.
    async fn reclaim_lapsed(self: &Arc<Self>) {
        self.reclaim_lapsed_at(crate::domain::now()).await;
    }

    /// [`Dispatcher::reclaim_lapsed`] as if it were `now`.
    pub(super) async fn reclaim_lapsed_at(self: &Arc<Self>, now: chrono::DateTime<chrono::Utc>) {
        let owner = &self.settings.owner;
        let lapsed = match self.store.list_expired(owner, now, RECLAIM_PAGE).await {
            Ok(lapsed) => lapsed,
            Err(err) => {
                tracing::warn!("cannot look for lapsed claims: {err}");
                return;
            }
        };
        let mut settled = Recovered::default();
        for execution in lapsed {
            let Some(from) = execution.owner.clone() else {
                continue;
            };
            match self
                .store
                .reclaim(execution.id, &from, now, &self.claim())
                .await
            {
                Ok(true) => {
                    tracing::warn!(execution = %execution.id, owner = %from, "reclaimed an execution whose owner stopped renewing its lease");
                    let why = Interrupted::NodeLost(&from);
                    self.settle_started(execution, why, &mut settled).await;
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(execution = %execution.id, "cannot reclaim: {err}"),
            }
        }
    }
}

/// [`LEASE`] as a time span.
pub fn lease() -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(LEASE).unwrap_or(chrono::TimeDelta::MAX)
}
