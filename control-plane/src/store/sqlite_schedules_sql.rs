//! The SQL of the SQLite store's schedule cursors (see [`crate::store::cursor`]).

use rusqlite::{params, Connection, Row};

use super::exec_sql::{insert_execution, ExecutionRow};
use super::sql::{db, get, get_time, to_ms};
use crate::store::{CursorScope, ScheduleAdvance, ScheduleCursor, StoreError, MAX_CURSORS};

/// See [`crate::store::Store::list_schedule_cursors`].
pub(super) fn list(conn: &Connection) -> Result<Vec<ScheduleCursor>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT function, key, last_tick FROM schedule_cursors
             ORDER BY function, key LIMIT ?1",
        )
        .map_err(db("list schedule cursors"))?;
    let rows = stmt
        .query_map([MAX_CURSORS], |row| Ok(cursor(row)))
        .map_err(db("list schedule cursors"))?;
    rows.map(|row| row.map_err(db("list schedule cursors"))?)
        .collect()
}

fn cursor(row: &Row<'_>) -> Result<ScheduleCursor, StoreError> {
    Ok(ScheduleCursor {
        function: get(row, 0, "schedule cursor function")?,
        key: get(row, 1, "schedule cursor key")?,
        last_tick: get_time(row, 2, "schedule cursor last_tick")?,
    })
}

/// See [`crate::store::Store::advance_schedule`]: the cursor's move first, so a lost
/// race writes nothing; a failing insert undoes the move (the writer's savepoint).
pub(super) fn advance(
    conn: &Connection,
    advance: &ScheduleAdvance,
    execution: Option<&ExecutionRow>,
) -> Result<bool, StoreError> {
    let (function, key, to) = (&advance.function, &advance.key, to_ms(advance.to));
    let moved = match advance.from {
        None => conn
            .prepare_cached(
                "INSERT INTO schedule_cursors (function, key, last_tick) VALUES (?1, ?2, ?3)
                 ON CONFLICT (function, key) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![function, key, to])),
        Some(from) => conn
            .prepare_cached(
                "UPDATE schedule_cursors SET last_tick = ?3
                 WHERE function = ?1 AND key = ?2 AND last_tick = ?4",
            )
            .and_then(|mut stmt| stmt.execute(params![function, key, to, to_ms(from)])),
    }
    .map_err(db("advance a schedule cursor"))?;
    if moved == 0 {
        return Ok(false);
    }
    if let Some(row) = execution {
        insert_execution(conn, row)?;
    }
    Ok(true)
}

/// A [`CursorScope`] the writer thread owns: the keys it names, or `None` for every
/// cursor.
pub(super) struct Keys(Option<Vec<String>>);

impl Keys {
    /// Copies `scope`.
    pub(super) fn new(scope: CursorScope<'_>) -> Keys {
        Keys(match scope {
            CursorScope::All => None,
            CursorScope::Keys(keys) => Some(keys.to_vec()),
        })
    }

    /// The scope again.
    pub(super) fn scope(&self) -> CursorScope<'_> {
        self.0
            .as_deref()
            .map_or(CursorScope::All, CursorScope::Keys)
    }
}

/// See [`crate::store::Store::delete_schedule_cursors`].
pub(super) fn delete(
    conn: &Connection,
    function: &str,
    scope: CursorScope,
) -> Result<usize, StoreError> {
    match scope {
        CursorScope::All => conn
            .prepare_cached("DELETE FROM schedule_cursors WHERE function = ?1")
            .and_then(|mut stmt| stmt.execute([function])),
        CursorScope::Keys(keys) => keys.iter().try_fold(0, |deleted, key| {
            conn.prepare_cached("DELETE FROM schedule_cursors WHERE function = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute([function, key]))
                .map(|n| deleted + n)
        }),
    }
    .map_err(db("delete schedule cursors"))
}
