//! Tests of the version prune (`retention_sql.rs`) against the tests' PostgreSQL, where
//! another node's insert can be in flight while it runs: a version an execution is
//! being inserted on is kept, and a prune that cannot get the executions table, or the
//! versions another node's prune holds, in time deletes nothing.

use std::time::Duration;

use deadpool_postgres::Object;
use serde_json::json;

use super::exec_sql::ExecutionRow;
use super::insert_batch::insert_execution;
use super::test_server::TestPostgres;
use super::PostgresStore;
use crate::registry::{content_hash, parse_manifest, FunctionVersion};
use crate::store::contract::queued;
use crate::store::Store;

/// A store on a fresh database, its URL, and versions 1 to 3 of `f` (3 current).
async fn three_versions() -> (PostgresStore, String, Vec<FunctionVersion>) {
    let url = TestPostgres::shared().create_database().await;
    let store = PostgresStore::open(&url).await.expect("open the store");
    let mut versions = Vec::new();
    for n in 1..=3 {
        let manifest = json!({"name": "f", "command": format!("run-{n}")});
        let spec = parse_manifest(&manifest.to_string()).expect("valid spec");
        let hash = content_hash(&spec);
        let version = if n == 1 {
            store.create_function(&spec, &hash).await
        } else {
            store.replace_function(&spec, &hash).await.map(|(v, _)| v)
        };
        versions.push(version.expect("store the version"));
    }
    (store, url, versions)
}

async fn stored_versions(store: &PostgresStore) -> Vec<u32> {
    let versions = store.list_versions("f").await.expect("list versions");
    versions.iter().map(|version| version.version).collect()
}

/// Another node's store and one of its connections, on which an execution of `version`
/// is inserted in a transaction left open (`COMMIT` or `ROLLBACK` ends it).
async fn insert_left_open(url: &str, version: &FunctionVersion) -> (PostgresStore, Object) {
    let node = PostgresStore::open(url).await.expect("open another store");
    let connection = node.client().await.expect("a connection");
    connection.batch_execute("BEGIN").await.expect("begin");
    let row = ExecutionRow::new(&queued(version)).expect("encode");
    insert_execution(&connection, &row).await.expect("insert");
    (node, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_an_execution_is_being_inserted_on_is_kept() {
    let (store, url, versions) = three_versions().await;
    let (_node, insert) = insert_left_open(&url, &versions[0]).await;
    let prune = tokio::spawn(async move {
        let pruned = store.prune_versions(1).await;
        (pruned, store)
    });
    // A prune that did not wait for the insert would delete version 1 by now, its
    // execution not yet visible.
    tokio::time::sleep(Duration::from_millis(100)).await;
    insert
        .batch_execute("COMMIT")
        .await
        .expect("commit the insert");
    let (pruned, store) = prune.await.expect("prune task");
    assert_eq!(pruned.expect("prune"), 1, "only version 2");
    assert_eq!(stored_versions(&store).await, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_that_cannot_lock_in_time_deletes_nothing() {
    let (store, url, versions) = three_versions().await;
    let (_node, insert) = insert_left_open(&url, &versions[0]).await;
    // The insert stays open past the prune's wait.
    assert_eq!(store.prune_versions(1).await.expect("prune"), 0);
    assert_eq!(stored_versions(&store).await, vec![1, 2, 3]);
    insert
        .batch_execute("ROLLBACK")
        .await
        .expect("roll the insert back");
    assert_eq!(store.prune_versions(1).await.expect("prune again"), 2);
    assert_eq!(stored_versions(&store).await, vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_behind_another_nodes_prune_gives_way() {
    let (store, url, _) = three_versions().await;
    // Another node's prune, holding version 1 past this one's wait.
    let node = PostgresStore::open(&url).await.expect("open another store");
    let other = node.client().await.expect("a connection");
    other
        .batch_execute("BEGIN; DELETE FROM function_versions WHERE name = 'f' AND version = 1")
        .await
        .expect("the other prune");
    assert_eq!(store.prune_versions(1).await.expect("prune"), 0);
    other.batch_execute("ROLLBACK").await.expect("roll it back");
    assert_eq!(store.prune_versions(1).await.expect("prune again"), 2);
    assert_eq!(stored_versions(&store).await, vec![3]);
}
