//! [`WriteBehind`]: a decorator over any [`Store`] that records finished executions
//! without making their caller wait, keeping each readable and retried until the store
//! underneath accepts it.
//!
//! A sync `:invoke` of a warm function answers as soon as its result is known; its
//! record is written afterwards. Nobody was promised durability for it before the
//! answer, but it must not be lost to a passing fault (a full disk, a failing file
//! system): a refused write is kept in memory, readable, and tried again with backoff
//! until the store takes it or the server stops.

#[path = "write_behind_delegate.rs"]
mod delegate;
#[cfg(test)]
#[path = "write_behind_tests.rs"]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Fault, FollowUps, Store, StoreError};
use crate::domain::Execution;

/// First pause before a refused record is written again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between those attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a close waits for the last attempts once its grace is over.
const LAST_ATTEMPT: Duration = Duration::from_secs(5);
/// Records written behind and not yet taken beyond which [`WriteBehind::is_full`]: each
/// holds its result in memory, so while the store refuses them their number must stay
/// bounded.
pub const DEFAULT_MAX_UNWRITTEN: usize = 1024;

/// A [`Store`] that answers every call from `inner`, except that it also holds records
/// not written yet (warm calls in flight, finished ones being written):
/// [`Store::get_execution`] answers those first.
pub struct WriteBehind {
    inner: Arc<dyn Store>,
    shared: Arc<Shared>,
    max_unwritten: usize,
}

/// What the writing tasks share with the decorator.
struct Shared {
    /// Records readable before `inner` has them.
    held: DashMap<Uuid, Execution>,
    /// Records handed to [`WriteBehind::write_behind`] and not settled yet.
    pending: AtomicUsize,
    /// Woken each time a pending record is settled.
    settled: Notify,
    /// Cancelled by [`WriteBehind::close`] once its grace is over: refused records are
    /// then given up.
    stopped: CancellationToken,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("held", &self.shared.held.len())
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl WriteBehind {
    /// Wraps `inner`, full at [`DEFAULT_MAX_UNWRITTEN`] records.
    pub fn new(inner: Arc<dyn Store>) -> WriteBehind {
        WriteBehind::bounded(inner, DEFAULT_MAX_UNWRITTEN)
    }

    /// Wraps `inner`, full once `max_unwritten` records wait for it.
    pub fn bounded(inner: Arc<dyn Store>, max_unwritten: usize) -> WriteBehind {
        WriteBehind {
            inner,
            max_unwritten,
            shared: Arc::new(Shared {
                held: DashMap::new(),
                pending: AtomicUsize::new(0),
                settled: Notify::new(),
                stopped: CancellationToken::new(),
            }),
        }
    }

    /// The store underneath.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Makes `execution` (a warm call in flight, not stored) readable through
    /// [`Store::get_execution`] without writing it.
    pub fn hold(&self, execution: &Execution) {
        self.shared.held.insert(execution.id, execution.clone());
    }

    /// Stores `execution` (new, usually finished) with what its result sets off
    /// (`follow`, in the same transaction) without waiting: the executions are readable
    /// at once and written by a background task, again and again while the store is
    /// unavailable, until it takes them or [`WriteBehind::close`] gives up.
    pub fn write_behind(&self, execution: Execution, follow: FollowUps) {
        for record in std::iter::once(&execution).chain(&follow.children) {
            self.shared.held.insert(record.id, record.clone());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(execution = %execution.id, "no runtime to store the record on");
            forget(&self.shared, &execution, &follow.children);
            return;
        };
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        let (inner, shared) = (Arc::clone(&self.inner), Arc::clone(&self.shared));
        runtime.spawn(async move {
            write_until_taken(&*inner, &shared, &execution, &follow).await;
            forget(&shared, &execution, &follow.children);
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            shared.settled.notify_waiters();
        });
    }

    /// Records written behind and not yet taken by the store.
    pub fn unwritten(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Whether so many records wait for the store that no more should be made: callers
    /// refuse new work that would be written behind until the store catches up.
    pub fn is_full(&self) -> bool {
        self.unwritten() >= self.max_unwritten
    }

    /// Waits up to `patience` until [`WriteBehind::is_full`] is no longer true. A store
    /// that is only slower than the calls gives each waiting caller room within moments
    /// (latency grows, nothing is refused); one that refuses every write does not, and
    /// the caller is told how many records still wait for it.
    pub async fn wait_for_room(&self, patience: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + patience;
        if self.settle_until(deadline, |me| !me.is_full()).await {
            Ok(())
        } else {
            Err(self.unwritten())
        }
    }

    /// Waits until `done` holds, checking again each time a pending record is settled:
    /// false if `deadline` comes first.
    async fn settle_until(
        &self,
        deadline: tokio::time::Instant,
        done: impl Fn(&WriteBehind) -> bool,
    ) -> bool {
        loop {
            let settled = self.shared.settled.notified();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return false;
            }
        }
    }

    /// Waits up to `grace` for every record written behind to be taken by the store,
    /// then gives up on those it still refuses (each logged).
    pub async fn close(&self, grace: Duration) {
        let all_settled = |me: &WriteBehind| me.unwritten() == 0;
        let deadline = tokio::time::Instant::now() + grace;
        if self.settle_until(deadline, all_settled).await {
            return;
        }
        self.shared.stopped.cancel();
        // Each task now makes one last attempt; a store that hangs does not hold the
        // stop up for long.
        let last = tokio::time::Instant::now() + LAST_ATTEMPT;
        self.settle_until(last, all_settled).await;
    }
}

/// Writes `execution` with `follow` until `inner` takes them, refuses them for good, or
/// the decorator is closed.
async fn write_until_taken(
    inner: &dyn Store,
    shared: &Shared,
    execution: &Execution,
    follow: &FollowUps,
) {
    let id = execution.id;
    let mut pause = RETRY_FIRST;
    let mut told = false;
    loop {
        let err = match inner.insert_with_follow_ups(execution, follow).await {
            Ok(()) => {
                if told {
                    tracing::info!(execution = %id, "stored the record kept while the store failed");
                }
                return;
            }
            Err(err) => err,
        };
        if err.fault() == Some(Fault::Conflict)
            || matches!(err, StoreError::DuplicateIdempotencyKey(_))
        {
            // An earlier attempt may have been stored though its answer was lost.
            if let Ok(Some(_)) = inner.get_execution(id).await {
                return;
            }
        }
        if !err.is_unavailable() || shared.stopped.is_cancelled() {
            tracing::error!(execution = %id, "could not store the record, giving up: {err}");
            return;
        }
        if !told {
            told = true;
            tracing::error!(execution = %id, "could not store the record yet, keeping it: {err}");
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.stopped.cancelled() => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Stops holding the records of one write.
fn forget(shared: &Shared, execution: &Execution, children: &[Execution]) {
    for record in std::iter::once(execution).chain(children) {
        shared.held.remove(&record.id);
    }
}
