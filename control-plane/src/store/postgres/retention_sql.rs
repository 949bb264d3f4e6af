//! The SQL of retention: deleting finished executions with their logs a batch at a
//! time, deleting one finished execution, and deleting old function versions.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object};
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

/// Deletes each function's versions beyond its newest `keep`, except its current one
/// and those an unfinished execution runs on.
pub(super) async fn prune_versions(
    client: &impl GenericClient,
    keep: u32,
) -> Result<usize, StoreError> {
    let deleted = client
        .execute(
            "DELETE FROM function_versions AS v
             WHERE v.version <= (SELECT MAX(w.version) FROM function_versions w
                                 WHERE w.name = v.name) - $1
               AND v.version <> (SELECT f.current_version FROM functions f
                                 WHERE f.name = v.name)
               AND NOT EXISTS (SELECT 1 FROM executions e
                               WHERE e.function = v.name AND e.version = v.version
                                 AND e.status IN ('queued', 'starting', 'running'))",
            &[&i64::from(keep)],
        )
        .await
        .map_err(db("prune versions"))?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}
