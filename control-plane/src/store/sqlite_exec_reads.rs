//! The SQL that finds and lists execution records: one by id or by idempotency key,
//! filtered listings, and chain trees.

use rusqlite::{params, Connection};
use uuid::Uuid;

use super::exec_sql::{query_executions, EXECUTION_COLUMNS};
use super::sql::to_ms;
use crate::domain::Execution;
use crate::store::{ExecutionFilter, StoreError};

/// See [`crate::store::Store::get_execution`].
pub(super) fn get_execution(conn: &Connection, id: Uuid) -> Result<Option<Execution>, StoreError> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
    Ok(query_executions(conn, &sql, [id.into_bytes()])?.pop())
}

/// See [`crate::store::Store::find_by_idempotency_key`].
pub(super) fn find_by_idempotency_key(
    conn: &Connection,
    function: &str,
    key: &str,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE function = ?1 AND idempotency_key = ?2"
    );
    Ok(query_executions(conn, &sql, [function, key])?.pop())
}

/// `'a', 'b'`: names of our own (never a caller's text) as SQL literals.
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|name| format!("'{name}'")).collect();
    quoted.join(", ")
}

/// See [`crate::store::Store::list_executions`].
pub(super) fn list_executions(
    conn: &Connection,
    filter: &ExecutionFilter,
) -> Result<Vec<Execution>, StoreError> {
    use rusqlite::types::Value;
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(function) = &filter.function {
        values.push(Value::Text(function.clone()));
        clauses.push(format!("function = ?{}", values.len()));
    }
    // Literal names (fixed sets of our own) let SQLite pick the status index.
    if !filter.statuses.is_empty() {
        let names = filter.statuses.iter().map(|status| status.as_str());
        clauses.push(format!("status IN ({})", quoted(names)));
    }
    if !filter.triggers.is_empty() {
        let names = filter.triggers.iter().map(|trigger| trigger.as_str());
        clauses.push(format!("triggered_by IN ({})", quoted(names)));
    }
    if let Some(since) = filter.since {
        values.push(Value::Integer(to_ms(since)));
        clauses.push(format!("created_at >= ?{}", values.len()));
    }
    if let Some(until) = filter.until {
        values.push(Value::Integer(to_ms(until)));
        clauses.push(format!("created_at < ?{}", values.len()));
    }
    if let Some(dead_letter) = filter.dead_letter {
        clauses.push(format!("dead_letter = {}", i32::from(dead_letter)));
    }
    if let Some(before) = filter.before_id {
        values.push(Value::Blob(before.as_bytes().to_vec()));
        clauses.push(format!("id < ?{}", values.len()));
    }
    values.push(Value::Integer(i64::from(filter.limit)));
    let limit = values.len();
    let columns = if filter.with_payloads {
        EXECUTION_COLUMNS.to_owned()
    } else {
        // A listing reads no payload it will not answer.
        EXECUTION_COLUMNS.replacen("input, output,", "'null', NULL,", 1)
    };
    let mut sql = format!("SELECT {columns} FROM executions");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{limit}"));
    query_executions(conn, &sql, rusqlite::params_from_iter(values))
}

/// See [`crate::store::Store::chain_tree`].
pub(super) fn chain_tree(
    conn: &Connection,
    root: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Execution>, StoreError> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE (id = ?1 OR root_id = ?1) AND id > ?2
         ORDER BY id LIMIT ?3"
    );
    let after = after.map_or([0u8; 16], Uuid::into_bytes);
    query_executions(conn, &sql, params![root.into_bytes(), after, limit])
}
