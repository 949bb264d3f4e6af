//! The SQL of the SQLite store's functions and logs (executions are in
//! `sqlite_exec_sql.rs` and `sqlite_exec_reads.rs`): one function per operation, run on
//! a connection by the writer thread or a reader, and the helpers that decode columns.

use chrono::{DateTime, Utc};
use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::domain::{LogLine, LogStream};
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::store::{Fault, StoreError};

/// Maps a rusqlite error to [`StoreError::Database`] for `operation`.
pub(super) fn db(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| database(operation, source)
}

/// `source` as a [`StoreError::Database`] of `operation`, its SQLite code classified
/// into the [`Fault`] callers act on.
pub(super) fn database(operation: &'static str, source: rusqlite::Error) -> StoreError {
    StoreError::database(operation, classify(&source), source)
}

/// The kind of failure an SQLite error is.
fn classify(error: &rusqlite::Error) -> Fault {
    use rusqlite::ErrorCode::*;
    let rusqlite::Error::SqliteFailure(error, _) = error else {
        return Fault::Other;
    };
    match error.code {
        DiskFull => Fault::Full,
        ReadOnly | SystemIoFailure | CannotOpen | DatabaseBusy | DatabaseLocked | OutOfMemory => {
            Fault::Unavailable
        }
        ConstraintViolation => Fault::Conflict,
        DatabaseCorrupt | NotADatabase => Fault::Corrupt,
        _ => Fault::Other,
    }
}

/// Milliseconds since the epoch.
pub(super) fn to_ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// Now, truncated to the millisecond (what the store keeps).
pub(super) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(to_ms(now)).unwrap_or(now)
}

/// JSON text of `value`.
pub(super) fn to_json<T: serde::Serialize>(
    value: &T,
    what: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt {
        what,
        detail: err.to_string(),
    })
}

fn corrupt(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |err| StoreError::Corrupt {
        what,
        detail: err.to_string(),
    }
}

/// Column `index` of `row`; a value of the wrong type is [`StoreError::Corrupt`].
pub(super) fn get<T: FromSql>(
    row: &Row<'_>,
    index: usize,
    what: &'static str,
) -> Result<T, StoreError> {
    row.get(index).map_err(corrupt(what))
}

pub(super) fn get_time(
    row: &Row<'_>,
    index: usize,
    what: &'static str,
) -> Result<DateTime<Utc>, StoreError> {
    let ms: i64 = get(row, index, what)?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        what,
        detail: format!("{ms} ms is out of range"),
    })
}

pub(super) fn get_opt_time(
    row: &Row<'_>,
    index: usize,
    what: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    match get::<Option<i64>>(row, index, what)? {
        None => Ok(None),
        Some(_) => get_time(row, index, what).map(Some),
    }
}

pub(super) fn get_json<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    index: usize,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    let Some(text) = get::<Option<String>>(row, index, what)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| StoreError::Corrupt {
            what,
            detail: err.to_string(),
        })
}

pub(super) fn get_id(
    row: &Row<'_>,
    index: usize,
    what: &'static str,
) -> Result<Option<Uuid>, StoreError> {
    Ok(get::<Option<[u8; 16]>>(row, index, what)?.map(Uuid::from_bytes))
}

pub(super) fn unknown(what: &'static str, text: &str) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: format!("unknown value {text:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Functions

/// Columns of `function_versions v`, in [`decode_version`]'s order.
const VERSION_COLUMNS: &str = "v.name, v.version, v.content_hash, v.spec, v.created_at";

fn decode_version(row: &Row<'_>) -> Result<FunctionVersion, StoreError> {
    Ok(FunctionVersion {
        name: get(row, 0, "function name")?,
        version: get(row, 1, "function version")?,
        content_hash: get(row, 2, "content hash")?,
        spec: get_json(row, 3, "function spec")?.ok_or_else(|| StoreError::Corrupt {
            what: "function spec",
            detail: "missing".into(),
        })?,
        created_at: get_time(row, 4, "function created_at")?,
    })
}

fn query_versions(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<FunctionVersion>, StoreError> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(db("prepare function query"))?;
    let mut rows = stmt.query(params).map_err(db("query functions"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db("read functions"))? {
        out.push(decode_version(row)?);
    }
    Ok(out)
}

/// `(current_version, deleted)` of a function, if it was ever created.
fn function_state(conn: &Connection, name: &str) -> Result<Option<(u32, bool)>, StoreError> {
    conn.prepare_cached("SELECT current_version, deleted FROM functions WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(db("read function"))
}

/// Stores `spec` as the next version of its function and makes it current.
fn insert_version(
    conn: &Connection,
    spec: FunctionSpec,
    spec_json: &str,
    content_hash: String,
) -> Result<FunctionVersion, StoreError> {
    let next: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE name = ?1",
        )
        .and_then(|mut stmt| stmt.query_row([&spec.name], |row| row.get(0)))
        .map_err(db("number function version"))?;
    let version = u32::try_from(next).map_err(|_| StoreError::Corrupt {
        what: "function version",
        detail: format!("{next} is out of range"),
    })?;
    let created_at = now();
    conn.prepare_cached(
        "INSERT INTO function_versions (name, version, content_hash, spec, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            spec.name,
            version,
            content_hash,
            spec_json,
            to_ms(created_at)
        ])
    })
    .map_err(db("insert function version"))?;
    conn.prepare_cached(
        "INSERT INTO functions (name, current_version, deleted) VALUES (?1, ?2, 0)
         ON CONFLICT (name) DO UPDATE SET current_version = excluded.current_version, deleted = 0",
    )
    .and_then(|mut stmt| stmt.execute(params![spec.name, version]))
    .map_err(db("update function"))?;
    Ok(FunctionVersion {
        name: spec.name.clone(),
        version,
        content_hash,
        spec,
        created_at,
    })
}

/// The writer's job of `work` (a new version of `spec`'s function, [`create_function`]
/// or [`replace_function`]): the spec is encoded by the caller, so the writer thread
/// only binds values.
pub(super) fn version_job<T>(
    spec: &FunctionSpec,
    content_hash: &str,
    work: fn(&Connection, FunctionSpec, &str, String) -> Result<T, StoreError>,
) -> Result<impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static, StoreError>
where
    T: 'static,
{
    let spec_json = to_json(spec, "function spec")?;
    let (spec, hash) = (spec.clone(), content_hash.to_owned());
    Ok(move |conn: &Connection| work(conn, spec, &spec_json, hash))
}

/// See [`crate::store::Store::create_function`].
pub(super) fn create_function(
    conn: &Connection,
    spec: FunctionSpec,
    spec_json: &str,
    content_hash: String,
) -> Result<FunctionVersion, StoreError> {
    if let Some((_, false)) = function_state(conn, &spec.name)? {
        return Err(StoreError::FunctionExists(spec.name));
    }
    insert_version(conn, spec, spec_json, content_hash)
}

/// See [`crate::store::Store::replace_function`].
pub(super) fn replace_function(
    conn: &Connection,
    spec: FunctionSpec,
    spec_json: &str,
    content_hash: String,
) -> Result<(FunctionVersion, bool), StoreError> {
    let Some((current, false)) = function_state(conn, &spec.name)? else {
        return Err(StoreError::FunctionNotFound(spec.name));
    };
    let current =
        get_function_version(conn, &spec.name, current)?.ok_or_else(|| StoreError::Corrupt {
            what: "function",
            detail: format!("the current version {current} of {} is missing", spec.name),
        })?;
    if current.content_hash == content_hash {
        return Ok((current, false));
    }
    Ok((insert_version(conn, spec, spec_json, content_hash)?, true))
}

/// See [`crate::store::Store::get_function`].
pub(super) fn get_function(
    conn: &Connection,
    name: &str,
) -> Result<Option<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM functions f
         JOIN function_versions v ON v.name = f.name AND v.version = f.current_version
         WHERE f.name = ?1 AND f.deleted = 0"
    );
    Ok(query_versions(conn, &sql, [name])?.pop())
}

/// See [`crate::store::Store::get_function_version`].
pub(super) fn get_function_version(
    conn: &Connection,
    name: &str,
    version: u32,
) -> Result<Option<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM function_versions v WHERE v.name = ?1 AND v.version = ?2"
    );
    Ok(query_versions(conn, &sql, params![name, version])?.pop())
}

/// See [`crate::store::Store::list_functions`].
pub(super) fn list_functions(conn: &Connection) -> Result<Vec<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM functions f
         JOIN function_versions v ON v.name = f.name AND v.version = f.current_version
         WHERE f.deleted = 0 ORDER BY f.name"
    );
    query_versions(conn, &sql, [])
}

/// See [`crate::store::Store::list_versions`].
pub(super) fn list_versions(
    conn: &Connection,
    name: &str,
) -> Result<Vec<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM function_versions v
         WHERE v.name = ?1
           AND EXISTS (SELECT 1 FROM functions f WHERE f.name = v.name AND f.deleted = 0)
         ORDER BY v.version"
    );
    query_versions(conn, &sql, [name])
}

/// See [`crate::store::Store::delete_function`].
pub(super) fn delete_function(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached("UPDATE functions SET deleted = 1 WHERE name = ?1 AND deleted = 0")
        .and_then(|mut stmt| stmt.execute([name]))
        .map_err(db("delete function"))?;
    Ok(changed > 0)
}

// ---------------------------------------------------------------------------------------
// Logs

/// See [`crate::store::Store::append_logs`]. Lines whose `seq` is already stored are
/// skipped.
pub(super) fn append_logs(
    conn: &Connection,
    id: Uuid,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO logs (execution_id, seq, stream, time, line) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (execution_id, seq) DO NOTHING",
        )
        .map_err(db("prepare log insert"))?;
    for line in lines {
        stmt.execute(params![
            id.into_bytes(),
            line.seq,
            line.stream.as_str(),
            to_ms(line.time),
            line.line,
        ])
        .map_err(db("insert log line"))?;
    }
    Ok(())
}

/// See [`crate::store::Store::read_logs`].
pub(super) fn read_logs(
    conn: &Connection,
    id: Uuid,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<LogLine>, StoreError> {
    let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, stream, time, line FROM logs
             WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(db("prepare log query"))?;
    let mut rows = stmt
        .query(params![id.into_bytes(), after, limit])
        .map_err(db("query logs"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db("read logs"))? {
        let stream: String = get(row, 1, "log stream")?;
        out.push(LogLine {
            seq: get(row, 0, "log seq")?,
            stream: LogStream::parse(&stream).ok_or_else(|| unknown("log stream", &stream))?,
            time: get_time(row, 2, "log time")?,
            line: get(row, 3, "log line")?,
        });
    }
    Ok(out)
}
