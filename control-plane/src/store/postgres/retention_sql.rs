//! The SQL of retention: deleting finished executions with their logs a batch at a
//! time, deleting one finished execution, and deleting old function versions.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::codec::{db, get, to_ms};
use crate::store::{Deletion, PruneScope, StoreError};

/// Terminal statuses, as an SQL list.
const FINISHED: &str = "('success', 'error', 'timeout', 'cancelled')";

/// Deletes up to `limit` executions of `scope` that finished before `before`, oldest
/// first, with their logs, in one statement; answers how many. Rows another node is
/// deleting at the same time are skipped, not waited for.
pub(super) async fn prune_executions(
    client: &impl GenericClient,
    scope: &PruneScope,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<usize, StoreError> {
    let (function_clause, names) = match scope {
        PruneScope::Function(name) => ("AND function = ANY($3)", vec![name.as_str()]),
        PruneScope::AllBut(names) => (
            "AND function <> ALL($3)",
            names.iter().map(String::as_str).collect(),
        ),
    };
    let sql = format!(
        "WITH doomed AS (
             SELECT id FROM executions
             WHERE finished_at < $1 AND status IN {FINISHED} {function_clause}
             ORDER BY finished_at LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), gone AS (
             DELETE FROM executions e USING doomed WHERE e.id = doomed.id RETURNING e.id
         ), logs_gone AS (
             DELETE FROM logs l USING gone WHERE l.execution_id = gone.id
         ), deliveries_gone AS (
             DELETE FROM deliveries d USING gone WHERE d.execution_id = gone.id::text
         )
         SELECT count(*) FROM gone"
    );
    let stmt = client
        .prepare_cached(&sql)
        .await
        .map_err(db("prune executions"))?;
    let row = client
        .query_one(&stmt, &[&to_ms(before), &i64::from(limit), &names])
        .await
        .map_err(db("prune executions"))?;
    let deleted: i64 = get(&row, 0, "pruned count")?;
    Ok(usize::try_from(deleted).unwrap_or_default())
}

/// Deletes finished execution `id` and its logs, in one transaction.
pub(super) async fn delete_execution(
    client: &mut Object,
    id: Uuid,
) -> Result<Deletion, StoreError> {
    let tx = client.transaction().await.map_err(db("begin a delete"))?;
    let sql = format!("DELETE FROM executions WHERE id = $1 AND status IN {FINISHED}");
    let deleted = tx
        .execute(&sql, &[&id])
        .await
        .map_err(db("delete an execution"))?;
    if deleted == 0 {
        let status = tx
            .query_opt("SELECT status FROM executions WHERE id = $1", &[&id])
            .await
            .map_err(db("read an execution's status"))?;
        return Ok(match status {
            None => Deletion::NotFound,
            Some(_) => Deletion::Unfinished,
        });
    }
    tx.execute("DELETE FROM logs WHERE execution_id = $1", &[&id])
        .await
        .map_err(db("delete logs"))?;
    tx.execute(
        "DELETE FROM deliveries WHERE execution_id = $1",
        &[&id.to_string()],
    )
    .await
    .map_err(db("delete deliveries"))?;
    tx.commit().await.map_err(db("commit a delete"))?;
    Ok(Deletion::Deleted)
}

/// The versions [`prune_versions`] deletes (`v`, with `keep` as `$1`): beyond the newest
/// `keep` of their function, not its current one, and not one an unfinished execution
/// runs on.
const PRUNABLE: &str = "v.version <= (SELECT MAX(w.version) FROM function_versions w
                                     WHERE w.name = v.name) - $1
    AND v.version <> (SELECT f.current_version FROM functions f WHERE f.name = v.name)
    AND NOT EXISTS (SELECT 1 FROM executions e
                    WHERE e.function = v.name AND e.version = v.version
                      AND e.status IN ('queued', 'starting', 'running'))";

/// How long a prune waits for the executions table before leaving its versions to the
/// next round: inserts queue behind the wait, so it must stay short.
const LOCK_WAIT: &str = "250ms";

/// Deletes each function's versions beyond its newest `keep`, except its current one
/// and those an unfinished execution runs on.
///
/// An execution inserted on an old version (a call naming it, a re-drive) is invisible
/// to the check above until its statement commits, so the delete holds the executions
/// table in SHARE mode: that waits for the inserts in flight and holds new ones back
/// until the delete is done. Most rounds find nothing to delete and take no lock; a
/// round that cannot get it, or the rows another node's prune is deleting, within
/// [`LOCK_WAIT`] deletes nothing.
pub(super) async fn prune_versions(client: &mut Object, keep: u32) -> Result<usize, StoreError> {
    let keep = i64::from(keep);
    let found = client
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM function_versions v WHERE {PRUNABLE})"),
            &[&keep],
        )
        .await
        .map_err(db("look for prunable versions"))?;
    if !get::<bool>(&found, 0, "prunable versions")? {
        return Ok(0);
    }
    let tx = client
        .transaction()
        .await
        .map_err(db("begin a version prune"))?;
    let deleted = match delete_locked(&tx, keep).await {
        Ok(deleted) => deleted,
        // The executions table, or versions another node is deleting, stayed busy.
        Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            tracing::debug!("versions left to the next prune: {err}");
            return Ok(0);
        }
        Err(err) => return Err(db("prune versions")(err)),
    };
    tx.commit().await.map_err(db("commit a version prune"))?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

/// Within `tx`: holds the executions table, then deletes the prunable versions, each
/// lock waited for at most [`LOCK_WAIT`].
async fn delete_locked(
    tx: &deadpool_postgres::Transaction<'_>,
    keep: i64,
) -> Result<u64, tokio_postgres::Error> {
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_WAIT}'; LOCK TABLE executions IN SHARE MODE"
    ))
    .await?;
    // A statement of its own, so its snapshot sees every insert the lock waited for.
    tx.execute(
        &format!("DELETE FROM function_versions AS v WHERE {PRUNABLE}"),
        &[&keep],
    )
    .await
}
