//! How a [`MemoryStore`] is made and how its calls run: each under its one lock, refused
//! first while a fault is injected ([`MemoryStore::set_fault`]).

use std::sync::{Mutex, MutexGuard};

use super::{MemoryStore, State};
use crate::store::{Fault, StoreError};

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("fault", &*lock(&self.fault))
            .finish()
    }
}

/// Locks `mutex`, even if a panicking test poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes later calls fail with `fault` until it is cleared with `None`:
    /// [`Fault::Full`] refuses writes only (reads go on, as on a full disk); any other
    /// fault refuses every call, [`crate::store::Store::ping`] included.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.fault) = fault;
    }

    /// The error a call answers under the current fault, if any.
    fn refusal(&self, operation: &'static str, write: bool) -> Result<(), StoreError> {
        match *lock(&self.fault) {
            None => Ok(()),
            Some(Fault::Full) if !write => Ok(()),
            Some(fault) => Err(StoreError::database(
                operation,
                fault,
                format!("injected fault: {fault:?}"),
            )),
        }
    }

    /// Runs `work`, a read named `operation`, unless a fault refuses it.
    pub(super) fn read<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&State) -> T,
    ) -> Result<T, StoreError> {
        self.refusal(operation, false)?;
        Ok(work(&lock(&self.state)))
    }

    /// Runs `work`, a write named `operation` that may refuse itself, unless a fault
    /// refuses it first.
    pub(super) fn write<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.refusal(operation, true)?;
        work(&mut lock(&self.state))
    }

    /// [`MemoryStore::write`] of `work`, a write that cannot refuse itself.
    pub(super) fn apply<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut State) -> T,
    ) -> Result<T, StoreError> {
        self.write(operation, |state| Ok(work(state)))
    }
}
