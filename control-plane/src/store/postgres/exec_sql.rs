//! The SQL of execution records: encoding and decoding their rows, finding and listing
//! them, and moving them through their statuses by compare-and-set
//! (`UPDATE … WHERE status …`). Inserting them is `insert_batch.rs`'s.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::codec::{
    db, get, get_json, get_opt_time, get_opt_u64, get_time, get_u32, get_u64, to_int, to_json,
    to_ms, unknown,
};
use crate::domain::{Execution, ExecutionError, ExecutionStatus, Finished, Holder, Trigger};
use crate::store::{ExecutionFilter, StoreError, Unfinished};

/// Parameters of a statement.
pub(super) type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// An execution that owner `$2` holds: starting or running and claimed by `$2` (or by no
/// owner: a record from before claims).
pub(super) const HELD: &str = "status IN ('starting', 'running') AND (owner IS NULL OR owner = $2)";

/// Columns of `executions`, in [`decode_execution`]'s order.
pub(super) const EXECUTION_COLUMNS: &str = "id, function, version, status, input, output, \
    error, attempt, parent_id, root_id, depth, triggered_by, trace_id, idempotency_key, \
    timeout_ms, created_at, started_at, finished_at, duration_ms, cold_start, instance_id, \
    exit_code, dead_letter, callback_token_hash, run_at, attempts, redriven_by, owner, \
    lease_until, traceparent, tracestate, due_at, scheduled_for";

/// [`EXECUTION_COLUMNS`] with `input` and `output` read as `null`: for pages of many
/// records whose payloads are not needed.
pub(super) static PAYLOADLESS_COLUMNS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        EXECUTION_COLUMNS.replacen("input, output,", "'null'::text, NULL::text,", 1)
    });

/// An execution encoded for its row: each field is the value of the column of its name.
pub(super) struct ExecutionRow {
    pub(super) id: Uuid,
    pub(super) function: String,
    pub(super) version: i64,
    pub(super) status: &'static str,
    pub(super) input: String,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) attempt: i64,
    pub(super) parent_id: Option<Uuid>,
    pub(super) root_id: Option<Uuid>,
    pub(super) depth: i64,
    pub(super) triggered_by: &'static str,
    pub(super) trace_id: Option<String>,
    pub(super) idempotency_key: Option<String>,
    pub(super) timeout_ms: i64,
    pub(super) created_at: i64,
    pub(super) started_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
    pub(super) duration_ms: Option<i64>,
    pub(super) cold_start: Option<bool>,
    pub(super) instance_id: Option<String>,
    pub(super) exit_code: Option<i32>,
    pub(super) dead_letter: bool,
    pub(super) callback_token_hash: Option<String>,
    pub(super) run_at: Option<i64>,
    pub(super) attempts: Option<String>,
    pub(super) owner: Option<String>,
    pub(super) lease_until: Option<i64>,
    pub(super) traceparent: Option<String>,
    pub(super) tracestate: Option<String>,
    pub(super) scheduled_for: Option<i64>,
}

impl ExecutionRow {
    /// Encodes `e`.
    pub(super) fn new(e: &Execution) -> Result<ExecutionRow, StoreError> {
        Ok(ExecutionRow {
            id: e.id,
            function: e.function.clone(),
            version: i64::from(e.version),
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
            attempt: i64::from(e.attempt),
            parent_id: e.parent_id,
            root_id: e.root_id,
            depth: i64::from(e.depth),
            triggered_by: e.trigger.as_str(),
            trace_id: e.trace_id.clone(),
            idempotency_key: e.idempotency_key.clone(),
            timeout_ms: to_int(e.timeout_ms, "timeout_ms")?,
            created_at: to_ms(e.created_at),
            started_at: e.started_at.map(to_ms),
            finished_at: e.finished_at.map(to_ms),
            duration_ms: e
                .duration_ms
                .map(|ms| to_int(ms, "duration_ms"))
                .transpose()?,
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

/// Decodes a row of [`EXECUTION_COLUMNS`] (or [`PAYLOADLESS_COLUMNS`]).
pub(super) fn decode_execution(row: &Row) -> Result<Execution, StoreError> {
    let status: &str = get(row, 3, "execution status")?;
    let trigger: &str = get(row, 11, "execution trigger")?;
    Ok(Execution {
        id: get(row, 0, "execution id")?,
        function: get(row, 1, "execution function")?,
        version: get_u32(row, 2, "execution version")?,
        status: ExecutionStatus::parse(status)
            .ok_or_else(|| unknown("execution status", status))?,
        input: get_json(row, 4, "execution input")?
            .ok_or_else(|| unknown("execution input", "NULL"))?,
        output: get_json(row, 5, "execution output")?,
        error: get_json::<ExecutionError>(row, 6, "execution error")?,
        attempt: get_u32(row, 7, "execution attempt")?,
        parent_id: get(row, 8, "execution parent_id")?,
        root_id: get(row, 9, "execution root_id")?,
        depth: get_u32(row, 10, "execution depth")?,
        trigger: Trigger::parse(trigger).ok_or_else(|| unknown("execution trigger", trigger))?,
        trace_id: get(row, 12, "execution trace_id")?,
        idempotency_key: get(row, 13, "execution idempotency_key")?,
        timeout_ms: get_u64(row, 14, "execution timeout_ms")?,
        created_at: get_time(row, 15, "execution created_at")?,
        started_at: get_opt_time(row, 16, "execution started_at")?,
        finished_at: get_opt_time(row, 17, "execution finished_at")?,
        duration_ms: get_opt_u64(row, 18, "execution duration_ms")?,
        cold_start: get(row, 19, "execution cold_start")?,
        instance_id: get(row, 20, "execution instance_id")?,
        exit_code: get(row, 21, "execution exit_code")?,
        dead_letter: get(row, 22, "execution dead_letter")?,
        callback_token_hash: get(row, 23, "execution callback_token_hash")?,
        run_at: get_opt_time(row, 24, "execution run_at")?,
        attempts: get_json(row, 25, "execution attempts")?.unwrap_or_default(),
        redriven_by: get(row, 26, "execution redriven_by")?,
        owner: get(row, 27, "execution owner")?,
        lease_until: get_opt_time(row, 28, "execution lease_until")?,
        traceparent: get(row, 29, "execution traceparent")?,
        tracestate: get(row, 30, "execution tracestate")?,
        due_at: get_opt_time(row, 31, "execution due_at")?,
        scheduled_for: get_opt_time(row, 32, "execution scheduled_for")?,
    })
}

/// Runs the cached statement `sql` and decodes the executions it answers.
pub(super) async fn query_executions(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Execution>, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(db("prepare an execution query"))?;
    let rows = client
        .query(&stmt, params)
        .await
        .map_err(db("query executions"))?;
    rows.iter().map(decode_execution).collect()
}

/// Runs the cached statement `sql`; answers how many rows it changed.
pub(super) async fn execute(
    client: &impl GenericClient,
    operation: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(db(operation))?;
    client.execute(&stmt, params).await.map_err(db(operation))
}

/// See [`crate::store::Store::get_execution`].
pub(super) async fn get_execution(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
    Ok(query_executions(client, &sql, &[&id]).await?.pop())
}

/// See [`crate::store::Store::find_by_idempotency_key`].
pub(super) async fn find_by_idempotency_key(
    client: &impl GenericClient,
    function: &str,
    key: &str,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE function = $1 AND idempotency_key = $2"
    );
    Ok(query_executions(client, &sql, &[&function, &key])
        .await?
        .pop())
}

/// See [`crate::store::Store::list_executions`]: one statement per combination of
/// filters (a few dozen at most), each prepared once per connection.
pub(super) async fn list_executions(
    client: &impl GenericClient,
    filter: &ExecutionFilter,
) -> Result<Vec<Execution>, StoreError> {
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    let triggers: Vec<&str> = filter.triggers.iter().map(|t| t.as_str()).collect();
    let since = filter.since.map(to_ms);
    let until = filter.until.map(to_ms);
    let limit = i64::from(filter.limit);
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Params<'_> = Vec::new();
    if let Some(function) = &filter.function {
        bind(&mut clauses, &mut params, "function = ?", function);
    }
    if !statuses.is_empty() {
        bind(&mut clauses, &mut params, "status = ANY(?)", &statuses);
    }
    if !triggers.is_empty() {
        bind(
            &mut clauses,
            &mut params,
            "triggered_by = ANY(?)",
            &triggers,
        );
    }
    if let Some(since) = &since {
        bind(&mut clauses, &mut params, "created_at >= ?", since);
    }
    if let Some(until) = &until {
        bind(&mut clauses, &mut params, "created_at < ?", until);
    }
    if let Some(dead_letter) = &filter.dead_letter {
        bind(&mut clauses, &mut params, "dead_letter = ?", dead_letter);
    }
    if let Some(before) = &filter.before_id {
        bind(&mut clauses, &mut params, "id < ?", before);
    }
    params.push(&limit);
    let columns = if filter.with_payloads {
        EXECUTION_COLUMNS
    } else {
        // A listing reads no payload it will not answer.
        PAYLOADLESS_COLUMNS.as_str()
    };
    let mut sql = format!("SELECT {columns} FROM executions");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
    query_executions(client, &sql, &params).await
}

/// Adds `clause` with its `?` numbered as the next parameter, `param`.
fn bind<'a>(
    clauses: &mut Vec<String>,
    params: &mut Params<'a>,
    clause: &str,
    param: &'a (dyn ToSql + Sync),
) {
    params.push(param);
    clauses.push(clause.replace('?', &format!("${}", params.len())));
}

/// See [`crate::store::Store::list_unfinished`].
pub(super) async fn list_unfinished(
    client: &impl GenericClient,
    which: Unfinished,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Execution>, StoreError> {
    let columns = PAYLOADLESS_COLUMNS.as_str();
    let after = after.unwrap_or(Uuid::nil());
    let limit = i64::from(limit);
    let (condition, owner) = match which {
        Unfinished::Queued => ("status = 'queued' AND run_at IS NULL", None),
        Unfinished::HeldBy(owner) => (
            "status IN ('starting', 'running') AND (owner IS NULL OR owner = $3)",
            Some(owner),
        ),
        Unfinished::All => ("status IN ('queued', 'starting', 'running')", None),
    };
    let sql = format!(
        "SELECT {columns} FROM executions WHERE {condition} AND id > $1 ORDER BY id LIMIT $2"
    );
    match &owner {
        Some(owner) => query_executions(client, &sql, &[&after, &limit, owner]).await,
        None => query_executions(client, &sql, &[&after, &limit]).await,
    }
}

/// Runs `UPDATE executions SET {set}` on execution `$1` if it matches `condition`;
/// answers whether it did. One statement: concurrent updates of the row wait for each
/// other and re-check `condition` on what the winner wrote.
pub(super) async fn update_where(
    client: &impl GenericClient,
    operation: &'static str,
    set: &str,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<bool, StoreError> {
    let sql = format!("UPDATE executions SET {set} WHERE id = $1 AND {condition}");
    Ok(execute(client, operation, &sql, params).await? > 0)
}

/// A [`Finished`] encoded for its row.
pub(super) struct FinishedRow {
    status: &'static str,
    output: Option<String>,
    error: Option<String>,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
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
            duration_ms: f
                .duration_ms
                .map(|ms| to_int(ms, "duration_ms"))
                .transpose()?,
            finished_at: to_ms(f.finished_at),
            dead_letter: f.dead_letter,
        })
    }
}

/// See [`crate::store::Store::finish_execution`].
pub(super) async fn finish_execution(
    client: &impl GenericClient,
    id: Uuid,
    holder: Holder<'_>,
    f: &FinishedRow,
) -> Result<bool, StoreError> {
    let (condition, owner) = match holder {
        // An execution no runner has claimed yet. `$2` is bound either way, so this
        // statement names it too (as the no owner it is).
        Holder::Queue => ("status = 'queued' AND $2::text IS NULL", None),
        Holder::Owner(owner) => (HELD, Some(owner)),
    };
    update_where(
        client,
        "finish an execution",
        "status = $3, output = $4, error = $5, exit_code = $6, duration_ms = $7,
            finished_at = $8, dead_letter = $9, run_at = NULL, lease_until = NULL",
        condition,
        &[
            &id,
            &owner,
            &f.status,
            &f.output,
            &f.error,
            &f.exit_code,
            &f.duration_ms,
            &f.finished_at,
            &f.dead_letter,
        ],
    )
    .await
}

/// See [`crate::store::Store::chain_tree`].
pub(super) async fn chain_tree(
    client: &impl GenericClient,
    root: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Execution>, StoreError> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE (id = $1 OR root_id = $1) AND id > $2
         ORDER BY id LIMIT $3"
    );
    let after = after.unwrap_or(Uuid::nil());
    query_executions(client, &sql, &[&root, &after, &i64::from(limit)]).await
}
