//! The dispatcher's side of result destinations: a caller's callback registered before
//! its execution is stored, and the deliveries of every final result, stored with it.

use std::sync::Arc;

use uuid::Uuid;

use super::{DispatchError, Dispatcher};
use crate::destinations::Destinations;
use crate::domain::Execution;
use crate::registry::catalog::LoadedFunction;
use crate::registry::FunctionSpec;
use crate::store::FollowUps;

impl Dispatcher {
    /// Sends final results to their destinations from now on.
    pub fn set_destinations(&self, destinations: Arc<Destinations>) {
        let _ = self.destinations.set(destinations);
    }

    /// Where final results are sent, once set.
    pub fn destinations(&self) -> Option<Arc<Destinations>> {
        self.destinations.get().cloned()
    }

    /// Stores the callback `url` of `execution` (a function of `spec`), if any; answers
    /// whether one was stored.
    pub(super) async fn register_callback(
        &self,
        execution: &Execution,
        spec: &FunctionSpec,
        url: Option<String>,
    ) -> Result<bool, DispatchError> {
        let (Some(url), Some(destinations)) = (url, self.destinations.get()) else {
            return Ok(false);
        };
        let secret = spec.destinations.as_ref().and_then(|d| d.secret.clone());
        destinations
            .register_callback(execution, &url, secret)
            .await?;
        Ok(true)
    }

    /// Forgets the callback of execution `id`, which was not stored.
    pub(super) async fn drop_callback(&self, id: Uuid) {
        if let Some(destinations) = self.destinations.get() {
            destinations.drop_callback(id).await;
        }
    }

    /// The deliveries of the final result of `execution` (a run of `function`), to be
    /// stored with it; no chained children yet.
    pub(super) fn result_deliveries(
        &self,
        execution: &Execution,
        function: Option<&LoadedFunction>,
    ) -> FollowUps {
        match self.destinations.get() {
            Some(destinations) => {
                let spec = function.and_then(|function| function.spec().destinations.as_ref());
                destinations.follow_ups(execution, spec)
            }
            None => FollowUps::default(),
        }
    }

    /// After a result was stored with deliveries to send: wakes the sender.
    pub(super) fn wake_deliveries(&self) {
        if let Some(destinations) = self.destinations.get() {
            destinations.stored();
        }
    }
}
