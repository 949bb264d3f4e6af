//! Tests of [`SqliteStore`]'s executions: round trips, idempotency keys, status rules,
//! listing and paging, and many concurrent inserts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::tests::{create, execution, fresh, hold_writer, ms};
use crate::domain::{
    Claim, Execution, ExecutionError, ExecutionStatus, Finished, Holder, Started, Trigger,
};
use crate::store::{ExecutionFilter, FollowUps, Store, StoreError, Unfinished};

fn started(instance: &str) -> Started {
    Started {
        instance_id: instance.into(),
        cold_start: true,
        callback_token_hash: "ab".repeat(32),
        started_at: ms(Utc::now()),
    }
}

/// The node the tests claim executions for.
const NODE: &str = "node-a";

/// A claim for `owner`, lapsing `seconds` from now.
fn claim_for(owner: &str, seconds: i64) -> Claim {
    Claim {
        owner: owner.into(),
        lease_until: ms(Utc::now() + chrono::TimeDelta::seconds(seconds)),
        max_in_flight: None,
    }
}

fn finished(status: ExecutionStatus) -> Finished {
    let failed = status != ExecutionStatus::Success;
    Finished {
        status,
        output: (!failed).then(|| json!({ "answer": 42 })),
        error: failed.then(|| ExecutionError::new("RUNTIME_CRASHED", "it died")),
        exit_code: Some(i32::from(failed)),
        duration_ms: Some(5),
        finished_at: ms(Utc::now()),
        dead_letter: false,
    }
}

#[tokio::test]
async fn an_execution_round_trips_with_every_field() {
    let (_dir, store) = fresh();
    let function = create(&store, "hello").await;
    let mut full = execution(&function);
    full.status = ExecutionStatus::Error;
    full.input = json!({ "nested": [1, "two", null], "s": "é" });
    full.output = Some(json!(null));
    full.error = Some(ExecutionError::new("TIMEOUT", "too slow"));
    full.attempt = 3;
    full.parent_id = Some(Uuid::now_v7());
    full.root_id = Some(Uuid::now_v7());
    full.depth = 2;
    full.trigger = Trigger::Chain;
    full.trace_id = Some("trace-1".into());
    full.idempotency_key = Some("key".into());
    full.timeout_ms = 900_000;
    full.started_at = Some(ms(Utc::now()));
    full.finished_at = Some(ms(Utc::now()));
    full.duration_ms = Some(77);
    full.cold_start = Some(false);
    full.instance_id = Some("inst-9".into());
    full.exit_code = Some(-9);
    full.dead_letter = true;
    full.callback_token_hash = Some("cd".repeat(32));
    store.insert_execution(&full).await.unwrap();
    let plain = execution(&function);
    store.insert_execution(&plain).await.unwrap();

    assert_eq!(store.get_execution(full.id).await.unwrap(), Some(full));
    assert_eq!(store.get_execution(plain.id).await.unwrap(), Some(plain));
    assert_eq!(store.get_execution(Uuid::now_v7()).await.unwrap(), None);
}

fn keyed(function: &crate::registry::FunctionVersion, key: &str) -> Execution {
    let mut execution = execution(function);
    execution.idempotency_key = Some(key.into());
    execution
}

#[tokio::test]
async fn an_idempotency_key_is_unique_per_function_across_batches() {
    let (_dir, store) = fresh();
    let hello = create(&store, "hello").await;
    let other = create(&store, "other").await;
    let first = keyed(&hello, "k");
    store.insert_execution(&first).await.unwrap();

    let err = store
        .insert_execution(&keyed(&hello, "k"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateIdempotencyKey(id) if id == first.id),
        "{err}"
    );
    // The same key on another function, and executions without a key, are fine.
    store.insert_execution(&keyed(&other, "k")).await.unwrap();
    store.insert_execution(&execution(&hello)).await.unwrap();
    store.insert_execution(&execution(&hello)).await.unwrap();

    let found = store.find_by_idempotency_key("hello", "k").await.unwrap();
    assert_eq!(found.map(|e| e.id), Some(first.id));
    assert_eq!(
        store
            .find_by_idempotency_key("hello", "nope")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.find_by_idempotency_key("third", "k").await.unwrap(),
        None
    );
    let all = ExecutionFilter {
        limit: 100,
        ..ExecutionFilter::default()
    };
    assert_eq!(store.list_executions(&all).await.unwrap().len(), 4);
}

#[tokio::test]
async fn an_idempotency_key_is_unique_within_one_batch() {
    let (_dir, store) = fresh();
    let store = Arc::new(store);
    let hello = create(&store, "hello").await;
    let release = hold_writer(&store).await;
    let batch = [
        keyed(&hello, "k"),
        keyed(&hello, "k"),
        keyed(&hello, "other"),
        keyed(&hello, "k"),
    ];
    let mut tasks = Vec::new();
    for execution in batch.clone() {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.insert_execution(&execution).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(release);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let winners: Vec<Uuid> = batch
        .iter()
        .zip(&results)
        .filter(|(e, r)| r.is_ok() && e.idempotency_key.as_deref() == Some("k"))
        .map(|(e, _)| e.id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (e, result) in batch.iter().zip(&results) {
        match result {
            Ok(()) => assert!(store.get_execution(e.id).await.unwrap().is_some()),
            Err(StoreError::DuplicateIdempotencyKey(id)) => {
                assert_eq!(*id, winners[0]);
                assert!(store.get_execution(e.id).await.unwrap().is_none());
            }
            Err(err) => panic!("unexpected {err}"),
        }
    }
    assert!(results[2].is_ok(), "another key in the same batch is kept");
}

#[tokio::test]
async fn a_terminal_status_is_never_overwritten() {
    let (_dir, store) = fresh();
    let function = create(&store, "hello").await;
    let e = execution(&function);
    store.insert_execution(&e).await.unwrap();

    let start = started("inst-1");
    assert!(
        !store.mark_running(e.id, NODE, &start).await.unwrap(),
        "only a claimed execution starts running"
    );
    assert!(store.claim(e.id, &claim_for(NODE, 30)).await.unwrap());
    assert!(store.mark_running(e.id, NODE, &start).await.unwrap());
    let running = store.get_execution(e.id).await.unwrap().unwrap();
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!(running.started_at, Some(start.started_at));
    assert_eq!(running.instance_id.as_deref(), Some("inst-1"));
    assert_eq!(running.cold_start, Some(true));
    assert_eq!(
        running.callback_token_hash,
        Some(start.callback_token_hash.clone())
    );
    assert!(
        !store
            .mark_running(e.id, NODE, &started("inst-2"))
            .await
            .unwrap(),
        "a running execution is not started again"
    );

    let success = finished(ExecutionStatus::Success);
    assert!(
        !store
            .finish_execution(e.id, Holder::Owner("node-b"), &success)
            .await
            .unwrap(),
        "another node cannot finish what this one holds"
    );
    assert!(store
        .finish_execution(e.id, Holder::Owner(NODE), &success)
        .await
        .unwrap());
    for status in [
        ExecutionStatus::Error,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
    ] {
        assert!(!store
            .finish_execution(e.id, Holder::Owner(NODE), &finished(status))
            .await
            .unwrap());
    }
    assert!(!store
        .mark_running(e.id, NODE, &started("inst-3"))
        .await
        .unwrap());
    assert!(!store.requeue(e.id, NODE, 2).await.unwrap());

    let done = store.get_execution(e.id).await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Success);
    assert_eq!(done.output, success.output);
    assert_eq!(done.error, None);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.duration_ms, Some(5));
    assert_eq!(done.finished_at, Some(success.finished_at));
    assert_eq!(done.instance_id.as_deref(), Some("inst-1"));
    assert_eq!(
        done.owner.as_deref(),
        Some(NODE),
        "the record says who ran it"
    );
    assert_eq!(done.lease_until, None);
    assert_eq!(done.attempt, 1);

    // A queued execution is ended through the queue (a cancel), then stays cancelled;
    // no runner ends what it does not hold.
    let queued = execution(&function);
    store.insert_execution(&queued).await.unwrap();
    let cancel = finished(ExecutionStatus::Cancelled);
    assert!(!store
        .finish_execution(queued.id, Holder::Owner(NODE), &cancel)
        .await
        .unwrap());
    assert!(store
        .finish_execution(queued.id, Holder::Queue, &cancel)
        .await
        .unwrap());
    assert!(!store
        .finish_execution(
            queued.id,
            Holder::Queue,
            &finished(ExecutionStatus::Success)
        )
        .await
        .unwrap());
    let cancelled = store.get_execution(queued.id).await.unwrap().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.error),
        (ExecutionStatus::Cancelled, cancel.error)
    );

    // Unknown ids change nothing.
    let unknown = Uuid::now_v7();
    assert!(!store.claim(unknown, &claim_for(NODE, 30)).await.unwrap());
    assert!(!store.mark_running(unknown, NODE, &start).await.unwrap());
    assert!(!store.requeue(unknown, NODE, 2).await.unwrap());
    assert!(!store
        .finish_execution(unknown, Holder::Queue, &success)
        .await
        .unwrap());
}

#[tokio::test]
async fn requeue_clears_the_start_fields() {
    let (_dir, store) = fresh();
    let function = create(&store, "hello").await;
    let e = execution(&function);
    store.insert_execution(&e).await.unwrap();
    assert!(store.claim(e.id, &claim_for(NODE, 30)).await.unwrap());
    assert!(store
        .mark_running(e.id, NODE, &started("inst-1"))
        .await
        .unwrap());
    assert!(!store.requeue(e.id, "node-b", 2).await.unwrap());
    assert!(store.requeue(e.id, NODE, 2).await.unwrap());

    let requeued = store.get_execution(e.id).await.unwrap().unwrap();
    assert_eq!(requeued.status, ExecutionStatus::Queued);
    assert_eq!(requeued.attempt, 2);
    assert_eq!(requeued.started_at, None);
    assert_eq!(requeued.instance_id, None);
    assert_eq!(requeued.callback_token_hash, None);
    assert_eq!(requeued.cold_start, None);
    assert_eq!((requeued.owner, requeued.lease_until), (None, None));
    // A queued execution is held by nobody: it is not requeued again.
    assert!(!store.requeue(e.id, NODE, 3).await.unwrap());
    assert_eq!(store.get_execution(e.id).await.unwrap().unwrap().attempt, 2);
}

#[tokio::test]
async fn list_unfinished_answers_open_executions_oldest_first() {
    let (_dir, store) = fresh();
    let function = create(&store, "hello").await;
    let mut expected = Vec::new();
    for status in [
        ExecutionStatus::Running,
        ExecutionStatus::Success,
        ExecutionStatus::Queued,
        ExecutionStatus::Cancelled,
        ExecutionStatus::Starting,
        ExecutionStatus::Timeout,
        ExecutionStatus::Error,
        ExecutionStatus::Queued,
    ] {
        let mut e = execution(&function);
        e.status = status;
        store.insert_execution(&e).await.unwrap();
        if !status.is_terminal() {
            expected.push(e.id);
        }
    }
    let ids = |found: Vec<Execution>| found.into_iter().map(|e| e.id).collect::<Vec<Uuid>>();
    let unfinished = store
        .list_unfinished(Unfinished::All, None, 100)
        .await
        .unwrap();
    assert!(unfinished.iter().all(|e| e.input.is_null()), "no payloads");
    assert_eq!(ids(unfinished), expected);
    // In pages, and by kind.
    let first = store
        .list_unfinished(Unfinished::All, None, 2)
        .await
        .unwrap();
    assert_eq!(ids(first), expected[..2]);
    let rest = store
        .list_unfinished(Unfinished::All, Some(expected[1]), 10)
        .await
        .unwrap();
    assert_eq!(ids(rest), expected[2..]);
    let queued = store
        .list_unfinished(Unfinished::Queued, None, 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    let started = store
        .list_unfinished(Unfinished::HeldBy(NODE.into()), None, 10)
        .await
        .unwrap();
    assert_eq!(
        started.len(),
        2,
        "records without an owner count as this node's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_inserts_all_land() {
    const TASKS: usize = 64;
    const EACH: usize = 80;
    let (_dir, store) = fresh();
    let store = Arc::new(store);
    let function = create(&store, "hello").await;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, function) = (Arc::clone(&store), function.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(EACH);
            for n in 0..EACH {
                let mut e = execution(&function);
                e.idempotency_key = Some(format!("{task}-{n}"));
                store.insert_execution(&e).await.expect("insert");
                ids.push(e.id);
            }
            ids
        }));
    }
    let mut inserted = HashSet::new();
    for task in tasks {
        inserted.extend(task.await.unwrap());
    }
    let elapsed = began.elapsed();
    eprintln!(
        "{} inserts from {TASKS} tasks in {elapsed:?} ({:.0}/s)",
        inserted.len(),
        inserted.len() as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(inserted.len(), TASKS * EACH);
    let listed = store
        .list_executions(&ExecutionFilter {
            limit: 100_000,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    let listed_ids: HashSet<Uuid> = listed.iter().map(|e| e.id).collect();
    assert_eq!(listed.len(), TASKS * EACH);
    assert_eq!(listed_ids, inserted);
    assert!(listed.windows(2).all(|pair| pair[0].id > pair[1].id));
    let unfinished = store
        .list_unfinished(Unfinished::All, None, 100_000)
        .await
        .unwrap();
    assert_eq!(unfinished.len(), TASKS * EACH);
}

#[tokio::test]
async fn an_execution_of_a_closed_store_is_refused() {
    let (_dir, store) = fresh();
    let function = create(&store, "hello").await;
    store.close().await;
    store.close().await; // twice is fine
    let err = store
        .insert_execution(&execution(&function))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err}");
    assert!(matches!(
        store.list_unfinished(Unfinished::All, None, 1).await,
        Err(StoreError::Closed)
    ));
}

#[tokio::test]
async fn children_are_stored_once_with_the_finish_and_retries_keep_each_failure() {
    let (_dir, store) = fresh();
    let function = create(&store, "hello").await;
    let parent = execution(&function);
    store.insert_execution(&parent).await.unwrap();
    // A failed attempt scheduled again keeps its failure, twice over.
    for attempt in 1..=2 {
        assert!(store.claim(parent.id, &claim_for(NODE, 30)).await.unwrap());
        let failure = crate::domain::AttemptFailure {
            attempt,
            status: ExecutionStatus::Error,
            error: Some(ExecutionError::new("FUNCTION_ERROR", "exit 1")),
            exit_code: Some(1),
            finished_at: ms(Utc::now()),
        };
        // Already due, so the next round can claim it.
        let run_at = ms(Utc::now()) - chrono::Duration::seconds(1);
        assert!(store
            .schedule_retry(parent.id, NODE, attempt + 1, run_at, &failure)
            .await
            .unwrap());
        let stored = store.get_execution(parent.id).await.unwrap().unwrap();
        assert_eq!(stored.status, ExecutionStatus::Queued);
        assert_eq!(stored.attempt, attempt + 1);
        assert_eq!(stored.run_at, Some(run_at));
        assert_eq!(stored.attempts.len(), attempt as usize);
        assert_eq!(stored.attempts.last(), Some(&failure));
    }
    let mut child = execution(&function);
    child.parent_id = Some(parent.id);
    child.root_id = Some(parent.id);
    child.depth = 1;
    let done = finished(ExecutionStatus::Success);
    assert!(store.claim(parent.id, &claim_for(NODE, 30)).await.unwrap());
    assert!(store
        .finish_with_follow_ups(
            parent.id,
            Holder::Owner(NODE),
            &done,
            &FollowUps::children(vec![child.clone()])
        )
        .await
        .unwrap());
    // A second report changes nothing and starts no second child.
    let mut other = child.clone();
    other.id = Uuid::now_v7();
    assert!(!store
        .finish_with_follow_ups(
            parent.id,
            Holder::Owner(NODE),
            &done,
            &FollowUps::children(vec![other])
        )
        .await
        .unwrap());
    let tree = store.chain_tree(parent.id, None, 10).await.unwrap();
    let ids: Vec<Uuid> = tree.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![parent.id, child.id]);
    assert_eq!(tree[0].run_at, None, "finishing clears run_at");
    // Paged: one member at a time, after the one before.
    let first = store.chain_tree(parent.id, None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store
        .chain_tree(parent.id, Some(first[0].id), 1)
        .await
        .unwrap();
    assert_eq!(second[0].id, child.id);
    assert!(store
        .chain_tree(parent.id, Some(child.id), 1)
        .await
        .unwrap()
        .is_empty());
}
