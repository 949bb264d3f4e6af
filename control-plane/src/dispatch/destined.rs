//! The dispatcher's side of result destinations: a caller's callback registered before
//! its execution is stored, and every final result handed to [`Destinations`].

use std::sync::Arc;

use uuid::Uuid;

use super::{DispatchError, Dispatcher};
use crate::destinations::Destinations;
use crate::domain::Execution;
use crate::registry::catalog::LoadedFunction;
use crate::registry::FunctionSpec;

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

    /// Hands the final result of `execution` to its destinations.
    pub(super) async fn deliver_result(
        &self,
        execution: &Execution,
        function: Option<&LoadedFunction>,
    ) {
        if let Some(destinations) = self.destinations.get() {
            let spec = function.and_then(|function| function.spec().destinations.as_ref());
            destinations.finished(execution, spec).await;
        }
    }
}
