//! The queue age on the dispatcher: an execution claimed after its function's
//! `max_queue_age_ms` is ended `EXPIRED` by its claimer, never started, and its
//! `on_failure` chain runs.

use std::time::Duration;

use serde_json::json;

use super::tests::{node, store};
use crate::domain::{codes, Execution, ExecutionStatus, Trigger};
use crate::store::Store;

#[tokio::test]
async fn an_execution_claimed_past_its_age_ends_expired_without_starting() {
    let (_, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "handler", "command": "true"}))
        .await;
    node.deploy(json!({
        "name": "aged",
        "command": "true",
        "max_queue_age_ms": 1000,
        "chains": [{"target": "handler", "condition": "on_failure"}],
    }))
    .await;
    let version = store.get_function("aged").await.unwrap().unwrap();
    let mut late = Execution::queued(&version, json!(1), Trigger::Api);
    late.created_at -= chrono::TimeDelta::seconds(10);
    store.insert_execution(&late).await.unwrap();
    // Queued here as work found in the store is; the sweep's first round is a second
    // away, so the claim meets it first.
    node.dispatcher.enqueue_stored("aged", late.id).await;

    let record = node.final_record(late.id).await;
    assert_eq!(record.status, ExecutionStatus::Error);
    let error = record.error.as_ref().expect("an error");
    assert_eq!(error.code, codes::EXPIRED, "{error:?}");
    assert!(record.started_at.is_none() && record.instance_id.is_none());
    assert_eq!(
        record.owner.as_deref(),
        Some("node-a"),
        "ended by its claimer"
    );
    assert!(!record.dead_letter, "no retry policy");

    // The only instance started is the on_failure chain's.
    let started = node.next_start().await;
    let (child, _) = started.execution();
    let child = store.get_execution(child).await.unwrap().unwrap();
    assert_eq!(
        (child.function.as_str(), child.parent_id),
        ("handler", Some(late.id))
    );
    let more = tokio::time::timeout(Duration::from_millis(200), node.runtime.next_start()).await;
    assert!(more.is_err(), "the expired execution never started");
}
