//! Contract: schedule cursors move by compare-and-set, together with the tick's
//! execution or not at all.

use std::sync::Arc;

use chrono::DateTime;

use super::{create, queued};
use crate::store::{CursorScope, ScheduleAdvance, Store, StoreError};

/// A move of cursor `key` of function `sched`, between seconds counted from a fixed
/// instant (so the same numbers name the same ticks).
fn advance(key: &str, from: Option<i64>, to: i64) -> ScheduleAdvance {
    let tick = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).expect("in range");
    ScheduleAdvance {
        function: "sched".into(),
        key: key.into(),
        from: from.map(tick),
        to: tick(to),
    }
}

pub(crate) async fn a_schedule_cursor_moves_once_per_tick(store: Arc<dyn Store>) {
    let function = create(store.as_ref(), "sched").await;
    assert!(store
        .advance_schedule(&advance("k", None, 0), None)
        .await
        .unwrap());
    assert!(
        !store
            .advance_schedule(&advance("k", None, 5), None)
            .await
            .unwrap(),
        "an existing cursor is not made again"
    );
    let first = queued(&function);
    assert!(store
        .advance_schedule(&advance("k", Some(0), 1), Some(&first))
        .await
        .unwrap());
    let second = queued(&function);
    assert!(
        !store
            .advance_schedule(&advance("k", Some(0), 1), Some(&second))
            .await
            .unwrap(),
        "the second fire of a tick loses"
    );
    assert!(store.get_execution(first.id).await.unwrap().is_some());
    assert!(
        store.get_execution(second.id).await.unwrap().is_none(),
        "the loser's execution is not stored"
    );
    let cursors = store.list_schedule_cursors().await.unwrap();
    assert_eq!(cursors.len(), 1);
    assert_eq!(cursors[0].last_tick, advance("k", None, 1).to);
    assert!(store
        .advance_schedule(&advance("other", None, 0), None)
        .await
        .unwrap());
    let keys = ["k".to_owned()];
    let deleted = store
        .delete_schedule_cursors("sched", CursorScope::Keys(&keys))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.list_schedule_cursors().await.unwrap()[0].key, "other");
    let deleted = store
        .delete_schedule_cursors("sched", CursorScope::All)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(store.list_schedule_cursors().await.unwrap().is_empty());
}

pub(crate) async fn a_failed_fire_leaves_the_cursor_and_racers_store_one(store: Arc<dyn Store>) {
    let function = create(store.as_ref(), "sched").await;
    assert!(store
        .advance_schedule(&advance("k", None, 0), None)
        .await
        .unwrap());
    let mut taken = queued(&function);
    taken.idempotency_key = Some("schedule:k:tick".into());
    store.insert_execution(&taken).await.unwrap();
    let mut clash = queued(&function);
    clash.idempotency_key = taken.idempotency_key.clone();
    let err = store
        .advance_schedule(&advance("k", Some(0), 1), Some(&clash))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateIdempotencyKey(_)),
        "{err}"
    );
    assert_eq!(
        store.list_schedule_cursors().await.unwrap()[0].last_tick,
        advance("k", None, 0).to,
        "the cursor stays where it was when the insert fails"
    );
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (store, execution) = (store.clone(), queued(&function));
            tokio::spawn(async move {
                let won = store
                    .advance_schedule(&advance("k", Some(0), 1), Some(&execution))
                    .await
                    .unwrap();
                (won, execution.id)
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        let (won, id) = racer.await.unwrap();
        let stored = store.get_execution(id).await.unwrap().is_some();
        assert_eq!(
            won, stored,
            "an execution is stored exactly when its fire won"
        );
        winners += usize::from(won);
    }
    assert_eq!(winners, 1, "one of the racing fires of a tick wins");
}
