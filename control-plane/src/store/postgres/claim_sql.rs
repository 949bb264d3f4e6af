//! The SQL of the work queue: claims (`queued` → `starting` for one owner), starts,
//! requeues and retries of what an owner holds, leases and their renewal, reclaiming
//! what a lapsed owner held, and due work (`run_at`) taken with `FOR UPDATE SKIP
//! LOCKED` so that nodes polling at once each take different rows.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::codec::{db, get, to_ms};
use super::exec_sql::{execute, query_executions, update_where, HELD, PAYLOADLESS_COLUMNS};
use crate::domain::{Claim, Execution, Started};
use crate::store::StoreError;

/// See [`crate::store::Store::claim`].
pub(super) async fn claim(
    client: &impl GenericClient,
    id: Uuid,
    claim: &Claim,
    now: i64,
) -> Result<bool, StoreError> {
    update_where(
        client,
        "claim an execution",
        "status = 'starting', owner = $2, lease_until = $3",
        "status = 'queued' AND (run_at IS NULL OR run_at <= $4)",
        &[&id, &claim.owner, &to_ms(claim.lease_until), &now],
    )
    .await
}

/// [`claim`] bounded by `claim.max_in_flight` held executions of the function, inside
/// the caller's transaction: a transaction lock on the function's name serializes the
/// count and the claim with every other node's.
pub(super) async fn claim_within_limit(
    client: &impl GenericClient,
    id: Uuid,
    claim: &Claim,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(row) = client
        .query_opt("SELECT function FROM executions WHERE id = $1", &[&id])
        .await
        .map_err(db("claim an execution"))?
    else {
        return Ok(false);
    };
    let function: String = get(&row, 0, "execution function")?;
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('gantry:claim:' || $1))",
            &[&function],
        )
        .await
        .map_err(db("claim an execution"))?;
    let limit = claim.max_in_flight.map(i64::from);
    update_where(
        client,
        "claim an execution",
        "status = 'starting', owner = $2, lease_until = $3",
        "status = 'queued' AND (run_at IS NULL OR run_at <= $4)
            AND $5 > (SELECT count(*) FROM executions AS held
                WHERE held.function = $6 AND held.status IN ('starting', 'running'))",
        &[
            &id,
            &claim.owner,
            &to_ms(claim.lease_until),
            &now,
            &limit,
            &function,
        ],
    )
    .await
}

/// See [`crate::store::Store::mark_running`].
pub(super) async fn mark_running(
    client: &impl GenericClient,
    id: Uuid,
    owner: &str,
    started: &Started,
) -> Result<bool, StoreError> {
    update_where(
        client,
        "mark an execution running",
        "status = 'running', started_at = $3, instance_id = $4, cold_start = $5,
            callback_token_hash = $6",
        "status = 'starting' AND owner = $2",
        &[
            &id,
            &owner,
            &to_ms(started.started_at),
            &started.instance_id,
            &started.cold_start,
            &started.callback_token_hash,
        ],
    )
    .await
}

/// See [`crate::store::Store::requeue`].
pub(super) async fn requeue(
    client: &impl GenericClient,
    id: Uuid,
    owner: &str,
    attempt: u32,
) -> Result<bool, StoreError> {
    update_where(
        client,
        "requeue an execution",
        "status = 'queued', attempt = $3, run_at = NULL, started_at = NULL,
            instance_id = NULL, cold_start = NULL, callback_token_hash = NULL,
            owner = NULL, lease_until = NULL",
        HELD,
        &[&id, &owner, &i64::from(attempt)],
    )
    .await
}

/// See [`crate::store::Store::schedule_retry`]: `failure` is the attempt's failure as
/// JSON, appended to the `attempts` array (kept as text, so spliced in as text).
pub(super) async fn schedule_retry(
    client: &impl GenericClient,
    id: Uuid,
    owner: &str,
    attempt: u32,
    run_at: i64,
    failure: &str,
) -> Result<bool, StoreError> {
    update_where(
        client,
        "schedule a retry",
        "status = 'queued', attempt = $3, run_at = $4, due_at = NULL,
            attempts = CASE WHEN attempts IS NULL OR attempts = '[]' THEN '[' || $5::text || ']'
                ELSE left(attempts, -1) || ',' || $5::text || ']' END,
            started_at = NULL, instance_id = NULL, cold_start = NULL,
            callback_token_hash = NULL, owner = NULL, lease_until = NULL",
        HELD,
        &[&id, &owner, &i64::from(attempt), &run_at, &failure],
    )
    .await
}

/// See [`crate::store::Store::renew_leases`].
pub(super) async fn renew_leases(
    client: &impl GenericClient,
    owner: &str,
    until: i64,
) -> Result<usize, StoreError> {
    let renewed = execute(
        client,
        "renew leases",
        "UPDATE executions SET lease_until = $2
         WHERE owner = $1 AND status IN ('starting', 'running')",
        &[&owner, &until],
    )
    .await?;
    Ok(usize::try_from(renewed).unwrap_or(usize::MAX))
}

/// See [`crate::store::Store::list_expired`]. A plain read: taking one over is
/// [`reclaim`]'s compare-and-set, which one node only wins.
pub(super) async fn list_expired(
    client: &impl GenericClient,
    owner: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<Execution>, StoreError> {
    let sql = format!(
        "SELECT {} FROM executions
         WHERE status IN ('starting', 'running') AND owner IS NOT NULL AND owner <> $1
            AND lease_until < $2
         ORDER BY id LIMIT $3",
        PAYLOADLESS_COLUMNS.as_str()
    );
    query_executions(client, &sql, &[&owner, &now, &i64::from(limit)]).await
}

/// See [`crate::store::Store::reclaim`].
pub(super) async fn reclaim(
    client: &impl GenericClient,
    id: Uuid,
    from: &str,
    now: i64,
    claim: &Claim,
) -> Result<bool, StoreError> {
    update_where(
        client,
        "reclaim an execution",
        "owner = $4, lease_until = $5",
        "status IN ('starting', 'running') AND owner = $2 AND lease_until < $3",
        &[&id, &from, &now, &claim.owner, &to_ms(claim.lease_until)],
    )
    .await
}

/// See [`crate::store::Store::take_due`]: the due rows are locked as they are picked,
/// skipping those another node is taking, and answered earliest first.
/// See [`crate::store::Store::request_cancel`].
pub(super) async fn request_cancel(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<bool, StoreError> {
    client
        .execute(
            "UPDATE executions SET cancel_requested = true
             WHERE id = $1 AND status IN ('starting', 'running')",
            &[&id],
        )
        .await
        .map(|changed| changed > 0)
        .map_err(db("ask for a cancel"))
}

/// See [`crate::store::Store::cancel_requests`].
pub(super) async fn cancel_requests(
    client: &impl GenericClient,
    owner: &str,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let rows = client
        .query(
            "SELECT id FROM executions
             WHERE cancel_requested AND status IN ('starting', 'running') AND owner = $1
             ORDER BY id LIMIT $2",
            &[&owner, &i64::from(limit)],
        )
        .await
        .map_err(db("list cancel requests"))?;
    rows.iter().map(|row| get(row, 0, "execution id")).collect()
}

/// See [`crate::store::Store::make_stale_due`]: ids are time-ordered, so `before` bounds
/// an index range; rows another node is updating are skipped, not waited for.
pub(super) async fn make_stale_due(
    client: &impl GenericClient,
    before: Uuid,
    now: i64,
    limit: u32,
) -> Result<usize, StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE executions SET run_at = $2, due_at = coalesce(due_at, created_at)
             WHERE id IN (
                 SELECT id FROM executions
                 WHERE status = 'queued' AND run_at IS NULL AND id < $1
                 ORDER BY id LIMIT $3
                 FOR UPDATE SKIP LOCKED)",
        )
        .await
        .map_err(db("make stale queued executions due"))?;
    let changed = client
        .execute(&stmt, &[&before, &now, &i64::from(limit)])
        .await
        .map_err(db("make stale queued executions due"))?;
    Ok(usize::try_from(changed).unwrap_or(usize::MAX))
}

pub(super) async fn take_due(
    client: &impl GenericClient,
    now: i64,
    limit: u32,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH due AS (
                 SELECT id, run_at FROM executions
                 WHERE status = 'queued' AND run_at IS NOT NULL AND run_at <= $1
                 ORDER BY run_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), taken AS (
                 UPDATE executions e SET run_at = NULL, due_at = coalesce(e.due_at, due.run_at)
                 FROM due WHERE e.id = due.id
                 RETURNING e.id, e.function, due.run_at
             )
             SELECT id, function FROM taken ORDER BY run_at, id",
        )
        .await
        .map_err(db("take due executions"))?;
    let rows = client
        .query(&stmt, &[&now, &i64::from(limit)])
        .await
        .map_err(db("take due executions"))?;
    rows.iter()
        .map(|row| {
            Ok((
                get(row, 0, "execution id")?,
                get(row, 1, "execution function")?,
            ))
        })
        .collect()
}

/// See [`crate::store::Store::list_overdue`]: milliseconds since the epoch.
pub(super) async fn list_overdue(
    client: &impl GenericClient,
    function: &str,
    due_before: i64,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id FROM executions
             WHERE function = $1 AND status = 'queued' AND run_at IS NULL
                 AND coalesce(due_at, created_at) < $2
             ORDER BY id LIMIT $3",
        )
        .await
        .map_err(db("list overdue executions"))?;
    let rows = client
        .query(&stmt, &[&function, &due_before, &i64::from(limit)])
        .await
        .map_err(db("list overdue executions"))?;
    rows.iter().map(|row| get(row, 0, "execution id")).collect()
}

/// See [`crate::store::Store::next_due`]: milliseconds since the epoch.
pub(super) async fn next_due(client: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT min(run_at) FROM executions WHERE status = 'queued' AND run_at IS NOT NULL",
        )
        .await
        .map_err(db("find the next due execution"))?;
    let row = client
        .query_one(&stmt, &[])
        .await
        .map_err(db("find the next due execution"))?;
    get(&row, 0, "next run_at")
}
