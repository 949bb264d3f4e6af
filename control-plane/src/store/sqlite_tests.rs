//! Tests of [`SqliteStore`]: functions, logs, group commit, persistence and corrupt data
//! (executions are in `sqlite_exec_tests.rs`), plus the helpers both files use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::SqliteStore;
use crate::domain::{Execution, ExecutionStatus, Finished, Holder, LogLine, LogStream, Trigger};
use crate::registry::{content_hash, parse_manifest, FunctionSpec, FunctionVersion};
use crate::store::{Store, StoreError};

/// A function `name` running `command`.
pub(super) fn spec(name: &str, command: &str) -> FunctionSpec {
    parse_manifest(&json!({ "name": name, "command": command }).to_string()).expect("valid spec")
}

/// `time` truncated to the millisecond, as the store keeps it.
pub(super) fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).expect("in range")
}

/// Creates `name` and answers its first version.
pub(super) async fn create(store: &SqliteStore, name: &str) -> FunctionVersion {
    let spec = spec(name, "python3 handler.py");
    store
        .create_function(&spec, &content_hash(&spec))
        .await
        .expect("create function")
}

/// A queued execution of `function` with its timestamps kept to the millisecond.
pub(super) fn execution(function: &FunctionVersion) -> Execution {
    let mut execution = Execution::queued(function, json!({ "n": 1 }), Trigger::Api);
    execution.created_at = ms(execution.created_at);
    execution
}

/// A store in a fresh directory (kept alive by the returned guard).
pub(super) fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).expect("open store");
    (dir, store)
}

fn log(seq: u64, stream: LogStream, line: &str) -> LogLine {
    LogLine {
        seq,
        stream,
        time: ms(Utc::now()),
        line: line.into(),
    }
}

#[tokio::test]
async fn create_function_numbers_versions_and_rejects_an_existing_name() {
    let (_dir, store) = fresh();
    let first = create(&store, "hello").await;
    assert_eq!(first.version, 1);
    assert_eq!(first.name, "hello");
    assert_eq!(first.content_hash, content_hash(&first.spec));
    assert_eq!(
        store.get_function("hello").await.unwrap(),
        Some(first.clone())
    );

    let again = spec("hello", "python3 other.py");
    let err = store
        .create_function(&again, &content_hash(&again))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::FunctionExists(ref name) if name == "hello"),
        "{err}"
    );
    assert_eq!(store.list_versions("hello").await.unwrap(), vec![first]);
    assert_eq!(store.get_function("missing").await.unwrap(), None);
    assert!(store.list_versions("missing").await.unwrap().is_empty());
}

#[tokio::test]
async fn replace_function_adds_versions_unless_the_hash_is_unchanged() {
    let (_dir, store) = fresh();
    let first = create(&store, "hello").await;
    let changed = spec("hello", "python3 v2.py");
    let hash = content_hash(&changed);
    let (second, written) = store.replace_function(&changed, &hash).await.unwrap();
    assert!(written);
    assert_eq!((second.version, &second.content_hash), (2, &hash));
    assert_eq!(second.spec, changed);

    // Same content: nothing written, the current version answered.
    let (same, written) = store.replace_function(&changed, &hash).await.unwrap();
    assert!(!written);
    assert_eq!(same, second);
    // Going back to the first definition is a change (v3), not a reuse of v1.
    let (third, written) = store
        .replace_function(&first.spec, &first.content_hash)
        .await
        .unwrap();
    assert!(written);
    assert_eq!(third.version, 3);

    let versions: Vec<u32> = store
        .list_versions("hello")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(store.get_function("hello").await.unwrap(), Some(third));
    assert_eq!(
        store.get_function_version("hello", 2).await.unwrap(),
        Some(second)
    );
    assert_eq!(store.get_function_version("hello", 9).await.unwrap(), None);

    let missing = spec("nobody", "true");
    let err = store
        .replace_function(&missing, &content_hash(&missing))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::FunctionNotFound(ref name) if name == "nobody"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_hides_a_function_and_recreating_continues_its_versions() {
    let (_dir, store) = fresh();
    create(&store, "hello").await;
    let v2 = spec("hello", "python3 v2.py");
    store
        .replace_function(&v2, &content_hash(&v2))
        .await
        .unwrap();

    assert!(store.delete_function("hello").await.unwrap());
    assert!(!store.delete_function("hello").await.unwrap());
    assert!(!store.delete_function("never").await.unwrap());
    assert_eq!(store.get_function("hello").await.unwrap(), None);
    assert!(store.list_functions().await.unwrap().is_empty());
    assert!(store.list_versions("hello").await.unwrap().is_empty());
    // Old versions stay readable for their executions.
    let kept = store
        .get_function_version("hello", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.spec, v2);
    // Replacing a deleted function is not allowed.
    let err = store
        .replace_function(&v2, &content_hash(&v2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FunctionNotFound(_)), "{err}");

    let recreated = create(&store, "hello").await;
    assert_eq!(recreated.version, 3);
    assert_eq!(store.get_function("hello").await.unwrap(), Some(recreated));
    assert_eq!(store.list_versions("hello").await.unwrap().len(), 3);
}

#[tokio::test]
async fn logs_append_page_and_ignore_duplicates() {
    let (_dir, store) = fresh();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let lines: Vec<LogLine> = (1..=5)
        .map(|seq| log(seq, LogStream::Stdout, &format!("line {seq}")))
        .collect();
    store.append_logs(a, &lines[..3]).await.unwrap();
    // seq 3 again with other text: ignored, the first one stays.
    let mut rest = vec![log(3, LogStream::Stderr, "replaced?")];
    rest.extend_from_slice(&lines[3..]);
    store.append_logs(a, &rest).await.unwrap();
    store.append_logs(a, &[]).await.unwrap();
    store
        .append_logs(b, &[log(1, LogStream::System, "other execution")])
        .await
        .unwrap();

    assert_eq!(store.read_logs(a, 0, 2).await.unwrap(), lines[..2].to_vec());
    assert_eq!(
        store.read_logs(a, 2, 100).await.unwrap(),
        lines[2..].to_vec()
    );
    assert!(store.read_logs(a, 5, 100).await.unwrap().is_empty());
    assert!(store.read_logs(a, u64::MAX, 100).await.unwrap().is_empty());
    assert!(store.read_logs(a, 0, 0).await.unwrap().is_empty());
    let other = store.read_logs(b, 0, 100).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(
        (other[0].stream, other[0].line.as_str()),
        (LogStream::System, "other execution")
    );
    assert!(store
        .read_logs(Uuid::now_v7(), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Holds the writer thread in a job until the returned sender is used or dropped, so the
/// writes queued meanwhile are committed in one batch.
pub(super) async fn hold_writer(store: &Arc<SqliteStore>) -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    let holder = Arc::clone(store);
    tokio::spawn(async move {
        holder
            .write(move |_| {
                let _ = started.send(());
                let _ = released.recv();
                Ok(())
            })
            .await
    });
    running.await.expect("the writer runs the holding job");
    release
}

#[tokio::test]
async fn a_failing_write_in_a_batch_undoes_only_itself() {
    let (_dir, store) = fresh();
    let store = Arc::new(store);
    let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
    let release = hold_writer(&store).await;
    let line = log(1, LogStream::Stdout, "kept");
    let mut tasks = Vec::new();
    for (index, target) in [id, other, id].into_iter().enumerate() {
        let store = Arc::clone(&store);
        let line = line.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |conn| {
                    super::sql::append_logs(conn, target, std::slice::from_ref(&line))?;
                    // The second job writes, then fails: its write must be undone.
                    if index == 1 {
                        return Err(StoreError::FunctionNotFound("boom".into()));
                    }
                    Ok(index)
                })
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(release);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(matches!(results[0], Ok(0)));
    assert!(matches!(results[1], Err(StoreError::FunctionNotFound(_))));
    assert!(matches!(results[2], Ok(2)));
    assert_eq!(store.read_logs(id, 0, 10).await.unwrap(), vec![line]);
    assert!(store.read_logs(other, 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let (function, execution) = {
        let store = SqliteStore::open(&data_dir).unwrap();
        let function = create(&store, "hello").await;
        let mut execution = execution(&function);
        execution.idempotency_key = Some("key-1".into());
        store.insert_execution(&execution).await.unwrap();
        store
            .append_logs(execution.id, &[log(1, LogStream::Stdout, "hi")])
            .await
            .unwrap();
        let finished = Finished {
            status: ExecutionStatus::Success,
            output: Some(json!({ "ok": true })),
            error: None,
            exit_code: Some(0),
            duration_ms: Some(12),
            finished_at: ms(Utc::now()),
            dead_letter: false,
        };
        assert!(store
            .finish_execution(execution.id, Holder::Queue, &finished)
            .await
            .unwrap());
        execution.status = ExecutionStatus::Success;
        execution.output = finished.output;
        execution.exit_code = Some(0);
        execution.duration_ms = Some(12);
        execution.finished_at = Some(finished.finished_at);
        (function, execution)
    };
    assert!(data_dir.join("gantry.db").exists());

    let store = SqliteStore::open(&data_dir).unwrap();
    assert_eq!(store.get_function("hello").await.unwrap(), Some(function));
    assert_eq!(
        store.get_execution(execution.id).await.unwrap(),
        Some(execution.clone())
    );
    assert_eq!(
        store
            .find_by_idempotency_key("hello", "key-1")
            .await
            .unwrap()
            .map(|e| e.id),
        Some(execution.id)
    );
    assert_eq!(store.read_logs(execution.id, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn close_finishes_queued_writes_then_refuses_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let function = create(&store, "hello").await;
    let release = hold_writer(&store).await;
    let queued = execution(&function);
    let insert = {
        let (store, queued) = (Arc::clone(&store), queued.clone());
        tokio::spawn(async move { store.insert_execution(&queued).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.close().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(release);
    closing.await.unwrap();
    insert
        .await
        .unwrap()
        .expect("a write queued before close is committed");

    assert!(matches!(
        store.get_function("hello").await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.insert_execution(&execution(&function)).await,
        Err(StoreError::Closed)
    ));
    drop(store);
    let reopened = SqliteStore::open(dir.path()).unwrap();
    assert!(reopened.get_execution(queued.id).await.unwrap().is_some());
}

/// Runs `sql` on the database in `dir` with a connection of its own.
fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("gantry.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test]
async fn bad_stored_data_is_corrupt_not_a_panic() {
    let (dir, store) = fresh();
    let function = create(&store, "hello").await;
    let (a, b, c) = (
        execution(&function),
        execution(&function),
        execution(&function),
    );
    for e in [&a, &b, &c] {
        store.insert_execution(e).await.unwrap();
    }
    store
        .append_logs(a.id, &[log(1, LogStream::Stdout, "x")])
        .await
        .unwrap();
    tamper(
        dir.path(),
        &format!(
            "UPDATE executions SET status = 'exploded' WHERE id = x'{}';
             UPDATE executions SET input = '{{not json' WHERE id = x'{}';
             UPDATE executions SET version = -4 WHERE id = x'{}';
             UPDATE logs SET stream = 'stdmiddle';
             UPDATE function_versions SET spec = '[]';",
            a.id.simple(),
            b.id.simple(),
            c.id.simple()
        ),
    );
    for id in [a.id, b.id, c.id] {
        let err = store.get_execution(id).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
    assert!(matches!(
        store
            .list_unfinished(crate::store::Unfinished::All, None, 10)
            .await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.read_logs(a.id, 0, 9).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.get_function("hello").await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    tamper(dir.path(), "PRAGMA user_version = 99;");
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                what: "schema version",
                ..
            }
        ),
        "{err}"
    );
    // A current one opens again and again.
    tamper(
        dir.path(),
        &format!("PRAGMA user_version = {};", super::schema::SCHEMA_VERSION),
    );
    drop(SqliteStore::open(dir.path()).unwrap());
    drop(SqliteStore::open(dir.path()).unwrap());
}

#[tokio::test]
async fn the_database_is_in_wal_mode_with_normal_sync() {
    let (_dir, store) = fresh();
    let (mode, sync) = store
        .write(|conn| {
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            let sync: i64 = conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            Ok((mode, sync))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 1, "synchronous=NORMAL");
}

#[test]
fn sqlite_errors_are_classified_into_faults_the_callers_act_on() {
    use crate::store::Fault;
    use rusqlite::ffi;
    let fault = |code| {
        let err = super::sql::database(
            "probe",
            rusqlite::Error::SqliteFailure(ffi::Error::new(code), None),
        );
        (err.fault(), err.is_full(), err.is_unavailable())
    };
    assert_eq!(fault(ffi::SQLITE_FULL), (Some(Fault::Full), true, true));
    assert_eq!(
        fault(ffi::SQLITE_BUSY),
        (Some(Fault::Unavailable), false, true)
    );
    assert_eq!(
        fault(ffi::SQLITE_IOERR),
        (Some(Fault::Unavailable), false, true)
    );
    assert_eq!(
        fault(ffi::SQLITE_READONLY),
        (Some(Fault::Unavailable), false, true)
    );
    assert_eq!(
        fault(ffi::SQLITE_CONSTRAINT),
        (Some(Fault::Conflict), false, false)
    );
    assert_eq!(
        fault(ffi::SQLITE_CORRUPT),
        (Some(Fault::Corrupt), false, false)
    );
    assert_eq!(fault(ffi::SQLITE_ERROR), (Some(Fault::Other), false, false));
    assert!(StoreError::Closed.is_unavailable());
}
