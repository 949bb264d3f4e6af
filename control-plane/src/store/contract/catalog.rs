//! Contract: everything beside executions (functions and their versions, logs, API
//! tokens, secrets, settings) and retention (pruning and deleting records).

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{claimed, create, finished, ms, queued};
use crate::access::{Role, TokenRecord};
use crate::domain::{ExecutionStatus, Holder, LogLine, LogStream};
use crate::registry::{content_hash, parse_manifest, FunctionSpec};
use crate::secrets::Sealed;
use crate::store::{Deletion, PruneScope, Store, StoreError};

fn spec(name: &str, command: &str) -> FunctionSpec {
    parse_manifest(&json!({ "name": name, "command": command }).to_string()).expect("valid spec")
}

fn line(seq: u64, text: &str) -> LogLine {
    LogLine {
        seq,
        stream: if seq % 2 == 0 {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        },
        time: ms(Utc::now()),
        line: text.into(),
    }
}

/// Versions count from 1; the same content is not a new version; a name is created once.
pub(crate) async fn functions_are_versioned_by_content(store: Arc<dyn Store>) {
    let first = spec("fn", "one");
    let v1 = store
        .create_function(&first, &content_hash(&first))
        .await
        .unwrap();
    assert_eq!((v1.name.as_str(), v1.version), ("fn", 1));
    assert!(matches!(
        store.create_function(&first, &content_hash(&first)).await,
        Err(StoreError::FunctionExists(name)) if name == "fn"
    ));
    let (same, changed) = store
        .replace_function(&first, &content_hash(&first))
        .await
        .unwrap();
    assert_eq!((same.clone(), changed), (v1.clone(), false));
    let second = spec("fn", "two");
    let (v2, changed) = store
        .replace_function(&second, &content_hash(&second))
        .await
        .unwrap();
    assert_eq!((v2.version, changed), (2, true));
    assert_eq!(v2.spec, second);
    assert_eq!(store.get_function("fn").await.unwrap(), Some(v2.clone()));
    assert_eq!(
        store.get_function_version("fn", 1).await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(store.get_function_version("fn", 3).await.unwrap(), None);
    assert_eq!(
        store.list_versions("fn").await.unwrap(),
        vec![v1, v2.clone()]
    );
    let other = create(&*store, "another").await;
    let names: Vec<String> = store
        .list_functions()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec![other.name, "fn".to_owned()], "by name");
    let missing = spec("missing", "x");
    assert!(matches!(
        store
            .replace_function(&missing, &content_hash(&missing))
            .await,
        Err(StoreError::FunctionNotFound(_))
    ));
    assert_eq!(store.get_function("missing").await.unwrap(), None);
}

/// A deleted function is gone from reads but its versions stay readable one by one; a
/// new function of that name continues its numbering.
pub(crate) async fn a_deleted_function_keeps_its_versions_for_its_executions(
    store: Arc<dyn Store>,
) {
    let v1 = create(&*store, "gone").await;
    assert!(store.delete_function("gone").await.unwrap());
    assert!(!store.delete_function("gone").await.unwrap());
    assert!(!store.delete_function("never").await.unwrap());
    assert_eq!(store.get_function("gone").await.unwrap(), None);
    assert!(store.list_versions("gone").await.unwrap().is_empty());
    assert!(store.list_functions().await.unwrap().is_empty());
    assert_eq!(
        store.get_function_version("gone", 1).await.unwrap(),
        Some(v1)
    );
    let again = spec("gone", "again");
    let v2 = store
        .create_function(&again, &content_hash(&again))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(store.get_function("gone").await.unwrap(), Some(v2));
}

/// Lines are kept once per sequence number (a report sent twice adds nothing), per
/// execution, and read in order after a sequence, a page at a time.
pub(crate) async fn logs_append_once_per_sequence_and_page(store: Arc<dyn Store>) {
    let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
    let lines: Vec<LogLine> = (1..=5)
        .map(|seq| line(seq, &format!("line {seq}")))
        .collect();
    store.append_logs(id, &lines[..3]).await.unwrap();
    let mut resent = lines[1..].to_vec();
    resent[0].line = "changed".into();
    store.append_logs(id, &resent).await.unwrap();
    store.append_logs(id, &[]).await.unwrap();
    store
        .append_logs(other, &[line(1, "elsewhere")])
        .await
        .unwrap();
    assert_eq!(
        store.read_logs(id, 0, 100).await.unwrap(),
        lines,
        "first write wins"
    );
    assert_eq!(
        store.read_logs(id, 2, 2).await.unwrap(),
        lines[2..4].to_vec()
    );
    assert!(store.read_logs(id, 5, 10).await.unwrap().is_empty());
    assert_eq!(store.read_logs(other, 0, 10).await.unwrap().len(), 1);
    assert!(store
        .read_logs(Uuid::now_v7(), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A token name is taken once; tokens list by name, record their last use and go.
pub(crate) async fn tokens_are_unique_by_name(store: Arc<dyn Store>) {
    let token = |name: &str| TokenRecord {
        name: name.into(),
        role: Role::Invoke,
        hash: format!("hash-{name}"),
        created_at: ms(Utc::now()),
        last_used_at: None,
    };
    assert!(store.insert_token(&token("zed")).await.unwrap());
    assert!(store.insert_token(&token("ci")).await.unwrap());
    let mut twin = token("ci");
    twin.role = Role::Admin;
    assert!(!store.insert_token(&twin).await.unwrap());
    let at = ms(Utc::now());
    store.touch_token("ci", at).await.unwrap();
    store.touch_token("nobody", at).await.unwrap();
    let listed = store.list_tokens().await.unwrap();
    let mut expected = token("ci");
    expected.created_at = listed[0].created_at;
    expected.last_used_at = Some(at);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], expected, "by name, the first one kept");
    assert!(store.delete_token("ci").await.unwrap());
    assert!(!store.delete_token("ci").await.unwrap());
    assert_eq!(store.list_tokens().await.unwrap().len(), 1);
}

/// Each value of a secret is its next version; the first set time is kept.
pub(crate) async fn secrets_count_their_versions(store: Arc<dyn Store>) {
    let sealed = |n: u8| Sealed {
        nonce: vec![n; 24],
        ciphertext: vec![n; 20],
    };
    let first = store.put_secret("db", &sealed(1)).await.unwrap();
    assert_eq!(first.version, 1);
    let second = store.put_secret("db", &sealed(2)).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.sealed == sealed(2));
    store.put_secret("api", &sealed(3)).await.unwrap();
    let read = store.get_secret("db").await.unwrap().expect("stored");
    assert!(read.version == 2 && read.sealed == sealed(2));
    let names: Vec<String> = store
        .list_secrets()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["api", "db"]);
    assert!(store.delete_secret("db").await.unwrap());
    assert!(!store.delete_secret("db").await.unwrap());
    assert!(store.get_secret("db").await.unwrap().is_none());
}

/// A setting reads back as last set.
pub(crate) async fn settings_are_kept_and_replaced(store: Arc<dyn Store>) {
    assert_eq!(store.get_setting("k").await.unwrap(), None);
    store.put_setting("k", "one").await.unwrap();
    store.put_setting("k", "two").await.unwrap();
    assert_eq!(
        store.get_setting("k").await.unwrap().as_deref(),
        Some("two")
    );
}

/// Pruning deletes finished executions older than the cut, of the functions in scope,
/// oldest first and at most `limit`, with their logs; unfinished ones stay.
pub(crate) async fn retention_prunes_only_old_finished_executions(store: Arc<dyn Store>) {
    let (one, two) = (create(&*store, "one").await, create(&*store, "two").await);
    let long_ago = ms(Utc::now() - TimeDelta::days(30));
    let mut old = Vec::new();
    for n in 0..3 {
        let mut execution = queued(&one);
        execution.status = ExecutionStatus::Success;
        execution.finished_at = Some(long_ago + TimeDelta::seconds(n));
        store.insert_execution(&execution).await.unwrap();
        store
            .append_logs(execution.id, &[line(1, "x")])
            .await
            .unwrap();
        old.push(execution.id);
    }
    let mut theirs = queued(&two);
    theirs.status = ExecutionStatus::Error;
    theirs.finished_at = Some(long_ago);
    store.insert_execution(&theirs).await.unwrap();
    let mut recent = queued(&one);
    recent.status = ExecutionStatus::Success;
    recent.finished_at = Some(ms(Utc::now()));
    store.insert_execution(&recent).await.unwrap();
    let unfinished = queued(&one);
    store.insert_execution(&unfinished).await.unwrap();
    let cut = ms(Utc::now() - TimeDelta::days(1));
    let scope = PruneScope::Function("one".into());
    assert_eq!(store.prune_executions(&scope, cut, 2).await.unwrap(), 2);
    assert_eq!(
        store.get_execution(old[0]).await.unwrap(),
        None,
        "oldest first"
    );
    assert!(store.read_logs(old[0], 0, 10).await.unwrap().is_empty());
    assert!(store.get_execution(old[2]).await.unwrap().is_some());
    assert_eq!(store.prune_executions(&scope, cut, 10).await.unwrap(), 1);
    assert_eq!(store.prune_executions(&scope, cut, 10).await.unwrap(), 0);
    let others = PruneScope::AllBut(vec!["one".into()]);
    assert_eq!(store.prune_executions(&others, cut, 10).await.unwrap(), 1);
    assert_eq!(store.get_execution(theirs.id).await.unwrap(), None);
    for kept in [recent.id, unfinished.id] {
        assert!(store.get_execution(kept).await.unwrap().is_some());
    }
}

/// A delete takes a finished execution and its logs (its idempotency key is free
/// again), never an unfinished one.
pub(crate) async fn a_delete_takes_only_finished_executions_and_their_logs(store: Arc<dyn Store>) {
    let function = create(&*store, "deleted").await;
    let running = claimed(&*store, &function, "node-a").await;
    assert_eq!(
        store.delete_execution(running.id).await.unwrap(),
        Deletion::Unfinished
    );
    let mut done = queued(&function);
    done.idempotency_key = Some("once".into());
    store.insert_execution(&done).await.unwrap();
    let ended = finished(ExecutionStatus::Success);
    assert!(store
        .finish_execution(done.id, Holder::Queue, &ended)
        .await
        .unwrap());
    store.append_logs(done.id, &[line(1, "bye")]).await.unwrap();
    assert_eq!(
        store.delete_execution(done.id).await.unwrap(),
        Deletion::Deleted
    );
    assert_eq!(
        store.delete_execution(done.id).await.unwrap(),
        Deletion::NotFound
    );
    assert_eq!(store.get_execution(done.id).await.unwrap(), None);
    assert!(store.read_logs(done.id, 0, 10).await.unwrap().is_empty());
    let mut reuse = queued(&function);
    reuse.idempotency_key = Some("once".into());
    store.insert_execution(&reuse).await.unwrap();
    assert!(store.get_execution(running.id).await.unwrap().is_some());
}

/// Version pruning keeps each function's newest `keep`, its current version and any
/// version an unfinished execution runs on.
pub(crate) async fn version_pruning_keeps_current_and_used_versions(store: Arc<dyn Store>) {
    let mut versions = Vec::new();
    for n in 1..=5 {
        let spec = spec("pruned", &format!("v{n}"));
        let version = if n == 1 {
            store
                .create_function(&spec, &content_hash(&spec))
                .await
                .unwrap()
        } else {
            store
                .replace_function(&spec, &content_hash(&spec))
                .await
                .unwrap()
                .0
        };
        versions.push(version);
    }
    // Version 2 has a queued execution.
    store.insert_execution(&queued(&versions[1])).await.unwrap();
    assert_eq!(
        store.prune_versions(2).await.unwrap(),
        2,
        "versions 1 and 3"
    );
    let kept: Vec<u32> = store
        .list_versions("pruned")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(kept, vec![2, 4, 5]);
    assert_eq!(store.prune_versions(2).await.unwrap(), 0);
    let single = create(&*store, "single").await;
    assert_eq!(
        store.prune_versions(0).await.unwrap(),
        1,
        "only version 4 of pruned"
    );
    assert_eq!(store.get_function("single").await.unwrap(), Some(single));
}

/// A healthy store answers `ping` and `compact`.
pub(crate) async fn a_healthy_store_answers_ping_and_compacts(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    store.compact().await.unwrap();
}

/// The catalog generation changes with every deploy, new version and delete, and with
/// nothing else.
pub(crate) async fn the_catalog_generation_moves_with_every_function_change(store: Arc<dyn Store>) {
    let start = store.catalog_generation().await.unwrap();
    let first = create(&*store, "gen").await;
    let created = store.catalog_generation().await.unwrap();
    assert_ne!(created, start, "a create changes it");
    let execution = queued(&first);
    store.insert_execution(&execution).await.unwrap();
    store.put_setting("k", "v").await.unwrap();
    assert_eq!(
        store.catalog_generation().await.unwrap(),
        created,
        "executions and settings leave it"
    );
    let mut spec = first.spec.clone();
    spec.description = Some("second".into());
    let (_, changed) = store
        .replace_function(&spec, &content_hash(&spec))
        .await
        .unwrap();
    assert!(changed);
    let replaced = store.catalog_generation().await.unwrap();
    assert_ne!(replaced, created, "a new version changes it");
    assert!(store.delete_function("gen").await.unwrap());
    assert_ne!(
        store.catalog_generation().await.unwrap(),
        replaced,
        "a delete changes it"
    );
}
