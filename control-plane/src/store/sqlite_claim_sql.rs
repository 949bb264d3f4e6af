//! The SQL of the work queue: claims (`queued` → `starting` for one owner), leases and
//! their renewal, reclaiming what a lapsed owner held, and due work (`run_at`).

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::exec_sql::{query_executions, PAYLOADLESS_COLUMNS};
use super::sql::{db, to_ms};
use crate::domain::{Claim, Execution};
use crate::store::StoreError;

/// See [`crate::store::Store::claim`].
pub(super) fn claim(
    conn: &Connection,
    id: Uuid,
    claim: &Claim,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET status = 'starting', owner = ?2, lease_until = ?3
             WHERE id = ?1 AND status = 'queued' AND (run_at IS NULL OR run_at <= ?4)
                AND (?5 IS NULL OR ?5 > (SELECT count(*) FROM executions AS held
                    INDEXED BY executions_held_function
                    WHERE held.function = executions.function
                        AND held.status IN ('starting', 'running')))",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.into_bytes(),
                claim.owner,
                to_ms(claim.lease_until),
                now,
                claim.max_in_flight,
            ])
        })
        .map_err(db("claim execution"))?;
    Ok(changed > 0)
}

/// See [`crate::store::Store::renew_leases`].
pub(super) fn renew_leases(
    conn: &Connection,
    owner: &str,
    until: i64,
) -> Result<usize, StoreError> {
    conn.prepare_cached(
        "UPDATE executions SET lease_until = ?2
         WHERE owner = ?1 AND status IN ('starting', 'running')",
    )
    .and_then(|mut stmt| stmt.execute(params![owner, until]))
    .map_err(db("renew leases"))
}

/// See [`crate::store::Store::list_expired`].
pub(super) fn list_expired(
    conn: &Connection,
    owner: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<Execution>, StoreError> {
    let sql = format!(
        "SELECT {} FROM executions
         WHERE status IN ('starting', 'running') AND owner IS NOT NULL AND owner <> ?1
            AND lease_until < ?2
         ORDER BY id LIMIT ?3",
        PAYLOADLESS_COLUMNS.as_str()
    );
    query_executions(conn, &sql, params![owner, now, limit])
}

/// See [`crate::store::Store::reclaim`].
pub(super) fn reclaim(
    conn: &Connection,
    id: Uuid,
    from: &str,
    now: i64,
    claim: &Claim,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET owner = ?4, lease_until = ?5
             WHERE id = ?1 AND status IN ('starting', 'running') AND owner = ?2
                AND lease_until < ?3",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.into_bytes(),
                from,
                now,
                claim.owner,
                to_ms(claim.lease_until)
            ])
        })
        .map_err(db("reclaim execution"))?;
    Ok(changed > 0)
}

// The due queries name their index: without statistics SQLite prefers the index on
// `status`, which walks every queued execution (a backlog of 300,000 held the writer for
// over 100 ms a round). `INDEXED BY` makes a query that cannot use the index an error,
// so the tests that take due work also prove it is used.

/// See [`crate::store::Store::take_due`].
pub(super) fn take_due(
    conn: &Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE executions SET run_at = NULL, due_at = coalesce(due_at, run_at)
             WHERE id IN (SELECT id FROM executions INDEXED BY executions_due
                 WHERE status = 'queued' AND run_at IS NOT NULL AND run_at <= ?1
                 ORDER BY run_at LIMIT ?2)
             RETURNING id, function",
        )
        .map_err(db("take due executions"))?;
    let rows = stmt
        .query_map(params![now, limit], |row| {
            Ok((Uuid::from_bytes(row.get::<_, [u8; 16]>(0)?), row.get(1)?))
        })
        .map_err(db("take due executions"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(db("read due executions"))
}

/// See [`crate::store::Store::request_cancel`].
pub(super) fn request_cancel(conn: &Connection, id: Uuid) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "UPDATE executions SET cancel_requested = 1
         WHERE id = ?1 AND status IN ('starting', 'running')",
    )
    .and_then(|mut stmt| stmt.execute([id.into_bytes()]))
    .map(|changed| changed > 0)
    .map_err(db("ask for a cancel"))
}

/// See [`crate::store::Store::cancel_requests`].
pub(super) fn cancel_requests(
    conn: &Connection,
    owner: &str,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM executions INDEXED BY executions_cancel
             WHERE cancel_requested = 1 AND status IN ('starting', 'running') AND owner = ?1
             ORDER BY id LIMIT ?2",
        )
        .map_err(db("list cancel requests"))?;
    let rows = stmt
        .query_map(params![owner, limit], |row| {
            Ok(Uuid::from_bytes(row.get::<_, [u8; 16]>(0)?))
        })
        .map_err(db("list cancel requests"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(db("read cancel requests"))
}

/// See [`crate::store::Store::make_stale_due`]: ids are time-ordered, so `before` (the
/// smallest id of the cutoff's millisecond) bounds an index range.
pub(super) fn make_stale_due(
    conn: &Connection,
    before: Uuid,
    now: i64,
    limit: u32,
) -> Result<usize, StoreError> {
    conn.prepare_cached(
        "UPDATE executions SET run_at = ?2, due_at = coalesce(due_at, created_at)
         WHERE id IN (SELECT id FROM executions
             WHERE status = 'queued' AND run_at IS NULL AND id < ?1
             ORDER BY id LIMIT ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![before.into_bytes(), now, limit]))
    .map_err(db("make stale queued executions due"))
}

/// See [`crate::store::Store::list_overdue`]: milliseconds since the epoch.
pub(super) fn list_overdue(
    conn: &Connection,
    function: &str,
    due_before: i64,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM executions INDEXED BY executions_queued_function
             WHERE function = ?1 AND status = 'queued' AND run_at IS NULL
                 AND coalesce(due_at, created_at) < ?2
             ORDER BY id LIMIT ?3",
        )
        .map_err(db("list overdue executions"))?;
    let rows = stmt
        .query_map(params![function, due_before, limit], |row| {
            Ok(Uuid::from_bytes(row.get::<_, [u8; 16]>(0)?))
        })
        .map_err(db("list overdue executions"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(db("read overdue executions"))
}

/// See [`crate::store::Store::next_due`]: milliseconds since the epoch.
pub(super) fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached(
        "SELECT min(run_at) FROM executions INDEXED BY executions_due
         WHERE status = 'queued' AND run_at IS NOT NULL",
    )
    .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, Option<i64>>(0)))
    .optional()
    .map(Option::flatten)
    .map_err(db("find the next due execution"))
}
