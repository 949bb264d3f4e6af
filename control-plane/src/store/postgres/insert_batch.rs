//! Inserting executions on PostgreSQL: the statement for one row, the statement for many
//! (one round trip), and the writer task that gathers concurrent inserts into the latter.
//!
//! A node taking thousands of `:enqueue`s a second would otherwise spend them waiting,
//! each for its own round trip, on a pool of a few connections. The writer takes every
//! insert already queued when it is free (up to [`MAX_BATCH`]) and sends them at once: a
//! lone insert goes out immediately, no timer holds it back, and batches form while a
//! round trip is in flight. Each caller is answered its own row's outcome, exactly as a
//! statement of its own would have: a taken idempotency key is
//! [`StoreError::DuplicateIdempotencyKey`] for that row only, and when the statement
//! fails as a whole its rows are inserted one by one, so one bad row fails alone.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::codec::{self, db, failure, get};
use super::exec_sql::{execute, ExecutionRow};
use crate::store::{Fault, StoreError};

/// Most rows sent in one round trip; also how many inserts may wait for the writer
/// before callers wait to hand theirs over.
pub(super) const MAX_BATCH: usize = 256;

/// Declares the inserted columns once: their names and types, and how a row (or a batch
/// of rows) binds them.
macro_rules! columns {
    ($($column:ident: $type:literal),* $(,)?) => {
        /// The columns an insert writes and their PostgreSQL types, in binding order.
        const COLUMNS: &[(&str, &str)] = &[$((stringify!($column), $type)),*];

        /// The values of one row, in [`COLUMNS`] order.
        fn row_params(row: &ExecutionRow) -> Vec<&(dyn ToSql + Sync)> {
            vec![$(&row.$column),*]
        }

        /// One array per column of `rows`, in [`COLUMNS`] order.
        fn batch_params<'a>(rows: &[&'a ExecutionRow]) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
            vec![$(Box::new(rows.iter().map(|row| &row.$column).collect::<Vec<_>>())),*]
        }
    };
}

columns! {
    id: "uuid", function: "text", version: "int8", status: "text", input: "text",
    output: "text", error: "text", attempt: "int8", parent_id: "uuid", root_id: "uuid",
    depth: "int8", triggered_by: "text", trace_id: "text", idempotency_key: "text",
    timeout_ms: "int8", created_at: "int8", started_at: "int8", finished_at: "int8",
    duration_ms: "int8", cold_start: "bool", instance_id: "text", exit_code: "int4",
    dead_letter: "bool", callback_token_hash: "text", run_at: "int8", attempts: "text",
    owner: "text", lease_until: "int8", traceparent: "text", tracestate: "text",
    scheduled_for: "int8",
}

/// A row whose idempotency key its function already uses is skipped, not an error: the
/// caller is told which execution has it. The check waits for a concurrent insert of
/// the same key to commit or roll back first, so the answer is never a key that ends up
/// unused.
const ON_TAKEN_KEY: &str =
    "ON CONFLICT (function, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// The column names, comma-separated.
fn column_list() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Inserts one row.
static INSERT_ONE: LazyLock<String> = LazyLock::new(|| {
    let values: Vec<String> = (1..=COLUMNS.len()).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO executions ({}) VALUES ({}) {ON_TAKEN_KEY}",
        column_list(),
        values.join(", ")
    )
});

/// Inserts the rows of one array per column, in array order (so of two rows sharing an
/// idempotency key the first wins), and answers the ids of those it inserted.
static INSERT_MANY: LazyLock<String> = LazyLock::new(|| {
    let columns = column_list();
    let arrays: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(n, (_, kind))| format!("${}::{kind}[]", n + 1))
        .collect();
    format!(
        "INSERT INTO executions ({columns})
         SELECT {columns} FROM unnest({}) WITH ORDINALITY AS batch({columns}, batch_order)
         ORDER BY batch_order
         {ON_TAKEN_KEY} RETURNING id",
        arrays.join(", ")
    )
});

/// See [`crate::store::Store::insert_execution`]: one row, in its own statement. A taken
/// idempotency key is [`StoreError::DuplicateIdempotencyKey`] naming the execution that
/// has it.
pub(super) async fn insert_execution(
    client: &impl GenericClient,
    row: &ExecutionRow,
) -> Result<(), StoreError> {
    let params = row_params(row);
    if execute(client, "insert an execution", &INSERT_ONE, &params).await? == 1 {
        return Ok(());
    }
    let holders = key_holders(client, &[row]).await?;
    Err(taken(row, &holders))
}

/// Inserts `rows` in one round trip when there are several, and answers each row's
/// outcome in their order. If the statement fails as a whole (a row breaking another
/// constraint, say), the rows are inserted one by one instead, each answered its own
/// outcome.
pub(super) async fn insert_rows(
    client: &impl GenericClient,
    rows: &[ExecutionRow],
) -> Vec<Result<(), StoreError>> {
    if let [row] = rows {
        return vec![insert_execution(client, row).await];
    }
    let all: Vec<&ExecutionRow> = rows.iter().collect();
    let inserted = match insert_many(client, &all).await {
        Ok(inserted) => inserted,
        Err(err) => {
            tracing::debug!(
                rows = rows.len(),
                "a batch insert failed ({err}): one by one"
            );
            let mut outcomes = Vec::with_capacity(rows.len());
            for row in rows {
                outcomes.push(insert_execution(client, row).await);
            }
            return outcomes;
        }
    };
    let skipped: Vec<&ExecutionRow> = all
        .into_iter()
        .filter(|row| !inserted.contains(&row.id))
        .collect();
    // The rows that were inserted are, whatever this lookup answers.
    let holders = if skipped.is_empty() {
        Ok(HashMap::new())
    } else {
        key_holders(client, &skipped).await
    };
    rows.iter()
        .map(|row| {
            if inserted.contains(&row.id) {
                return Ok(());
            }
            match &holders {
                Ok(holders) => Err(taken(row, holders)),
                Err(err) => Err(copy(err)),
            }
        })
        .collect()
}

/// Runs [`INSERT_MANY`] on `rows`; answers the ids it inserted.
async fn insert_many(
    client: &impl GenericClient,
    rows: &[&ExecutionRow],
) -> Result<HashSet<Uuid>, StoreError> {
    let arrays = batch_params(rows);
    let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|array| &**array as _).collect();
    let statement = client
        .prepare_cached(&INSERT_MANY)
        .await
        .map_err(db("prepare a batch insert"))?;
    let returned = client
        .query(&statement, &params)
        .await
        .map_err(db("insert executions"))?;
    returned
        .iter()
        .map(|row| get(row, 0, "execution id"))
        .collect()
}

/// Which execution holds each idempotency key of `rows` (by function and key), read
/// after their insert committed, so a concurrent winner is seen too.
async fn key_holders(
    client: &impl GenericClient,
    rows: &[&ExecutionRow],
) -> Result<HashMap<(String, String), Uuid>, StoreError> {
    let functions: Vec<&str> = rows.iter().map(|row| row.function.as_str()).collect();
    let keys: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.idempotency_key.as_deref())
        .collect();
    let found = client
        .query(
            "SELECT function, idempotency_key, id FROM executions
             WHERE idempotency_key IS NOT NULL
               AND (function, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            &[&functions, &keys],
        )
        .await
        .map_err(db("find an idempotency key"))?;
    found
        .iter()
        .map(|row| -> Result<_, StoreError> {
            let function = get(row, 0, "execution function")?;
            let key = get(row, 1, "execution idempotency_key")?;
            Ok(((function, key), get(row, 2, "execution id")?))
        })
        .collect()
}

/// The outcome of `row` when its insert was skipped: the execution holding its key.
fn taken(row: &ExecutionRow, holders: &HashMap<(String, String), Uuid>) -> StoreError {
    let holder = row
        .idempotency_key
        .as_ref()
        .and_then(|key| holders.get(&(row.function.clone(), key.clone())));
    match (holder, &row.idempotency_key) {
        (Some(id), _) => StoreError::DuplicateIdempotencyKey(*id),
        // Taken when inserting, gone since (deleted in between): the caller may retry.
        (None, Some(_)) => failure(
            "insert an execution",
            Fault::Conflict,
            "its idempotency key was taken, then freed again".into(),
        ),
        // Only a taken key skips a row; anything else would have failed the statement.
        (None, None) => failure(
            "insert an execution",
            Fault::Other,
            "the row was neither inserted nor refused".into(),
        ),
    }
}

/// `err` again, for another caller it concerns: a [`StoreError`]'s source cannot be
/// cloned, so it is carried as text, with the same operation and fault.
fn copy(err: &StoreError) -> StoreError {
    match err {
        StoreError::Closed => StoreError::Closed,
        StoreError::Database {
            operation,
            fault,
            source,
        } => StoreError::database(operation, *fault, source.to_string()),
        other => failure("insert an execution", Fault::Other, other.to_string()),
    }
}

/// An insert handed to the writer, and where its outcome goes.
struct Request {
    row: ExecutionRow,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle through which the store's inserts reach the writer task. The writer stops
/// once this is dropped or [`InsertWriter::close`]d, after answering every insert it
/// had taken.
pub(super) struct InsertWriter {
    requests: mpsc::Sender<Request>,
    stop: CancellationToken,
}

impl InsertWriter {
    /// Starts the writer task, inserting through connections of `pool`.
    pub(super) fn start(pool: Pool) -> InsertWriter {
        let (requests, queue) = mpsc::channel(MAX_BATCH);
        let stop = CancellationToken::new();
        tokio::spawn(write(pool, queue, stop.clone()));
        InsertWriter { requests, stop }
    }

    /// Inserts `row` in the writer's next batch and answers its own outcome. Waits for
    /// room while the writer is behind; [`StoreError::Closed`] once it has stopped.
    pub(super) async fn insert(&self, row: ExecutionRow) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { row, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        // The writer answers every request it took; only its end without one (a panic)
        // drops the reply.
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking inserts; those already taken are still answered.
    pub(super) fn close(&self) {
        self.stop.cancel();
    }
}

/// The writer task: takes what is queued, inserts it in one round trip, answers each
/// caller, and again, until stopped and drained or every handle is gone.
async fn write(pool: Pool, mut queue: mpsc::Receiver<Request>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        let taken = tokio::select! {
            taken = queue.recv_many(&mut batch, MAX_BATCH) => taken,
            () = stop.cancelled(), if !stopping => {
                // Refuses new requests; those queued are still taken, and answered.
                queue.close();
                stopping = true;
                continue;
            }
        };
        if taken == 0 {
            break;
        }
        let (rows, replies): (Vec<ExecutionRow>, Vec<_>) = batch
            .drain(..)
            .map(|request| (request.row, request.reply))
            .unzip();
        let outcomes = match pool.get().await {
            Ok(client) => insert_rows(&client, &rows).await,
            Err(err) => {
                let err = codec::pool("get a connection")(err);
                rows.iter().map(|_| Err(copy(&err))).collect()
            }
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have given up waiting; its row is in, or not, all the same.
            let _ = reply.send(outcome);
        }
    }
}
