//! The SQLite store's calls on executions that copy their input for the writer thread
//! or a reader (rows encoded by the caller, so the writer only binds values), and the
//! writes that take more than one statement, run as one job so they apply all or
//! nothing: a new execution with what its result sets off, a finish with its
//! follow-ups, a re-drive with its retry.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::deliveries_sql::FollowUpRows;
use super::exec_reads;
use super::exec_sql::{self, ExecutionRow, FinishedRow};
use super::sql::to_ms;
use super::SqliteStore;
use crate::domain::{Execution, Holder, Started};
use crate::store::{Redrive, StoreError};

/// See [`crate::store::Store::insert_execution`].
pub(super) async fn insert_execution(
    store: &SqliteStore,
    execution: &Execution,
) -> Result<(), StoreError> {
    let row = ExecutionRow::new(execution)?;
    store
        .write(move |conn| exec_sql::insert_execution(conn, &row))
        .await
}

/// See [`crate::store::Store::find_by_idempotency_key`].
pub(super) async fn find_by_idempotency_key(
    store: &SqliteStore,
    function: &str,
    key: &str,
) -> Result<Option<Execution>, StoreError> {
    let (function, key) = (function.to_owned(), key.to_owned());
    store
        .read(move |conn| exec_reads::find_by_idempotency_key(conn, &function, &key))
        .await
}

/// See [`crate::store::Store::mark_running`].
pub(super) async fn mark_running(
    store: &SqliteStore,
    id: Uuid,
    owner: &str,
    started: &Started,
) -> Result<bool, StoreError> {
    let (owner, started) = (owner.to_owned(), started.clone());
    store
        .write(move |conn| exec_sql::mark_running(conn, id, &owner, &started))
        .await
}

/// See [`crate::store::Store::requeue`].
pub(super) async fn requeue(
    store: &SqliteStore,
    id: Uuid,
    owner: &str,
    attempt: u32,
) -> Result<bool, StoreError> {
    let owner = owner.to_owned();
    store
        .write(move |conn| exec_sql::requeue(conn, id, &owner, attempt))
        .await
}

/// See [`crate::store::Store::schedule_retry`]: `failure` is the attempt's failure as
/// JSON.
pub(super) async fn schedule_retry(
    store: &SqliteStore,
    id: Uuid,
    owner: &str,
    attempt: u32,
    run_at: DateTime<Utc>,
    failure: String,
) -> Result<bool, StoreError> {
    let (owner, run_at) = (owner.to_owned(), to_ms(run_at));
    store
        .write(move |conn| exec_sql::schedule_retry(conn, id, &owner, attempt, run_at, &failure))
        .await
}

/// See [`crate::store::Store::insert_with_follow_ups`]: `row` is the execution's,
/// `follow` what it sets off.
pub(super) async fn insert(
    store: &SqliteStore,
    row: ExecutionRow,
    follow: FollowUpRows,
    id: Uuid,
) -> Result<(), StoreError> {
    store
        .write(move |conn| {
            exec_sql::insert_execution(conn, &row)?;
            follow.write(conn, id)
        })
        .await
}

/// See [`crate::store::Store::finish_with_follow_ups`]: `row` is the result, `follow`
/// what it sets off, written only if the finish applies.
pub(super) async fn finish(
    store: &SqliteStore,
    id: Uuid,
    holder: Holder<'_>,
    row: FinishedRow,
    follow: FollowUpRows,
) -> Result<bool, StoreError> {
    let owner = match holder {
        Holder::Queue => None,
        Holder::Owner(owner) => Some(owner.to_owned()),
    };
    store
        .write(move |conn| {
            let holder = owner.as_deref().map_or(Holder::Queue, Holder::Owner);
            let applied = exec_sql::finish_execution(conn, id, holder, &row)?;
            if applied {
                follow.write(conn, id)?;
            }
            Ok(applied)
        })
        .await
}

/// See [`crate::store::Store::redrive`]: marks `id` re-driven, then stores `retry`, in
/// one job.
pub(super) async fn redrive(
    store: &SqliteStore,
    id: Uuid,
    retry: &Execution,
) -> Result<Redrive, StoreError> {
    let row = ExecutionRow::new(retry)?;
    let retry_id = retry.id;
    store
        .write(move |conn| {
            let outcome = exec_sql::mark_redriven(conn, id, retry_id)?;
            if outcome == Redrive::Done {
                exec_sql::insert_execution(conn, &row)?;
            }
            Ok(outcome)
        })
        .await
}
