//! Writes of executions that take a transaction of their own, so they apply all or
//! nothing: a claim bounded by the executions of its function in flight, a new execution
//! with what its result sets off, a finish with its follow-ups, a re-drive with its
//! retry.

use deadpool_postgres::{GenericClient, Object};
use uuid::Uuid;

use super::codec::{self, db};
use super::exec_sql::{self, ExecutionRow, FinishedRow};
use super::insert_batch::insert_execution;
use super::{claim_sql, deliveries_sql};
use crate::domain::{Claim, Holder};
use crate::store::{FollowUps, Redrive, StoreError};

/// See [`crate::store::Store::claim`]: `now` is the time of the claim.
pub(super) async fn claim(
    client: &mut Object,
    id: Uuid,
    claim: &Claim,
    now: i64,
) -> Result<bool, StoreError> {
    if claim.max_in_flight.is_none() {
        return claim_sql::claim(&*client, id, claim, now).await;
    }
    // Counting what the function holds and claiming must not interleave with another
    // node's claim of the same function: a lock per function, for this transaction.
    let tx = client.transaction().await.map_err(db("begin a claim"))?;
    let claimed = claim_sql::claim_within_limit(&tx, id, claim, now).await?;
    tx.commit().await.map_err(db("commit a claim"))?;
    Ok(claimed)
}

/// The rows of the executions `follow`'s chains start.
pub(super) fn child_rows(follow: &FollowUps) -> Result<Vec<ExecutionRow>, StoreError> {
    follow.children.iter().map(ExecutionRow::new).collect()
}

/// See [`crate::store::Store::insert_with_follow_ups`]: `row` is execution `id`'s,
/// `children` the rows of `follow.children` ([`child_rows`]).
pub(super) async fn insert(
    client: &mut Object,
    row: &ExecutionRow,
    id: Uuid,
    follow: &FollowUps,
    children: &[ExecutionRow],
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db("begin an insert"))?;
    insert_execution(&tx, row).await?;
    write_follow_ups(&tx, id, follow, children).await?;
    tx.commit().await.map_err(db("commit an insert"))
}

/// See [`crate::store::Store::finish_with_follow_ups`]: `row` is the result, `children`
/// the rows of `follow.children` ([`child_rows`]).
pub(super) async fn finish(
    client: &mut Object,
    id: Uuid,
    holder: Holder<'_>,
    row: &FinishedRow,
    follow: &FollowUps,
    children: &[ExecutionRow],
) -> Result<bool, StoreError> {
    if follow.is_empty() {
        return exec_sql::finish_execution(&*client, id, holder, row).await;
    }
    // The finish locks the row until the commit: a racing finish waits, then finds it
    // finished and writes none of what follows.
    let tx = client.transaction().await.map_err(db("begin a finish"))?;
    let applied = exec_sql::finish_execution(&tx, id, holder, row).await?;
    if applied {
        write_follow_ups(&tx, id, follow, children).await?;
    }
    tx.commit().await.map_err(db("commit a finish"))?;
    Ok(applied)
}

/// See [`crate::store::Store::redrive`]: `row` is the retry's, `retry` its id.
pub(super) async fn redrive(
    client: &mut Object,
    id: Uuid,
    retry: Uuid,
    row: &ExecutionRow,
) -> Result<Redrive, StoreError> {
    let tx = client.transaction().await.map_err(db("begin a re-drive"))?;
    // Locks the failed execution until the commit: a racing re-drive waits, then
    // finds it re-driven.
    let marked = exec_sql::update_where(
        &tx,
        "re-drive an execution",
        "dead_letter = false, redriven_by = $2",
        "status IN ('error', 'timeout', 'cancelled') AND redriven_by IS NULL",
        &[&id, &retry],
    )
    .await?;
    if !marked {
        let earlier = tx
            .query_opt("SELECT redriven_by FROM executions WHERE id = $1", &[&id])
            .await
            .map_err(db("read a re-drive"))?;
        let by: Option<Uuid> = match earlier {
            Some(row) => codec::get(&row, 0, "execution redriven_by")?,
            None => None,
        };
        return Ok(by.map_or(Redrive::NotFailed, Redrive::Already));
    }
    insert_execution(&tx, row).await?;
    tx.commit().await.map_err(db("commit a re-drive"))?;
    Ok(Redrive::Done)
}

/// Writes what the result of execution `id` sets off (`children` are the rows of
/// `follow.children`), in the caller's transaction.
async fn write_follow_ups(
    client: &impl GenericClient,
    id: Uuid,
    follow: &FollowUps,
    children: &[ExecutionRow],
) -> Result<(), StoreError> {
    for child in children {
        insert_execution(client, child).await?;
    }
    deliveries_sql::insert(client, &follow.deliveries).await?;
    if let Some(body) = &follow.callback_body {
        deliveries_sql::arm(client, id, body, crate::domain::now()).await?;
    }
    Ok(())
}
