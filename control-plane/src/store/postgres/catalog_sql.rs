//! The SQL of function versions and captured logs.

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;
use uuid::Uuid;

use super::codec::{db, get, get_json, get_time, get_u32, get_u64, to_int, to_ms, unknown};
use crate::domain::{now, LogLine, LogStream};
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::store::StoreError;

// ---------------------------------------------------------------------------------------
// Functions

/// Columns of `function_versions v`, in [`decode_version`]'s order.
const VERSION_COLUMNS: &str = "v.name, v.version, v.content_hash, v.spec, v.created_at";

fn decode_version(row: &Row) -> Result<FunctionVersion, StoreError> {
    Ok(FunctionVersion {
        name: get(row, 0, "function name")?,
        version: get_u32(row, 1, "function version")?,
        content_hash: get(row, 2, "content hash")?,
        spec: get_json(row, 3, "function spec")?.ok_or_else(|| StoreError::Corrupt {
            what: "function spec",
            detail: "missing".into(),
        })?,
        created_at: get_time(row, 4, "function created_at")?,
    })
}

async fn query_versions(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<FunctionVersion>, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(db("prepare a function query"))?;
    let rows = client
        .query(&stmt, params)
        .await
        .map_err(db("query functions"))?;
    rows.iter().map(decode_version).collect()
}

/// Stores `spec` as the next version of its function and makes it current; the caller
/// holds the function's row locked.
async fn insert_version(
    client: &impl GenericClient,
    spec: FunctionSpec,
    spec_json: &str,
    content_hash: String,
) -> Result<FunctionVersion, StoreError> {
    let next: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE name = $1",
            &[&spec.name],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db("number a function version"))?;
    let version = u32::try_from(next).map_err(|_| StoreError::Corrupt {
        what: "function version",
        detail: format!("{next} is out of range"),
    })?;
    let created_at = now();
    client
        .execute(
            "INSERT INTO function_versions (name, version, content_hash, spec, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &spec.name,
                &next,
                &content_hash,
                &spec_json,
                &to_ms(created_at),
            ],
        )
        .await
        .map_err(db("insert a function version"))?;
    client
        .execute(
            "UPDATE functions SET current_version = $2, deleted = false WHERE name = $1",
            &[&spec.name, &next],
        )
        .await
        .map_err(db("update a function"))?;
    Ok(FunctionVersion {
        name: spec.name.clone(),
        version,
        content_hash,
        spec,
        created_at,
    })
}

/// `(current_version, deleted)` of function `name`, its row locked until the
/// transaction ends.
async fn lock_function(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<(u32, bool)>, StoreError> {
    let row = client
        .query_opt(
            "SELECT current_version, deleted FROM functions WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(db("read a function"))?;
    row.map(|row| {
        Ok((
            get_u32(&row, 0, "current version")?,
            get(&row, 1, "deleted")?,
        ))
    })
    .transpose()
}

/// See [`crate::store::Store::create_function`]. Two nodes creating one name at once
/// are serialised on its row: one creates it, the other finds it.
pub(super) async fn create_function(
    client: &mut Object,
    spec: FunctionSpec,
    spec_json: &str,
    content_hash: String,
) -> Result<FunctionVersion, StoreError> {
    let tx = client.transaction().await.map_err(db("begin a create"))?;
    // A new name gets a placeholder row (updated below, before anyone can see it).
    tx.execute(
        "INSERT INTO functions (name, current_version, deleted) VALUES ($1, 0, true)
         ON CONFLICT (name) DO NOTHING",
        &[&spec.name],
    )
    .await
    .map_err(db("create a function"))?;
    if let Some((_, false)) = lock_function(&tx, &spec.name).await? {
        return Err(StoreError::FunctionExists(spec.name));
    }
    let version = insert_version(&tx, spec, spec_json, content_hash).await?;
    tx.commit().await.map_err(db("commit a create"))?;
    Ok(version)
}

/// See [`crate::store::Store::replace_function`].
pub(super) async fn replace_function(
    client: &mut Object,
    spec: FunctionSpec,
    spec_json: &str,
    content_hash: String,
) -> Result<(FunctionVersion, bool), StoreError> {
    let tx = client.transaction().await.map_err(db("begin a replace"))?;
    let Some((current, false)) = lock_function(&tx, &spec.name).await? else {
        return Err(StoreError::FunctionNotFound(spec.name));
    };
    let current = get_function_version(&tx, &spec.name, current)
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            what: "function",
            detail: format!("the current version {current} of {} is missing", spec.name),
        })?;
    if current.content_hash == content_hash {
        return Ok((current, false));
    }
    let version = insert_version(&tx, spec, spec_json, content_hash).await?;
    tx.commit().await.map_err(db("commit a replace"))?;
    Ok((version, true))
}

/// See [`crate::store::Store::get_function`].
pub(super) async fn get_function(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM functions f
         JOIN function_versions v ON v.name = f.name AND v.version = f.current_version
         WHERE f.name = $1 AND NOT f.deleted"
    );
    Ok(query_versions(client, &sql, &[&name]).await?.pop())
}

/// See [`crate::store::Store::get_function_version`].
pub(super) async fn get_function_version(
    client: &impl GenericClient,
    name: &str,
    version: u32,
) -> Result<Option<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM function_versions v WHERE v.name = $1 AND v.version = $2"
    );
    let version = i64::from(version);
    Ok(query_versions(client, &sql, &[&name, &version])
        .await?
        .pop())
}

/// See [`crate::store::Store::list_functions`].
pub(super) async fn list_functions(
    client: &impl GenericClient,
) -> Result<Vec<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM functions f
         JOIN function_versions v ON v.name = f.name AND v.version = f.current_version
         WHERE NOT f.deleted ORDER BY f.name COLLATE \"C\""
    );
    query_versions(client, &sql, &[]).await
}

/// See [`crate::store::Store::list_versions`].
pub(super) async fn list_versions(
    client: &impl GenericClient,
    name: &str,
) -> Result<Vec<FunctionVersion>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM function_versions v
         WHERE v.name = $1
           AND EXISTS (SELECT 1 FROM functions f WHERE f.name = v.name AND NOT f.deleted)
         ORDER BY v.version"
    );
    query_versions(client, &sql, &[&name]).await
}

/// See [`crate::store::Store::delete_function`].
pub(super) async fn delete_function(
    client: &impl GenericClient,
    name: &str,
) -> Result<bool, StoreError> {
    let changed = client
        .execute(
            "UPDATE functions SET deleted = true WHERE name = $1 AND NOT deleted",
            &[&name],
        )
        .await
        .map_err(db("delete a function"))?;
    Ok(changed > 0)
}

// ---------------------------------------------------------------------------------------
// Logs

/// See [`crate::store::Store::append_logs`]: one statement for every line; lines whose
/// `seq` is already stored are skipped.
pub(super) async fn append_logs(
    client: &impl GenericClient,
    id: Uuid,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    let seqs = lines
        .iter()
        .map(|line| to_int(line.seq, "log seq"))
        .collect::<Result<Vec<_>, _>>()?;
    let streams: Vec<&str> = lines.iter().map(|line| line.stream.as_str()).collect();
    let times: Vec<i64> = lines.iter().map(|line| to_ms(line.time)).collect();
    let texts: Vec<&[u8]> = lines.iter().map(|line| line.line.as_bytes()).collect();
    let stmt = client
        .prepare_cached(
            "INSERT INTO logs (execution_id, seq, stream, time, line)
             SELECT $1, seq, stream, time, line
             FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bytea[])
                 AS l(seq, stream, time, line)
             ON CONFLICT (execution_id, seq) DO NOTHING",
        )
        .await
        .map_err(db("prepare a log insert"))?;
    client
        .execute(&stmt, &[&id, &seqs, &streams, &times, &texts])
        .await
        .map_err(db("insert log lines"))?;
    Ok(())
}

/// See [`crate::store::Store::read_logs`].
pub(super) async fn read_logs(
    client: &impl GenericClient,
    id: Uuid,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<LogLine>, StoreError> {
    let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "SELECT seq, stream, time, line FROM logs
             WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .await
        .map_err(db("prepare a log query"))?;
    let rows = client
        .query(&stmt, &[&id, &after, &i64::from(limit)])
        .await
        .map_err(db("read logs"))?;
    rows.iter()
        .map(|row| {
            let stream: &str = get(row, 1, "log stream")?;
            let line: Vec<u8> = get(row, 3, "log line")?;
            Ok(LogLine {
                seq: get_u64(row, 0, "log seq")?,
                stream: LogStream::parse(stream).ok_or_else(|| unknown("log stream", stream))?,
                time: get_time(row, 2, "log time")?,
                line: String::from_utf8(line).map_err(|err| StoreError::Corrupt {
                    what: "log line",
                    detail: err.to_string(),
                })?,
            })
        })
        .collect()
}
