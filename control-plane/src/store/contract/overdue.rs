//! Contract of the queue age: where a queued execution's age starts (`due_at`), kept
//! through due work and stale backlogs, and the listing of those past an age.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};

use super::{claim_for, create, finished, ms, queued};
use crate::domain::{AttemptFailure, ExecutionStatus};
use crate::store::Store;

/// Only queued executions of the function that wait for no time and became due before
/// the cutoff are listed, oldest first; a delayed one is due from its `run_at` (kept as
/// `due_at` once taken), a stale one made due again keeps its creation, and a retry is
/// due from its own `run_at`.
pub(crate) async fn overdue_work_is_listed_from_when_it_became_due(store: Arc<dyn Store>) {
    let (aged, other) = (
        create(&*store, "aged").await,
        create(&*store, "other").await,
    );
    let now = ms(Utc::now());
    let ago = |seconds| now - TimeDelta::seconds(seconds);
    let mut old = queued(&aged);
    old.created_at = ago(20);
    let mut older_stale = queued(&aged);
    older_stale.created_at = ago(30);
    let fresh = queued(&aged);
    let mut delayed = queued(&aged);
    delayed.created_at = ago(20);
    delayed.run_at = Some(ago(1));
    let mut waiting = queued(&aged);
    waiting.created_at = ago(20);
    waiting.run_at = Some(now + TimeDelta::seconds(60));
    let mut elsewhere = queued(&other);
    elsewhere.created_at = ago(20);
    let mut ended = queued(&aged);
    ended.created_at = ago(20);
    for execution in [
        &old,
        &older_stale,
        &fresh,
        &delayed,
        &waiting,
        &elsewhere,
        &ended,
    ] {
        store.insert_execution(execution).await.unwrap();
    }
    let ended_ok = store
        .finish_execution(
            ended.id,
            crate::domain::Holder::Queue,
            &finished(ExecutionStatus::Error),
        )
        .await
        .unwrap();
    assert!(ended_ok);
    // The first by id made due again as a stale backlog: still due since its creation.
    store
        .make_stale_due(now + TimeDelta::seconds(1), now, 1)
        .await
        .unwrap();
    let taken = store.take_due(now, 10).await.unwrap();
    assert_eq!(taken.len(), 2, "{taken:?}");
    let record = store.get_execution(old.id).await.unwrap().unwrap();
    assert_eq!((record.run_at, record.due_at), (None, Some(ago(20))));
    let record = store.get_execution(delayed.id).await.unwrap().unwrap();
    assert_eq!((record.run_at, record.due_at), (None, Some(ago(1))));

    let overdue = store.list_overdue("aged", ago(5), 10).await.unwrap();
    assert_eq!(overdue, vec![old.id, older_stale.id], "oldest id first");
    assert_eq!(
        store.list_overdue("aged", ago(5), 1).await.unwrap(),
        vec![old.id]
    );
    let by_now = store.list_overdue("aged", now, 10).await.unwrap();
    assert!(by_now.contains(&delayed.id) && !by_now.contains(&waiting.id));
    assert!(!by_now.contains(&fresh.id) && !by_now.contains(&ended.id));

    // A retry is due from its own run_at, not from an earlier attempt's.
    assert!(store
        .claim(delayed.id, &claim_for("node-a", 30))
        .await
        .unwrap());
    let failure = AttemptFailure {
        attempt: 1,
        status: ExecutionStatus::Error,
        error: None,
        exit_code: Some(1),
        finished_at: now,
    };
    let retry_at = ago(3);
    assert!(store
        .schedule_retry(delayed.id, "node-a", 2, retry_at, &failure)
        .await
        .unwrap());
    let record = store.get_execution(delayed.id).await.unwrap().unwrap();
    assert_eq!((record.due_at, record.due_since()), (None, retry_at));
    assert_eq!(store.take_due(now, 10).await.unwrap().len(), 1);
    let record = store.get_execution(delayed.id).await.unwrap().unwrap();
    assert_eq!(record.due_at, Some(retry_at));
    let overdue = store.list_overdue("aged", ago(2), 10).await.unwrap();
    assert!(overdue.contains(&delayed.id), "{overdue:?}");
}
