//! The SQL of execution records: encoding and inserting them, paging through the
//! unfinished ones, moving them through their statuses, and decoding their rows
//! (finding and listing them otherwise are in `sqlite_exec_reads.rs`).

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use uuid::Uuid;

use super::sql::{db, get, get_id, get_json, get_opt_time, get_time, to_json, to_ms, unknown};
use crate::domain::{
    Execution, ExecutionError, ExecutionStatus, Finished, Holder, Started, Trigger,
};
use crate::store::{Redrive, StoreError, Unfinished};

/// An execution that owner `?2` holds: starting or running and claimed by `?2` (or by no
/// owner: a record from before claims).
const HELD: &str = "status IN ('starting', 'running') AND (owner IS NULL OR owner = ?2)";
/// An execution that no runner has claimed yet (`?2`, the owner, is bound but unused).
const QUEUED: &str = "status = 'queued'";

/// Columns of `executions`, in [`decode_execution`]'s order.
pub(super) const EXECUTION_COLUMNS: &str = "id, function, version, status, input, output, error, \
    attempt, parent_id, root_id, depth, triggered_by, trace_id, idempotency_key, timeout_ms, \
    created_at, started_at, finished_at, duration_ms, cold_start, instance_id, exit_code, \
    dead_letter, callback_token_hash, run_at, attempts, redriven_by, owner, lease_until, \
    traceparent, tracestate, due_at, scheduled_for";

/// An execution encoded for its row, prepared by the caller so the writer thread only
/// binds values.
pub(super) struct ExecutionRow {
    id: [u8; 16],
    function: String,
    version: u32,
    status: &'static str,
    input: String,
    output: Option<String>,
    error: Option<String>,
    attempt: u32,
    parent_id: Option<[u8; 16]>,
    root_id: Option<[u8; 16]>,
    depth: u32,
    trigger: &'static str,
    trace_id: Option<String>,
    idempotency_key: Option<String>,
    timeout_ms: u64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_ms: Option<u64>,
    cold_start: Option<bool>,
    instance_id: Option<String>,
    exit_code: Option<i32>,
    dead_letter: bool,
    callback_token_hash: Option<String>,
    run_at: Option<i64>,
    attempts: Option<String>,
    owner: Option<String>,
    lease_until: Option<i64>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    scheduled_for: Option<i64>,
}

impl ExecutionRow {
    /// Encodes `e`.
    pub(super) fn new(e: &Execution) -> Result<ExecutionRow, StoreError> {
        Ok(ExecutionRow {
            id: e.id.into_bytes(),
            function: e.function.clone(),
            version: e.version,
            status: e.status.as_str(),
            input: to_json(&e.input, "execution input")?,
            output: e
                .output
                .as_ref()
                .map(|v| to_json(v, "execution output"))
                .transpose()?,
            error: e
                .error
                .as_ref()
                .map(|v| to_json(v, "execution error"))
                .transpose()?,
            attempt: e.attempt,
            parent_id: e.parent_id.map(Uuid::into_bytes),
            root_id: e.root_id.map(Uuid::into_bytes),
            depth: e.depth,
            trigger: e.trigger.as_str(),
            trace_id: e.trace_id.clone(),
            idempotency_key: e.idempotency_key.clone(),
            timeout_ms: e.timeout_ms,
            created_at: to_ms(e.created_at),
            started_at: e.started_at.map(to_ms),
            finished_at: e.finished_at.map(to_ms),
            duration_ms: e.duration_ms,
            cold_start: e.cold_start,
            instance_id: e.instance_id.clone(),
            exit_code: e.exit_code,
            dead_letter: e.dead_letter,
            callback_token_hash: e.callback_token_hash.clone(),
            run_at: e.run_at.map(to_ms),
            attempts: if e.attempts.is_empty() {
                None
            } else {
                Some(to_json(&e.attempts, "execution attempts")?)
            },
            owner: e.owner.clone(),
            lease_until: e.lease_until.map(to_ms),
            scheduled_for: e.scheduled_for.map(to_ms),
            traceparent: e.traceparent.clone(),
            tracestate: e.tracestate.clone(),
        })
    }
}

/// [`EXECUTION_COLUMNS`] with `input` and `output` read as `null`: for pages of many
/// records whose payloads are not needed.
pub(super) static PAYLOADLESS_COLUMNS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| EXECUTION_COLUMNS.replacen("input, output,", "'null', NULL,", 1));

pub(super) fn decode_execution(row: &Row<'_>) -> Result<Execution, StoreError> {
    let status: String = get(row, 3, "execution status")?;
    let trigger: String = get(row, 11, "execution trigger")?;
    Ok(Execution {
        id: get_id(row, 0, "execution id")?.ok_or_else(|| unknown("execution id", "NULL"))?,
        function: get(row, 1, "execution function")?,
        version: get(row, 2, "execution version")?,
        status: ExecutionStatus::parse(&status)
            .ok_or_else(|| unknown("execution status", &status))?,
        input: get_json(row, 4, "execution input")?
            .ok_or_else(|| unknown("execution input", "NULL"))?,
        output: get_json(row, 5, "execution output")?,
        error: get_json::<ExecutionError>(row, 6, "execution error")?,
        attempt: get(row, 7, "execution attempt")?,
        parent_id: get_id(row, 8, "execution parent_id")?,
        root_id: get_id(row, 9, "execution root_id")?,
        depth: get(row, 10, "execution depth")?,
        trigger: Trigger::parse(&trigger).ok_or_else(|| unknown("execution trigger", &trigger))?,
        trace_id: get(row, 12, "execution trace_id")?,
        idempotency_key: get(row, 13, "execution idempotency_key")?,
        timeout_ms: get(row, 14, "execution timeout_ms")?,
        created_at: get_time(row, 15, "execution created_at")?,
        started_at: get_opt_time(row, 16, "execution started_at")?,
        finished_at: get_opt_time(row, 17, "execution finished_at")?,
        duration_ms: get(row, 18, "execution duration_ms")?,
        cold_start: get(row, 19, "execution cold_start")?,
        instance_id: get(row, 20, "execution instance_id")?,
        exit_code: get(row, 21, "execution exit_code")?,
        dead_letter: get(row, 22, "execution dead_letter")?,
        callback_token_hash: get(row, 23, "execution callback_token_hash")?,
        run_at: get_opt_time(row, 24, "execution run_at")?,
        attempts: get_json(row, 25, "execution attempts")?.unwrap_or_default(),
        redriven_by: get_id(row, 26, "execution redriven_by")?,
        owner: get(row, 27, "execution owner")?,
        lease_until: get_opt_time(row, 28, "execution lease_until")?,
        traceparent: get(row, 29, "execution traceparent")?,
        tracestate: get(row, 30, "execution tracestate")?,
        due_at: get_opt_time(row, 31, "execution due_at")?,
        scheduled_for: get_opt_time(row, 32, "execution scheduled_for")?,
    })
}

pub(super) fn query_executions(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Execution>, StoreError> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(db("prepare execution query"))?;
    let mut rows = stmt.query(params).map_err(db("query executions"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db("read executions"))? {
        out.push(decode_execution(row)?);
    }
    Ok(out)
}

/// See [`crate::store::Store::insert_execution`].
pub(super) fn insert_execution(conn: &Connection, e: &ExecutionRow) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO executions (id, function, version, status, input, output, error,
                attempt, parent_id, root_id, depth, triggered_by, trace_id, idempotency_key,
                timeout_ms, created_at, started_at, finished_at, duration_ms, cold_start,
                instance_id, exit_code, dead_letter, callback_token_hash, run_at, attempts,
                owner, lease_until, traceparent, tracestate, scheduled_for)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                e.id,
                e.function,
                e.version,
                e.status,
                e.input,
                e.output,
                e.error,
                e.attempt,
                e.parent_id,
                e.root_id,
                e.depth,
                e.trigger,
                e.trace_id,
                e.idempotency_key,
                e.timeout_ms,
                e.created_at,
                e.started_at,
                e.finished_at,
                e.duration_ms,
                e.cold_start,
                e.instance_id,
                e.exit_code,
                e.dead_letter,
                e.callback_token_hash,
                e.run_at,
                e.attempts,
                e.owner,
                e.lease_until,
                e.traceparent,
                e.tracestate,
                e.scheduled_for,
            ])
        });
    let err = match inserted {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    if err.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
        if let Some(key) = &e.idempotency_key {
            let existing: Option<[u8; 16]> = conn
                .prepare_cached(
                    "SELECT id FROM executions WHERE function = ?1 AND idempotency_key = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![e.function, key], |row| row.get(0))
                        .optional()
                })
                .map_err(db("find idempotency key"))?;
            if let Some(existing) = existing {
                return Err(StoreError::DuplicateIdempotencyKey(Uuid::from_bytes(
                    existing,
                )));
            }
        }
    }
    Err(super::sql::database("insert execution", err))
}

/// See [`crate::store::Store::list_unfinished`].
pub(super) fn list_unfinished(
    conn: &Connection,
    which: Unfinished,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Execution>, StoreError> {
    let (condition, owner) = match which {
        Unfinished::Queued => ("status = 'queued' AND run_at IS NULL", None),
        Unfinished::HeldBy(owner) => (
            "status IN ('starting', 'running') AND (owner IS NULL OR owner = ?3)",
            Some(owner),
        ),
        Unfinished::All => ("status IN ('queued', 'starting', 'running')", None),
    };
    let columns = PAYLOADLESS_COLUMNS.as_str();
    let after = after.map_or([0u8; 16], Uuid::into_bytes);
    match owner {
        Some(owner) => {
            let sql = format!(
                "SELECT {columns} FROM executions WHERE {condition} AND id > ?1 ORDER BY id LIMIT ?2"
            );
            query_executions(conn, &sql, params![after, limit, owner])
        }
        None => {
            let sql = format!(
                "SELECT {columns} FROM executions WHERE {condition} AND id > ?1 ORDER BY id LIMIT ?2"
            );
            query_executions(conn, &sql, params![after, limit])
        }
    }
}

/// Runs `UPDATE executions SET {set}` on execution `?1` if owner `?2` holds it (see
/// [`HELD`]); answers whether it did. A terminal status is never overwritten, and a node
/// never moves what another holds.
fn update_held(
    conn: &Connection,
    operation: &'static str,
    set: &str,
    params: impl rusqlite::Params,
) -> Result<bool, StoreError> {
    update_where(conn, operation, set, HELD, params)
}

/// Runs `UPDATE executions SET {set}` on execution `?1` if it matches `condition`;
/// answers whether it did.
fn update_where(
    conn: &Connection,
    operation: &'static str,
    set: &str,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<bool, StoreError> {
    let sql = format!("UPDATE executions SET {set} WHERE id = ?1 AND {condition}");
    let changed = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map_err(db(operation))?;
    Ok(changed > 0)
}

/// See [`crate::store::Store::mark_running`].
pub(super) fn mark_running(
    conn: &Connection,
    id: Uuid,
    owner: &str,
    started: &Started,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET status = 'running', started_at = ?3, instance_id = ?4,
                cold_start = ?5, callback_token_hash = ?6
             WHERE id = ?1 AND status = 'starting' AND owner = ?2",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.into_bytes(),
                owner,
                to_ms(started.started_at),
                started.instance_id,
                started.cold_start,
                started.callback_token_hash,
            ])
        })
        .map_err(db("mark execution running"))?;
    Ok(changed > 0)
}

/// See [`crate::store::Store::requeue`].
pub(super) fn requeue(
    conn: &Connection,
    id: Uuid,
    owner: &str,
    attempt: u32,
) -> Result<bool, StoreError> {
    update_held(
        conn,
        "requeue execution",
        "status = 'queued', attempt = ?3, run_at = NULL, started_at = NULL,
            instance_id = NULL, cold_start = NULL, callback_token_hash = NULL,
            owner = NULL, lease_until = NULL",
        params![id.into_bytes(), owner, attempt],
    )
}

/// A [`Finished`] encoded for its row.
pub(super) struct FinishedRow {
    status: &'static str,
    output: Option<String>,
    error: Option<String>,
    exit_code: Option<i32>,
    duration_ms: Option<u64>,
    finished_at: i64,
    dead_letter: bool,
}

impl FinishedRow {
    /// Encodes `f`.
    pub(super) fn new(f: &Finished) -> Result<FinishedRow, StoreError> {
        Ok(FinishedRow {
            status: f.status.as_str(),
            output: f
                .output
                .as_ref()
                .map(|v| to_json(v, "execution output"))
                .transpose()?,
            error: f
                .error
                .as_ref()
                .map(|v| to_json(v, "execution error"))
                .transpose()?,
            exit_code: f.exit_code,
            duration_ms: f.duration_ms,
            finished_at: to_ms(f.finished_at),
            dead_letter: f.dead_letter,
        })
    }
}

/// See [`crate::store::Store::finish_execution`].
pub(super) fn finish_execution(
    conn: &Connection,
    id: Uuid,
    holder: Holder<'_>,
    f: &FinishedRow,
) -> Result<bool, StoreError> {
    let (condition, owner) = match holder {
        Holder::Queue => (QUEUED, ""),
        Holder::Owner(owner) => (HELD, owner),
    };
    update_where(
        conn,
        "finish execution",
        "status = ?3, output = ?4, error = ?5, exit_code = ?6, duration_ms = ?7,
            finished_at = ?8, dead_letter = ?9, run_at = NULL, lease_until = NULL",
        condition,
        params![
            id.into_bytes(),
            owner,
            f.status,
            f.output,
            f.error,
            f.exit_code,
            f.duration_ms,
            f.finished_at,
            f.dead_letter,
        ],
    )
}

/// See [`crate::store::Store::schedule_retry`]: `failure` is the attempt's failure as
/// JSON, appended to `attempts`.
pub(super) fn schedule_retry(
    conn: &Connection,
    id: Uuid,
    owner: &str,
    attempt: u32,
    run_at: i64,
    failure: &str,
) -> Result<bool, StoreError> {
    update_held(
        conn,
        "schedule a retry",
        "status = 'queued', attempt = ?3, run_at = ?4, due_at = NULL,
            attempts = json_insert(coalesce(attempts, '[]'), '$[#]', json(?5)),
            started_at = NULL, instance_id = NULL, cold_start = NULL,
            callback_token_hash = NULL, owner = NULL, lease_until = NULL",
        params![id.into_bytes(), owner, attempt, run_at, failure],
    )
}

/// See [`crate::store::Store::redrive`]: marks `id` re-driven by `retry` (off the
/// dead-letter list) if it is a failure not re-driven yet; the caller then inserts
/// `retry` in the same transaction.
pub(super) fn mark_redriven(
    conn: &Connection,
    id: Uuid,
    retry: Uuid,
) -> Result<Redrive, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET dead_letter = 0, redriven_by = ?2
             WHERE id = ?1 AND status IN ('error', 'timeout', 'cancelled') AND redriven_by IS NULL",
        )
        .and_then(|mut stmt| stmt.execute([id.into_bytes(), retry.into_bytes()]))
        .map_err(db("re-drive execution"))?;
    if changed > 0 {
        return Ok(Redrive::Done);
    }
    let earlier: Option<Option<[u8; 16]>> = conn
        .prepare_cached("SELECT redriven_by FROM executions WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id.into_bytes()], |row| row.get(0))
                .optional()
        })
        .map_err(db("read re-drive"))?;
    Ok(match earlier.flatten() {
        Some(by) => Redrive::Already(Uuid::from_bytes(by)),
        None => Redrive::NotFailed,
    })
}
