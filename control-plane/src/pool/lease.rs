//! A [`Lease`]: one call's hold on one warm instance, given back when dropped.

use std::sync::Arc;

use bytes::Bytes;

use super::client::{CallError, InvokeCall};
use super::instance::InstanceHandle;
use super::FunctionPool;
use crate::registry::catalog::LoadedFunction;

/// One call's hold on a warm instance. Dropping it frees the capacity; after a failure
/// that leaves the instance in doubt, [`Lease::discard`] stops the instance instead.
pub struct Lease {
    pool: Arc<FunctionPool>,
    handle: Arc<InstanceHandle>,
    function: Arc<LoadedFunction>,
    cold_start: bool,
    armed: bool,
    broken: bool,
}

impl Lease {
    pub(super) fn new(
        pool: Arc<FunctionPool>,
        handle: Arc<InstanceHandle>,
        function: Arc<LoadedFunction>,
        cold_start: bool,
    ) -> Lease {
        Lease {
            pool,
            handle,
            function,
            cold_start,
            armed: true,
            broken: false,
        }
    }

    /// Files the lines the instance marks with `execution` under that execution's log
    /// until the answer is dropped.
    pub fn attach_log(&self, execution: uuid::Uuid) -> crate::logs::Attached {
        self.handle.log.attach(execution)
    }

    /// The runtime's id of the instance.
    pub fn instance_id(&self) -> &str {
        self.handle.id()
    }

    /// The version the instance runs (the pool's current one when the call got it).
    pub fn function(&self) -> &Arc<LoadedFunction> {
        &self.function
    }

    /// Hides the values of the secrets the instance was started with.
    pub fn masker(&self) -> crate::secrets::Masker {
        self.handle.masker()
    }

    /// Reads how many processes the instance's memory limit has killed so far.
    pub fn oom_kills(&self) -> u64 {
        self.handle.oom_kills()
    }

    /// The instance's OOM kills as last read, without reading them now.
    pub fn oom_kills_known(&self) -> u64 {
        self.handle.oom_kills_known()
    }

    /// Whether the call waited for this instance to start.
    pub fn cold_start(&self) -> bool {
        self.cold_start
    }

    /// Runs the call on the instance: the answer is the watchdog's report.
    pub async fn invoke(&self, call: &InvokeCall<'_>, input: Bytes) -> Result<Bytes, CallError> {
        match self.handle.connections() {
            Some(connections) => connections.invoke(call, input).await,
            None => Err(CallError::Refused {
                status: 503,
                body: "the instance is not started".into(),
            }),
        }
    }

    /// Gives the lease back and stops the instance (it died, hung or was cancelled
    /// mid-call); other calls on it fail or finish as the instance goes down.
    pub fn discard(mut self) {
        self.broken = true;
    }

    /// Forgets the lease without touching the pool (its caller undoes the counts under
    /// the lock it already holds).
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release(self.handle.key, self.broken);
        }
    }
}
