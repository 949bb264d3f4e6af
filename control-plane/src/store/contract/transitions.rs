//! Contract: an execution's status moves by compare-and-set. Only the owner of a claim
//! starts, finishes, requeues or reschedules it; a terminal status is never overwritten;
//! of many racing reports exactly one applies.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};

use super::{claim_for, claimed, create, finished, ms, queued, started};
use crate::domain::{AttemptFailure, ExecutionError, ExecutionStatus, Holder};
use crate::store::Store;

/// `starting` → `running` only for the claim's owner, once, with the start recorded.
pub(crate) async fn only_the_claiming_owner_marks_a_start(store: Arc<dyn Store>) {
    let function = create(&*store, "start").await;
    let unclaimed = queued(&function);
    store.insert_execution(&unclaimed).await.unwrap();
    let start = started("i-1");
    assert!(
        !store
            .mark_running(unclaimed.id, "node-a", &start)
            .await
            .unwrap(),
        "a queued execution is claimed before it starts"
    );
    let execution = claimed(&*store, &function, "node-a").await;
    assert!(!store
        .mark_running(execution.id, "node-b", &start)
        .await
        .unwrap());
    assert!(store
        .mark_running(execution.id, "node-a", &start)
        .await
        .unwrap());
    assert!(
        !store
            .mark_running(execution.id, "node-a", &start)
            .await
            .unwrap(),
        "running already"
    );
    let record = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Running);
    assert_eq!(record.started_at, Some(start.started_at));
    assert_eq!(record.instance_id.as_deref(), Some("i-1"));
    assert_eq!(record.cold_start, Some(true));
    assert_eq!(record.callback_token_hash.as_deref(), Some("hash-of-i-1"));
    assert_eq!(record.owner.as_deref(), Some("node-a"));
}

/// Sixteen reports of different outcomes race to finish one running execution: one
/// applies, the record is its outcome, and later ones change nothing.
pub(crate) async fn one_result_wins_a_race_of_reports(store: Arc<dyn Store>) {
    let function = create(&*store, "race").await;
    let execution = claimed(&*store, &function, "node-a").await;
    assert!(store
        .mark_running(execution.id, "node-a", &started("i-1"))
        .await
        .unwrap());
    let statuses = [
        ExecutionStatus::Success,
        ExecutionStatus::Error,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
    ];
    let mut racers = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let update = finished(statuses[n % statuses.len()]);
        racers.push(tokio::spawn(async move {
            let applied = store
                .finish_execution(execution.id, Holder::Owner("node-a"), &update)
                .await
                .unwrap();
            applied.then_some(update)
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        winners.extend(racer.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let record = store.get_execution(execution.id).await.unwrap().unwrap();
    let won = &winners[0];
    assert_eq!(record.status, won.status);
    assert_eq!(record.output, won.output);
    assert_eq!(record.error, won.error);
    assert_eq!(record.finished_at, Some(won.finished_at));
    assert_eq!(
        record.lease_until, None,
        "a finished execution holds no lease"
    );
    for status in statuses {
        assert!(!store
            .finish_execution(execution.id, Holder::Owner("node-a"), &finished(status))
            .await
            .unwrap());
    }
    assert!(!store.requeue(execution.id, "node-a", 2).await.unwrap());
    assert!(!store
        .claim(execution.id, &claim_for("node-b", 30))
        .await
        .unwrap());
}

/// Another owner can neither finish, requeue, reschedule nor start what a node holds.
pub(crate) async fn a_node_never_moves_what_another_holds(store: Arc<dyn Store>) {
    let function = create(&*store, "held").await;
    let execution = claimed(&*store, &function, "node-a").await;
    let failure = AttemptFailure {
        attempt: 1,
        status: ExecutionStatus::Error,
        error: None,
        exit_code: None,
        finished_at: ms(Utc::now()),
    };
    let later = ms(Utc::now() + TimeDelta::seconds(5));
    let id = execution.id;
    assert!(!store
        .finish_execution(
            id,
            Holder::Owner("node-b"),
            &finished(ExecutionStatus::Success)
        )
        .await
        .unwrap());
    assert!(!store.requeue(id, "node-b", 2).await.unwrap());
    assert!(!store
        .schedule_retry(id, "node-b", 2, later, &failure)
        .await
        .unwrap());
    assert!(!store
        .mark_running(id, "node-b", &started("i"))
        .await
        .unwrap());
    assert!(
        !store
            .finish_execution(id, Holder::Queue, &finished(ExecutionStatus::Cancelled))
            .await
            .unwrap(),
        "the queue does not end what a runner holds"
    );
    assert_eq!(
        store.get_execution(id).await.unwrap().unwrap(),
        execution,
        "untouched"
    );
    // A queued execution is ended through the queue (a cancel before it started), by
    // any node.
    let waiting = queued(&function);
    store.insert_execution(&waiting).await.unwrap();
    assert!(store
        .finish_execution(
            waiting.id,
            Holder::Queue,
            &finished(ExecutionStatus::Cancelled)
        )
        .await
        .unwrap());
}

/// A runner's report that comes after its claim was given back (the execution went back
/// to the queue, for a retry or a restart) ends nothing, and neither does a stale
/// requeue or retry: only the next claim's runner, or the queue, moves it on.
pub(crate) async fn a_runner_never_ends_what_went_back_to_the_queue(store: Arc<dyn Store>) {
    let function = create(&*store, "stale").await;
    let execution = claimed(&*store, &function, "node-a").await;
    let id = execution.id;
    assert!(store.requeue(id, "node-a", 2).await.unwrap());
    let late = finished(ExecutionStatus::Success);
    assert!(!store
        .finish_execution(id, Holder::Owner("node-a"), &late)
        .await
        .unwrap());
    assert!(!store.requeue(id, "node-a", 3).await.unwrap());
    let failure = AttemptFailure {
        attempt: 1,
        status: ExecutionStatus::Error,
        error: None,
        exit_code: None,
        finished_at: ms(Utc::now()),
    };
    assert!(!store
        .schedule_retry(id, "node-a", 3, ms(Utc::now()), &failure)
        .await
        .unwrap());
    let record = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt, record.owner),
        (ExecutionStatus::Queued, 2, None)
    );
    // The next claim's runner ends it; the earlier one's report still does not.
    assert!(store.claim(id, &claim_for("node-b", 30)).await.unwrap());
    assert!(!store
        .finish_execution(id, Holder::Owner("node-a"), &late)
        .await
        .unwrap());
    assert!(store
        .finish_execution(id, Holder::Owner("node-b"), &late)
        .await
        .unwrap());
}

/// A requeue puts an execution back for its next attempt, claim and start cleared, so
/// any node may claim it again.
pub(crate) async fn a_requeue_clears_the_claim_and_the_start(store: Arc<dyn Store>) {
    let function = create(&*store, "requeued").await;
    let execution = claimed(&*store, &function, "node-a").await;
    assert!(store
        .mark_running(execution.id, "node-a", &started("i-1"))
        .await
        .unwrap());
    assert!(store.requeue(execution.id, "node-a", 2).await.unwrap());
    let record = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt),
        (ExecutionStatus::Queued, 2)
    );
    assert_eq!(record.owner, None);
    assert_eq!(record.lease_until, None);
    assert_eq!(record.started_at, None);
    assert_eq!(record.instance_id, None);
    assert_eq!(record.callback_token_hash, None);
    assert_eq!(record.run_at, None);
    assert!(
        !store.requeue(execution.id, "node-a", 3).await.unwrap(),
        "a queued execution is held by nobody: it is not requeued again"
    );
    assert!(store
        .claim(execution.id, &claim_for("node-b", 30))
        .await
        .unwrap());
}

/// A retry goes back to the queue with a `run_at`, keeps how each attempt failed, and
/// cannot be claimed before its time.
pub(crate) async fn a_scheduled_retry_keeps_each_failure_and_waits(store: Arc<dyn Store>) {
    let function = create(&*store, "retried").await;
    let mut execution = claimed(&*store, &function, "node-a").await;
    let mut failures = Vec::new();
    for attempt in 1..=2u32 {
        let failure = AttemptFailure {
            attempt,
            status: ExecutionStatus::Error,
            error: Some(ExecutionError::new("FUNCTION_ERROR", "exit 1")),
            exit_code: Some(1),
            finished_at: ms(Utc::now()),
        };
        let run_at = ms(Utc::now() + TimeDelta::seconds(60));
        assert!(store
            .schedule_retry(execution.id, "node-a", attempt + 1, run_at, &failure)
            .await
            .unwrap());
        failures.push(failure);
        execution = store.get_execution(execution.id).await.unwrap().unwrap();
        assert_eq!(execution.status, ExecutionStatus::Queued);
        assert_eq!(execution.attempt, attempt + 1);
        assert_eq!(execution.run_at, Some(run_at));
        assert_eq!(execution.attempts, failures);
        assert_eq!(execution.owner, None);
        assert!(
            !store
                .claim(execution.id, &claim_for("node-a", 30))
                .await
                .unwrap(),
            "not before its time"
        );
        // Claimable once due; claimed again for the next round.
        let due = store
            .take_due(run_at + TimeDelta::milliseconds(1), 10)
            .await
            .unwrap();
        assert_eq!(due, vec![(execution.id, "retried".to_owned())]);
        assert!(store
            .claim(execution.id, &claim_for("node-a", 30))
            .await
            .unwrap());
    }
    assert!(store
        .finish_execution(
            execution.id,
            Holder::Owner("node-a"),
            &finished(ExecutionStatus::Error)
        )
        .await
        .unwrap());
    let failure = failures[0].clone();
    let later = ms(Utc::now());
    assert!(
        !store
            .schedule_retry(execution.id, "node-a", 9, later, &failure)
            .await
            .unwrap(),
        "a finished execution is not retried"
    );
}

/// A starting or running record with no owner (written before claims existed) may be
/// moved by any node, as recovery expects.
pub(crate) async fn a_record_without_owner_is_movable_by_any_node(store: Arc<dyn Store>) {
    let function = create(&*store, "legacy").await;
    let mut legacy = queued(&function);
    legacy.status = ExecutionStatus::Running;
    store.insert_execution(&legacy).await.unwrap();
    assert!(store.requeue(legacy.id, "node-z", 2).await.unwrap());
    let mut other = queued(&function);
    other.status = ExecutionStatus::Starting;
    store.insert_execution(&other).await.unwrap();
    assert!(store
        .finish_execution(
            other.id,
            Holder::Owner("node-y"),
            &finished(ExecutionStatus::Error)
        )
        .await
        .unwrap());
}
