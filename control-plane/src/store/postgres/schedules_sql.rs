//! The SQL of the PostgreSQL store's schedule cursors (see [`crate::store::cursor`]).
//! The cursor's move takes its row's lock, so of two nodes firing one tick the second
//! waits, then finds the cursor moved and writes nothing.

use deadpool_postgres::{GenericClient, Object};

use super::codec::{db, get, get_time, to_ms};
use super::exec_sql::ExecutionRow;
use super::insert_batch::insert_execution;
use crate::store::{CursorScope, ScheduleAdvance, ScheduleCursor, StoreError, MAX_CURSORS};

/// See [`crate::store::Store::list_schedule_cursors`].
pub(super) async fn list(client: &impl GenericClient) -> Result<Vec<ScheduleCursor>, StoreError> {
    let rows = client
        .query(
            "SELECT function, key, last_tick FROM schedule_cursors
             ORDER BY function, key LIMIT $1",
            &[&i64::from(MAX_CURSORS)],
        )
        .await
        .map_err(db("list schedule cursors"))?;
    rows.iter()
        .map(|row| {
            Ok(ScheduleCursor {
                function: get(row, 0, "schedule cursor function")?,
                key: get(row, 1, "schedule cursor key")?,
                last_tick: get_time(row, 2, "schedule cursor last_tick")?,
            })
        })
        .collect()
}

/// See [`crate::store::Store::advance_schedule`].
pub(super) async fn advance(
    client: &mut Object,
    advance: &ScheduleAdvance,
    execution: Option<&ExecutionRow>,
) -> Result<bool, StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("begin a schedule fire"))?;
    let (function, key, to) = (&advance.function, &advance.key, to_ms(advance.to));
    let moved = match advance.from {
        None => {
            tx.execute(
                "INSERT INTO schedule_cursors (function, key, last_tick) VALUES ($1, $2, $3)
                 ON CONFLICT (function, key) DO NOTHING",
                &[function, key, &to],
            )
            .await
        }
        Some(from) => {
            tx.execute(
                "UPDATE schedule_cursors SET last_tick = $3
                 WHERE function = $1 AND key = $2 AND last_tick = $4",
                &[function, key, &to, &to_ms(from)],
            )
            .await
        }
    }
    .map_err(db("advance a schedule cursor"))?;
    if moved == 0 {
        return Ok(false);
    }
    if let Some(row) = execution {
        insert_execution(&tx, row).await?;
    }
    tx.commit().await.map_err(db("commit a schedule fire"))?;
    Ok(true)
}

/// See [`crate::store::Store::delete_schedule_cursors`].
pub(super) async fn delete(
    client: &impl GenericClient,
    function: &str,
    scope: CursorScope<'_>,
) -> Result<usize, StoreError> {
    let deleted = match scope {
        CursorScope::All => {
            client
                .execute(
                    "DELETE FROM schedule_cursors WHERE function = $1",
                    &[&function],
                )
                .await
        }
        CursorScope::Keys(keys) => {
            client
                .execute(
                    "DELETE FROM schedule_cursors WHERE function = $1 AND key = ANY($2)",
                    &[&function, &keys],
                )
                .await
        }
    }
    .map_err(db("delete schedule cursors"))?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}
