//! The dispatcher on fakes: a scripted runtime (the test plays the watchdog) over the
//! memory store behind the write-behind decorator, so the run state machine, claims,
//! leases, deadlines, cancel, retries, chains, store failures and shutdown are checked
//! in milliseconds (on paused time where they wait), with two nodes sharing one store
//! where it matters.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::{CallbackReport, DispatchSettings, Dispatcher, InvokeRequest};
use crate::domain::{codes, Execution, ExecutionStatus, Trigger};
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::pool::Supervision;
use crate::registry::catalog::Catalog;
use crate::runtime::scripted::{ScriptedRuntime, Started};
use crate::secrets::{SecretKey, Vault};
use crate::store::{FollowUps, MemoryStore, Store, WriteBehind};

/// Longest a test waits for something that takes milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// One control-plane node: a dispatcher on its own scripted runtime.
pub(super) struct Node {
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) runtime: Arc<ScriptedRuntime>,
    catalog: Arc<Catalog>,
}

/// A memory store (kept for fault injection) and the decorator the nodes share.
pub(super) fn store() -> (Arc<MemoryStore>, Arc<WriteBehind>) {
    let memory = Arc::new(MemoryStore::new());
    let store = Arc::new(WriteBehind::new(memory.clone()));
    (memory, store)
}

pub(super) async fn node(store: &Arc<WriteBehind>, owner: &str) -> Node {
    let shared: Arc<dyn Store> = store.clone();
    let runtime = ScriptedRuntime::new();
    let key = SecretKey::parse(&"ab".repeat(32), "test").expect("key");
    let vault = Arc::new(Vault::open(shared.clone(), &key).await.expect("vault"));
    let catalog = Arc::new(Catalog::new(shared, runtime.clone(), vault.clone()));
    let metrics = Arc::new(Metrics::new());
    let settings = DispatchSettings {
        callback_base: "http://127.0.0.1:9/v1/internal/executions".into(),
        log_cap_bytes: 1 << 20,
        max_env_payload_bytes: 64 * 1024,
        warm: Supervision {
            health_interval: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_millis(100),
            max_output_bytes: 1 << 20,
        },
        max_chain_depth: 16,
        max_output_bytes: 1 << 20,
        owner: owner.into(),
        poll_results: Some(Duration::from_millis(200)),
        max_queue_age: None,
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        runtime.clone(),
        catalog.clone(),
        vault,
        Arc::new(LogHub::with_metrics(metrics.clone())),
        metrics,
        settings,
    );
    dispatcher.recover().await.expect("recover");
    Node {
        dispatcher,
        runtime,
        catalog,
    }
}

impl Node {
    pub(super) async fn deploy(&self, manifest: Value) {
        self.catalog.create(manifest).await.expect("deploy");
    }

    async fn enqueue(&self, function: &str, input: Value) -> Execution {
        let request = InvokeRequest {
            function: function.into(),
            input,
            trace_id: None,
            trace: None,
            idempotency_key: None,
            timeout_ms: None,
            trigger: Trigger::Api,
            callback_url: None,
        };
        self.dispatcher
            .submit(request)
            .await
            .expect("submit")
            .execution
    }

    pub(super) async fn next_start(&self) -> Started {
        tokio::time::timeout(WAIT, self.runtime.next_start())
            .await
            .expect("an instance starts")
    }

    /// Reports for the instance as its watchdog would; answers whether it applied.
    async fn report(&self, started: &Started, report: Value) -> bool {
        let (id, token) = started.execution();
        let report: CallbackReport = serde_json::from_value(report).expect("a report");
        self.dispatcher
            .complete(id, Some(&token), report)
            .await
            .expect("the callback is taken")
    }

    pub(super) async fn final_record(&self, id: Uuid) -> Execution {
        tokio::time::timeout(WAIT, self.dispatcher.wait_final(id))
            .await
            .expect("it ends")
            .expect("its record")
    }
}

fn success(output: Value) -> Value {
    json!({"success": true, "output": output, "duration_ms": 1, "exit_code": 0})
}

fn failure() -> Value {
    json!({"success": false, "error": {"code": "FUNCTION_ERROR", "message": "exit 1"}, "exit_code": 1})
}

#[tokio::test]
async fn a_run_is_claimed_before_it_starts_and_its_report_recorded() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "f", "command": "true"})).await;
    let execution = node.enqueue("f", json!({"n": 1})).await;
    let started = node.next_start().await;
    let claimed = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(claimed.owner.as_deref(), Some("node-a"));
    assert!(claimed.lease_until.is_some());
    assert!(node.report(&started, success(json!(42))).await);
    assert!(
        !node.report(&started, success(json!(43))).await,
        "a second report changes nothing"
    );
    let done = node.final_record(execution.id).await;
    assert_eq!(done.status, ExecutionStatus::Success);
    assert_eq!(done.output, Some(json!(42)));
    assert_eq!(done.owner.as_deref(), Some("node-a"));
}

#[tokio::test]
async fn two_nodes_never_start_one_execution_twice() {
    let (_memory, store) = store();
    let (a, b) = (node(&store, "node-a").await, node(&store, "node-b").await);
    a.deploy(json!({"name": "f", "command": "true"})).await;
    let function = a.catalog.current("f").await.unwrap();
    for _ in 0..20 {
        let execution = Execution::queued(&function.version, json!(null), Trigger::Api);
        store.insert_execution(&execution).await.unwrap();
        let runs = [a.dispatcher.clone(), b.dispatcher.clone()]
            .map(|dispatcher| tokio::spawn(dispatcher.run("f".into(), execution.id, None)));
        // The run that won the claim ends when its instance does.
        let started = tokio::select! {
            started = a.runtime.next_start() => started,
            started = b.runtime.next_start() => started,
        };
        started.exit(0);
        for run in runs {
            tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
        }
    }
    assert_eq!(
        a.runtime.started() + b.runtime.started(),
        20,
        "each execution started once across both nodes"
    );
}

/// A caller waiting on one node for an execution another node runs gets its result:
/// the end is only in the shared store, which the waiting node reads.
#[tokio::test]
async fn a_waiter_on_one_node_gets_the_result_another_node_recorded() {
    let (_memory, store) = store();
    let (a, b) = (node(&store, "node-a").await, node(&store, "node-b").await);
    b.deploy(json!({"name": "f", "command": "true"})).await;
    let execution = b.enqueue("f", json!(null)).await;
    let started = b.next_start().await;
    let waiter = {
        let dispatcher = a.dispatcher.clone();
        tokio::spawn(async move { dispatcher.wait_final(execution.id).await })
    };
    tokio::task::yield_now().await;
    assert!(b.report(&started, success(json!("from b"))).await);
    let waited = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("the waiter on node A wakes")
        .unwrap()
        .expect("the record");
    assert_eq!(waited.status, ExecutionStatus::Success);
    assert_eq!(waited.output, Some(json!("from b")));
}

/// An execution another node accepted and then held only in its memory when it was
/// lost (never claimed): once it has waited for a minute, a live node runs it.
#[tokio::test]
async fn queued_work_a_lost_node_left_is_run_by_another() {
    let (memory, store) = store();
    let b = node(&store, "node-b").await;
    b.deploy(json!({"name": "f", "command": "true"})).await;
    let function = b.catalog.current("f").await.expect("deployed");
    // Node B's start-up re-queue (of what was queued before it started) is done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut left = Execution::queued(&function.version, json!("left"), Trigger::Api);
    let accepted = crate::domain::now() - chrono::TimeDelta::minutes(2);
    left.id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(accepted.timestamp()).unwrap(),
        0,
    ));
    memory.insert_execution(&left).await.unwrap();
    let fresh = Execution::queued(&function.version, json!("fresh"), Trigger::Api);
    memory.insert_execution(&fresh).await.unwrap();
    b.dispatcher.adopt_stale_at(crate::domain::now()).await;
    let started = b.next_start().await;
    assert_eq!(
        started.execution().0,
        left.id,
        "the stale one, not the fresh one"
    );
    assert!(b.report(&started, success(json!(1))).await);
    assert_eq!(
        b.final_record(left.id).await.status,
        ExecutionStatus::Success
    );
    let untouched = memory.get_execution(fresh.id).await.unwrap().unwrap();
    assert_eq!(
        (untouched.status, untouched.run_at),
        (ExecutionStatus::Queued, None)
    );
}

/// A cancel taken by one node for an execution another node runs: the running node
/// kills its instance and records it cancelled; the first node answers that record.
#[tokio::test]
async fn a_cancel_on_one_node_stops_the_run_on_another() {
    let (_memory, store) = store();
    let (a, b) = (node(&store, "node-a").await, node(&store, "node-b").await);
    b.deploy(json!({"name": "f", "command": "sleep"})).await;
    let execution = b.enqueue("f", json!(null)).await;
    let started = b.next_start().await;
    assert_eq!(started.execution().0, execution.id);
    let cancelled = tokio::time::timeout(WAIT, a.dispatcher.cancel(execution.id))
        .await
        .expect("the cancel ends")
        .expect("it was cancelled");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(
        cancelled.owner.as_deref(),
        Some("node-b"),
        "node B ended it"
    );
    assert!(
        !b.report(&started, success(json!("late"))).await,
        "a late report changes nothing"
    );
}

#[tokio::test]
async fn a_lapsed_claim_is_reclaimed_and_the_old_runner_cannot_record() {
    let (_memory, store) = store();
    let (a, b) = (node(&store, "node-a").await, node(&store, "node-b").await);
    a.deploy(json!({"name": "f", "command": "true"})).await;
    let execution = a.enqueue("f", json!(null)).await;
    let started = a.next_start().await;
    // Node A stops renewing; 60 s later node B finds the lapsed claim and settles it.
    let later = crate::domain::now() + chrono::TimeDelta::seconds(60);
    b.dispatcher.reclaim_lapsed_at(later).await;
    let settled = b.final_record(execution.id).await;
    assert_eq!(settled.status, ExecutionStatus::Error);
    assert_eq!(
        settled.error.as_ref().map(|error| &error.code),
        Some(&codes::NODE_LOST)
    );
    assert_eq!(settled.owner.as_deref(), Some("node-b"));
    assert!(
        !a.report(&started, success(json!("late"))).await,
        "the old runner's result is not applied"
    );
    let kept = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(kept.status, ExecutionStatus::Error, "{kept:?}");
}

#[tokio::test]
async fn a_cancel_racing_the_report_ends_the_execution_once() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "f", "command": "true"})).await;
    for _ in 0..10 {
        let execution = node.enqueue("f", json!(null)).await;
        let started = node.next_start().await;
        let (applied, cancelled) = tokio::join!(
            async {
                let applied = node.report(&started, success(json!("done"))).await;
                started.exit(0);
                applied
            },
            node.dispatcher.cancel(execution.id)
        );
        let done = node.final_record(execution.id).await;
        match done.status {
            ExecutionStatus::Success => {
                assert!(applied);
                assert!(cancelled.is_err(), "the cancel came too late");
            }
            ExecutionStatus::Cancelled => {
                assert!(!applied, "the report came too late");
                assert_eq!(cancelled.expect("cancelled").status, done.status);
                assert!(started.kills() > 0, "its instance was stopped");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_failed_attempt_is_due_after_its_backoff_and_runs_again() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({
        "name": "flaky", "command": "true",
        "retry": {"max_attempts": 2, "initial_backoff_ms": 500, "max_backoff_ms": 500}
    }))
    .await;
    let execution = node.enqueue("flaky", json!(null)).await;
    let first = node.next_start().await;
    let before = crate::domain::now();
    assert!(node.report(&first, failure()).await);
    let after = crate::domain::now();
    first.exit(1);
    let waiting = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status, waiting.attempt),
        (ExecutionStatus::Queued, 2)
    );
    // 500 ms with the policy's ±20 % jitter, counted from the report.
    let run_at = waiting.run_at.expect("the retry waits in the store");
    let (earliest, latest) = (
        before + chrono::TimeDelta::milliseconds(399),
        after + chrono::TimeDelta::milliseconds(601),
    );
    assert!(
        earliest <= run_at && run_at <= latest,
        "{run_at} not in {earliest}..{latest}"
    );
    let second = node.next_start().await;
    assert!(
        crate::domain::now() >= run_at,
        "the retry ran before it was due"
    );
    assert_eq!(node.runtime.started(), 2);
    assert!(node.report(&second, success(json!("ok"))).await);
    let done = node.final_record(execution.id).await;
    assert_eq!((done.status, done.attempt), (ExecutionStatus::Success, 2));
    assert_eq!(done.attempts.len(), 1, "the first failure is kept");
    assert_eq!(done.attempts[0].attempt, 1);
    assert_eq!(done.attempts[0].status, ExecutionStatus::Error);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_hard_limit_ends_as_a_timeout() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "slow", "command": "true", "resources": {"timeout_ms": 1000}}))
        .await;
    let begun = tokio::time::Instant::now();
    let execution = node.enqueue("slow", json!(null)).await;
    // The instance never reports nor exits: its watchdog is gone.
    let started = node.next_start().await;
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        node.dispatcher.wait_final(execution.id),
    )
    .await
    .expect("the hard limit ends it")
    .expect("its record");
    let waited = begun.elapsed();
    assert_eq!(done.status, ExecutionStatus::Timeout, "{done:?}");
    assert_eq!(
        done.error.as_ref().map(|error| &error.code),
        Some(&codes::TIMEOUT)
    );
    // The deadline, then the watchdog's kill grace and the control plane's margin.
    let limit = Duration::from_millis(1000 + gantry_protocol::env::defaults::KILL_GRACE_MS)
        + super::attempt::DEADLINE_MARGIN;
    assert!(
        waited >= limit,
        "ended after {waited:?}, before the hard limit {limit:?}"
    );
    assert!(started.kills() > 0, "its instance was stopped");
    let stored = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Timeout);
}

#[tokio::test]
async fn a_lease_that_lapses_mid_run_moves_the_run_to_another_node() {
    let (_memory, store) = store();
    let (a, b) = (node(&store, "node-a").await, node(&store, "node-b").await);
    a.deploy(json!({
        "name": "f", "command": "true",
        "retry": {"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 10}
    }))
    .await;
    let execution = a.enqueue("f", json!(null)).await;
    let on_a = a.next_start().await;
    let running = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(running.status, ExecutionStatus::Running);
    // Node A stops renewing mid-run; once its lease lapsed node B takes the execution
    // over and, the policy allowing another attempt, runs it again itself.
    let later = crate::domain::now() + chrono::TimeDelta::seconds(60);
    b.dispatcher.reclaim_lapsed_at(later).await;
    let on_b = b.next_start().await;
    assert_eq!(on_b.execution().0, execution.id);
    let moved = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(moved.owner.as_deref(), Some("node-b"));
    assert_eq!(moved.attempt, 2);
    assert!(
        !a.report(&on_a, success(json!("from a"))).await,
        "the old runner's result is refused"
    );
    assert!(b.report(&on_b, success(json!("from b"))).await);
    let done = b.final_record(execution.id).await;
    assert_eq!(done.status, ExecutionStatus::Success);
    assert_eq!(done.output, Some(json!("from b")));
    assert_eq!((done.owner.as_deref(), done.attempt), (Some("node-b"), 2));
    assert_eq!(a.runtime.started() + b.runtime.started(), 2);
}

/// A node with the warm function `w` on a store that refuses every write, with `bound`
/// records already written behind it: the decorator is full.
async fn warm_node_on_a_full_store(bound: usize) -> (Arc<MemoryStore>, Arc<WriteBehind>, Node) {
    let memory = Arc::new(MemoryStore::new());
    let store = Arc::new(WriteBehind::bounded(memory.clone(), bound));
    let node = node(&store, "node-a").await;
    node.deploy(json!({
        "name": "w", "mode": "HTTP", "command": "serve",
        "warm": {"min_instances": 0, "max_instances": 1},
    }))
    .await;
    let function = node.catalog.current("w").await.expect("deployed");
    memory.set_fault(Some(crate::store::Fault::Unavailable));
    for n in 0..bound {
        let mut record = Execution::queued(&function.version, json!(n), Trigger::Api);
        record.status = ExecutionStatus::Success;
        store.write_behind(record, FollowUps::default());
    }
    (memory, store, node)
}

/// A `:invoke` of `w` with timeout `timeout_ms`.
fn warm_call(timeout_ms: u64) -> InvokeRequest {
    InvokeRequest {
        function: "w".into(),
        input: json!(null),
        trace_id: None,
        trace: None,
        idempotency_key: None,
        timeout_ms: Some(timeout_ms),
        trigger: Trigger::Api,
        callback_url: None,
    }
}

/// While the store refuses what warm calls wrote behind, their records wait in memory:
/// past the bound, a new warm call waits for room no longer than its timeout and is then
/// refused (the caller may try again) instead of piling up more; once the store takes
/// them, warm calls are served again.
#[tokio::test(start_paused = true)]
async fn warm_calls_are_refused_while_too_many_results_wait_for_the_store() {
    let (memory, store, node) = warm_node_on_a_full_store(2).await;
    let refused = node.dispatcher.invoke(warm_call(50)).await;
    assert!(
        matches!(refused, Err(super::DispatchError::ResultsUnwritten(2))),
        "{refused:?}"
    );
    memory.set_fault(None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(store.unwritten(), 0, "the store took the waiting records");
    let served = node.dispatcher.invoke(warm_call(50)).await;
    assert!(
        !matches!(served, Err(super::DispatchError::ResultsUnwritten(_))),
        "served again: {served:?}"
    );
}

/// A store that is only slower than the calls (here: refusing for a moment) makes a
/// warm call wait for room instead of refusing it.
#[tokio::test(start_paused = true)]
async fn warm_calls_wait_for_a_store_that_catches_up() {
    let (memory, _store, node) = warm_node_on_a_full_store(1).await;
    let dispatcher = node.dispatcher.clone();
    let call = tokio::spawn(async move { dispatcher.invoke(warm_call(1_000)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!call.is_finished(), "the call waits for room");
    memory.set_fault(None);
    let served = call.await.expect("the call ends");
    assert!(
        !matches!(served, Err(super::DispatchError::ResultsUnwritten(_))),
        "served once the store caught up: {served:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_result_the_store_refuses_is_kept_and_recorded_when_it_is_back() {
    let (memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "f", "command": "true"})).await;
    let execution = node.enqueue("f", json!(null)).await;
    let started = node.next_start().await;
    let waiter = {
        let dispatcher = node.dispatcher.clone();
        tokio::spawn(async move { dispatcher.wait_final(execution.id).await })
    };
    tokio::task::yield_now().await;
    memory.set_fault(Some(crate::store::Fault::Full));
    let (id, token) = started.execution();
    let report: CallbackReport = serde_json::from_value(success(json!(7))).unwrap();
    let refused = node.dispatcher.complete(id, Some(&token), report).await;
    assert!(
        matches!(refused, Err(super::DispatchError::StoreUnavailable(_))),
        "the watchdog is told to report again: {refused:?}"
    );
    let waited = waiter.await.unwrap();
    assert!(
        matches!(waited, Err(super::DispatchError::StoreUnavailable(_))),
        "a waiting caller learns the store fails: {waited:?}"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let kept = memory.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(kept.status, ExecutionStatus::Running, "not recorded yet");
    memory.set_fault(None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let done = node.final_record(execution.id).await;
    assert_eq!(done.status, ExecutionStatus::Success);
    assert_eq!(done.output, Some(json!(7)), "the kept result, not lost");
}

#[tokio::test]
async fn a_chained_child_runs_after_its_parent_succeeds() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "child", "command": "true"}))
        .await;
    node.deploy(json!({"name": "parent", "command": "true", "chains": [{"target": "child"}]}))
        .await;
    let parent = node.enqueue("parent", json!({"n": 1})).await;
    let first = node.next_start().await;
    assert!(node.report(&first, success(json!({"total": 3}))).await);
    let second = node.next_start().await;
    let (child_id, _) = second.execution();
    let child = store.get_execution(child_id).await.unwrap().unwrap();
    assert_eq!(child.parent_id, Some(parent.id));
    assert_eq!(child.input, json!({"total": 3}));
    assert!(node.report(&second, success(json!("child done"))).await);
    assert_eq!(
        node.final_record(child_id).await.status,
        ExecutionStatus::Success
    );
}

#[tokio::test]
async fn shutdown_abandons_what_runs_and_leaves_the_queue_for_the_next_start() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "one", "command": "true", "concurrency": {"max_in_flight": 1}}))
        .await;
    let running = node.enqueue("one", json!(1)).await;
    let waiting = node.enqueue("one", json!(2)).await;
    let started = node.next_start().await;
    node.dispatcher.shutdown(Duration::ZERO).await;
    assert!(started.kills() > 0, "its instance was stopped");
    let running = store.get_execution(running.id).await.unwrap().unwrap();
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!(
        running.owner.as_deref(),
        Some("node-a"),
        "settled by the next start"
    );
    let waiting = store.get_execution(waiting.id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status, waiting.owner),
        (ExecutionStatus::Queued, None)
    );
    assert_eq!(node.runtime.started(), 1);
}

#[tokio::test]
async fn an_instance_that_cannot_start_fails_its_execution() {
    let (_memory, store) = store();
    let node = node(&store, "node-a").await;
    node.deploy(json!({"name": "f", "command": "true"})).await;
    node.runtime.fail_starts("no such file");
    let execution = node.enqueue("f", json!(null)).await;
    let done = node.final_record(execution.id).await;
    assert_eq!(done.status, ExecutionStatus::Error);
    let error = done.error.expect("an error");
    assert_eq!(error.code, codes::SPAWN_ERROR);
    assert!(error.message.contains("no such file"), "{error:?}");
}
