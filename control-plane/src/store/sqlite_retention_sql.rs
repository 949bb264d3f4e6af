//! The SQL of retention: deleting finished executions with their logs in small batches
//! (each a short transaction, so other writes are not held up), deleting old function
//! versions, and giving free pages back to the file system.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use uuid::Uuid;

use super::sql::{db, to_ms};
use crate::store::{Deletion, PruneScope, StoreError};

/// The hyphenated lowercase text of a 16-byte `id` column, as a UUID prints.
const UUID_TEXT: &str = "lower(substr(hex(id), 1, 8) || '-' || substr(hex(id), 9, 4) || '-' || \
     substr(hex(id), 13, 4) || '-' || substr(hex(id), 17, 4) || '-' || substr(hex(id), 21))";

/// Terminal statuses, as an SQL list.
const FINISHED: &str = "('success', 'error', 'timeout', 'cancelled')";

/// Deletes up to `limit` executions of `scope` that finished before `before`, with
/// their logs; answers how many.
pub(super) fn prune_executions(
    conn: &Connection,
    scope: &PruneScope,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<usize, StoreError> {
    let mut values = vec![
        Value::Integer(to_ms(before)),
        Value::Integer(i64::from(limit)),
    ];
    let function_clause = match scope {
        PruneScope::Function(name) => {
            values.push(Value::Text(name.clone()));
            "AND function = ?3".to_owned()
        }
        PruneScope::AllBut(names) if names.is_empty() => String::new(),
        PruneScope::AllBut(names) => {
            let first = values.len() + 1;
            values.extend(names.iter().map(|name| Value::Text(name.clone())));
            let marks: Vec<String> = (first..first + names.len())
                .map(|n| format!("?{n}"))
                .collect();
            format!("AND function NOT IN ({})", marks.join(", "))
        }
    };
    let select = format!(
        "SELECT id FROM executions WHERE finished_at < ?1 AND status IN {FINISHED} {function_clause} ORDER BY finished_at LIMIT ?2"
    );
    conn.execute(
        &format!("DELETE FROM logs WHERE execution_id IN ({select})"),
        params_from_iter(values.iter()),
    )
    .map_err(db("prune logs"))?;
    // Deliveries name their execution by its text form.
    conn.execute(
        &format!(
            "DELETE FROM deliveries WHERE execution_id IN (SELECT {UUID_TEXT} FROM ({select}))"
        ),
        params_from_iter(values.iter()),
    )
    .map_err(db("prune deliveries"))?;
    conn.execute(
        &format!("DELETE FROM executions WHERE id IN ({select})"),
        params_from_iter(values.iter()),
    )
    .map_err(db("prune executions"))
}

/// Deletes finished execution `id` and its logs.
pub(super) fn delete_execution(conn: &Connection, id: Uuid) -> Result<Deletion, StoreError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM executions WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id.into_bytes()], |row| row.get(0))
                .optional()
        })
        .map_err(db("read execution status"))?;
    match status.as_deref() {
        None => return Ok(Deletion::NotFound),
        Some("queued" | "starting" | "running") => return Ok(Deletion::Unfinished),
        Some(_) => {}
    }
    conn.execute(
        "DELETE FROM logs WHERE execution_id = ?1",
        [id.into_bytes()],
    )
    .map_err(db("delete logs"))?;
    conn.execute(
        "DELETE FROM deliveries WHERE execution_id = ?1",
        [id.to_string()],
    )
    .map_err(db("delete deliveries"))?;
    conn.execute("DELETE FROM executions WHERE id = ?1", [id.into_bytes()])
        .map_err(db("delete execution"))?;
    Ok(Deletion::Deleted)
}

/// Deletes each function's versions beyond its newest `keep`, except its current one
/// and those an unfinished execution runs on.
pub(super) fn prune_versions(conn: &Connection, keep: u32) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM function_versions AS v
         WHERE v.version <= (SELECT MAX(w.version) FROM function_versions w WHERE w.name = v.name) - ?1
           AND v.version <> (SELECT f.current_version FROM functions f WHERE f.name = v.name)
           AND NOT EXISTS (SELECT 1 FROM executions e
                           WHERE e.function = v.name AND e.version = v.version
                             AND e.status IN ('queued', 'starting', 'running'))",
        params![keep],
    )
    .map_err(db("prune versions"))
}

/// Gives up to 256 free pages back to the file system (a database in incremental
/// auto-vacuum mode; otherwise SQLite reuses them for new rows).
pub(super) fn compact(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA incremental_vacuum(256);")
        .map_err(db("compact"))
}
