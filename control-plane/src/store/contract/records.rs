//! Contract: execution records. They read back as written; idempotency keys are unique
//! per function; chained children are written with their parent's result, once and all
//! or none; listings filter and page; a failure is re-driven once.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{claimed, create, finished, ms, queued};
use crate::domain::{AttemptFailure, ExecutionError, ExecutionStatus, Holder, Trigger};
use crate::store::{ExecutionFilter, FollowUps, Redrive, Store, StoreError, Unfinished};

/// Every field of a record survives the round trip.
pub(crate) async fn a_record_reads_back_as_written(store: Arc<dyn Store>) {
    let function = create(&*store, "full").await;
    let now = ms(Utc::now());
    let mut record = queued(&function);
    record.status = ExecutionStatus::Error;
    record.input = json!({"nested": [1, "two", {"three": null}]});
    record.output = Some(json!({"partial": true}));
    record.error = Some(ExecutionError::new("FUNCTION_ERROR", "boom"));
    record.attempt = 3;
    record.parent_id = Some(Uuid::now_v7());
    record.root_id = Some(Uuid::now_v7());
    record.depth = 2;
    record.trigger = Trigger::Chain;
    record.trace_id = Some("trace".into());
    record.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    record.tracestate = Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into());
    record.idempotency_key = Some("key".into());
    record.scheduled_for = Some(now - TimeDelta::seconds(1));
    record.timeout_ms = 1234;
    record.started_at = Some(now);
    record.finished_at = Some(now + TimeDelta::milliseconds(5));
    record.duration_ms = Some(5);
    record.cold_start = Some(false);
    record.instance_id = Some("i-9".into());
    record.exit_code = Some(2);
    record.dead_letter = true;
    record.callback_token_hash = Some("hash".into());
    record.attempts = vec![AttemptFailure {
        attempt: 2,
        status: ExecutionStatus::Timeout,
        error: None,
        exit_code: None,
        finished_at: now,
    }];
    record.owner = Some("node-a".into());
    store.insert_execution(&record).await.unwrap();
    assert_eq!(
        store.get_execution(record.id).await.unwrap().as_ref(),
        Some(&record)
    );
    assert_eq!(store.get_execution(Uuid::now_v7()).await.unwrap(), None);
}

/// A key is used once per function (the duplicate names the first execution), another
/// function may use it, and it finds its execution.
pub(crate) async fn an_idempotency_key_is_used_once_per_function(store: Arc<dyn Store>) {
    let (one, two) = (create(&*store, "one").await, create(&*store, "two").await);
    let mut first = queued(&one);
    first.idempotency_key = Some("k".into());
    store.insert_execution(&first).await.unwrap();
    let mut again = queued(&one);
    again.idempotency_key = Some("k".into());
    match store.insert_execution(&again).await {
        Err(StoreError::DuplicateIdempotencyKey(id)) => assert_eq!(id, first.id),
        other => panic!("expected a duplicate key, got {other:?}"),
    }
    assert_eq!(store.get_execution(again.id).await.unwrap(), None);
    let mut elsewhere = queued(&two);
    elsewhere.idempotency_key = Some("k".into());
    store.insert_execution(&elsewhere).await.unwrap();
    let found = store.find_by_idempotency_key("one", "k").await.unwrap();
    assert_eq!(found.map(|e| e.id), Some(first.id));
    assert_eq!(
        store.find_by_idempotency_key("one", "other").await.unwrap(),
        None
    );
}

/// Eight reports of one result race, each with its own children: only the winner's
/// children are written.
pub(crate) async fn a_finish_writes_its_children_once_under_contention(store: Arc<dyn Store>) {
    let function = create(&*store, "parent").await;
    let parent = claimed(&*store, &function, "node-a").await;
    let mut racers = Vec::new();
    for _ in 0..8 {
        let (store, function) = (store.clone(), function.clone());
        racers.push(tokio::spawn(async move {
            let mut child = queued(&function);
            child.parent_id = Some(parent.id);
            child.root_id = Some(parent.id);
            child.depth = 1;
            let done = finished(ExecutionStatus::Success);
            store
                .finish_with_follow_ups(
                    parent.id,
                    Holder::Owner("node-a"),
                    &done,
                    &FollowUps::children(vec![child.clone()]),
                )
                .await
                .unwrap()
                .then_some(child.id)
        }));
    }
    let mut written = Vec::new();
    for racer in racers {
        written.extend(racer.await.unwrap());
    }
    assert_eq!(written.len(), 1);
    let tree = store.chain_tree(parent.id, None, 100).await.unwrap();
    let ids: Vec<Uuid> = tree.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![parent.id, written[0]]);
}

/// A parent and its children are written together or not at all: a child whose
/// idempotency key is taken leaves no trace of the others, nor of the finish.
pub(crate) async fn children_are_written_all_or_none(store: Arc<dyn Store>) {
    let function = create(&*store, "atomic").await;
    let mut taken = queued(&function);
    taken.idempotency_key = Some("taken".into());
    store.insert_execution(&taken).await.unwrap();
    let good = queued(&function);
    let mut bad = queued(&function);
    bad.idempotency_key = Some("taken".into());
    let mut parent = queued(&function);
    parent.status = ExecutionStatus::Success;
    assert!(store
        .insert_with_follow_ups(
            &parent,
            &FollowUps::children(vec![good.clone(), bad.clone()])
        )
        .await
        .is_err());
    for id in [parent.id, good.id, bad.id] {
        assert_eq!(store.get_execution(id).await.unwrap(), None);
    }
    let running = claimed(&*store, &function, "node-a").await;
    let done = finished(ExecutionStatus::Success);
    assert!(store
        .finish_with_follow_ups(
            running.id,
            Holder::Owner("node-a"),
            &done,
            &FollowUps::children(vec![good.clone(), bad])
        )
        .await
        .is_err());
    assert_eq!(store.get_execution(good.id).await.unwrap(), None);
    let record = store.get_execution(running.id).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Starting, "not finished");
    store
        .insert_with_follow_ups(&parent, &FollowUps::children(vec![good.clone()]))
        .await
        .unwrap();
    assert_eq!(store.get_execution(parent.id).await.unwrap(), Some(parent));
    assert_eq!(store.get_execution(good.id).await.unwrap(), Some(good));
}

/// Listings narrow by function, status, trigger, time and dead letter, answer newest first
/// without payloads unless asked, and page with `before_id` without gaps or repeats.
pub(crate) async fn listings_filter_and_page_newest_first(store: Arc<dyn Store>) {
    let (one, two) = (create(&*store, "one").await, create(&*store, "two").await);
    let mut all = Vec::new();
    for n in 0..12 {
        let mut execution = queued(if n % 3 == 0 { &two } else { &one });
        execution.created_at = ms(Utc::now()) + TimeDelta::milliseconds(n);
        if n % 4 == 0 {
            execution.status = ExecutionStatus::Error;
            execution.dead_letter = n % 8 == 0;
        }
        execution.trigger = [Trigger::Api, Trigger::Chain, Trigger::Event][n as usize % 3];
        store.insert_execution(&execution).await.unwrap();
        all.push(execution);
    }
    let filter = ExecutionFilter {
        limit: 100,
        ..ExecutionFilter::default()
    };
    let listed = store.list_executions(&filter).await.unwrap();
    let newest_first: Vec<Uuid> = all.iter().rev().map(|e| e.id).collect();
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<Vec<_>>(),
        newest_first
    );
    assert!(listed.iter().all(|e| e.input.is_null()), "no payloads");
    let with = ExecutionFilter {
        with_payloads: true,
        ..filter.clone()
    };
    assert!(store.list_executions(&with).await.unwrap()[0].input == json!({"n": 1}));
    let count = |filter: ExecutionFilter| {
        let store = store.clone();
        async move { store.list_executions(&filter).await.unwrap().len() }
    };
    let by = |f: fn(&mut ExecutionFilter)| {
        let mut filter = filter.clone();
        f(&mut filter);
        filter
    };
    assert_eq!(count(by(|f| f.function = Some("two".into()))).await, 4);
    assert_eq!(
        count(by(|f| f.statuses = vec![ExecutionStatus::Error])).await,
        3
    );
    assert_eq!(
        count(by(
            |f| f.statuses = vec![ExecutionStatus::Error, ExecutionStatus::Queued]
        ))
        .await,
        12
    );
    assert_eq!(count(by(|f| f.triggers = vec![Trigger::Chain])).await, 4);
    assert_eq!(
        count(by(|f| f.triggers = vec![Trigger::Chain, Trigger::Event])).await,
        8
    );
    assert_eq!(count(by(|f| f.triggers = vec![Trigger::Schedule])).await, 0);
    assert_eq!(
        count(by(|f| {
            f.triggers = vec![Trigger::Chain];
            f.statuses = vec![ExecutionStatus::Error];
        }))
        .await,
        1,
        "filters combine"
    );
    assert_eq!(count(by(|f| f.dead_letter = Some(true))).await, 2);
    assert_eq!(count(by(|f| f.dead_letter = Some(false))).await, 10);
    let mut since = filter.clone();
    since.since = Some(all[4].created_at);
    since.until = Some(all[8].created_at);
    assert_eq!(count(since).await, 4, "since is inclusive, until exclusive");
    let mut paged = Vec::new();
    let mut page = ExecutionFilter {
        limit: 5,
        ..filter.clone()
    };
    loop {
        let batch = store.list_executions(&page).await.unwrap();
        paged.extend(batch.iter().map(|e| e.id));
        match batch.last() {
            Some(last) if batch.len() == 5 => page.before_id = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(paged, newest_first);
}

/// Unfinished work pages oldest first without payloads; `Queued` leaves out due work,
/// `HeldBy` names what one owner (or no owner) holds.
pub(crate) async fn unfinished_work_pages_oldest_first_without_payloads(store: Arc<dyn Store>) {
    let function = create(&*store, "unfinished").await;
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let execution = queued(&function);
        store.insert_execution(&execution).await.unwrap();
        waiting.push(execution.id);
    }
    let mut later = queued(&function);
    later.run_at = Some(ms(Utc::now() + TimeDelta::seconds(60)));
    store.insert_execution(&later).await.unwrap();
    let mine = claimed(&*store, &function, "node-a").await;
    let theirs = claimed(&*store, &function, "node-b").await;
    let mut ownerless = queued(&function);
    ownerless.status = ExecutionStatus::Running;
    store.insert_execution(&ownerless).await.unwrap();
    let mut done = queued(&function);
    done.status = ExecutionStatus::Success;
    store.insert_execution(&done).await.unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_unfinished(Unfinished::Queued, after, 2)
            .await
            .unwrap();
        assert!(page.iter().all(|e| e.input.is_null() && e.output.is_none()));
        paged.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) => after = Some(last.id),
            None => break,
        }
    }
    assert_eq!(paged, waiting, "oldest first, due work left out");
    let held = store
        .list_unfinished(Unfinished::HeldBy("node-a".into()), None, 10)
        .await
        .unwrap();
    let held: Vec<Uuid> = held.iter().map(|e| e.id).collect();
    assert_eq!(held, vec![mine.id, ownerless.id]);
    let all = store
        .list_unfinished(Unfinished::All, None, 100)
        .await
        .unwrap();
    let all: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
    assert_eq!(all.len(), 9);
    assert!(all.contains(&later.id) && all.contains(&theirs.id) && !all.contains(&done.id));
}

/// A finished failure is re-driven once even when many ask at the same time; anything
/// else is not re-driven and nothing is stored for it.
pub(crate) async fn a_failure_is_redriven_once_under_contention(store: Arc<dyn Store>) {
    let function = create(&*store, "redriven").await;
    let failed = claimed(&*store, &function, "node-a").await;
    let mut dead = finished(ExecutionStatus::Error);
    dead.dead_letter = true;
    let early = queued(&function);
    assert_eq!(
        store.redrive(failed.id, &early).await.unwrap(),
        Redrive::NotFailed
    );
    assert_eq!(
        store.redrive(Uuid::now_v7(), &early).await.unwrap(),
        Redrive::NotFailed
    );
    assert_eq!(store.get_execution(early.id).await.unwrap(), None);
    assert!(store
        .finish_execution(failed.id, Holder::Owner("node-a"), &dead)
        .await
        .unwrap());
    let mut racers = Vec::new();
    for _ in 0..8 {
        let (store, retry) = (store.clone(), queued(&function));
        racers.push(tokio::spawn(async move {
            (store.redrive(failed.id, &retry).await.unwrap(), retry.id)
        }));
    }
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    let done: Vec<Uuid> = outcomes
        .iter()
        .filter(|(outcome, _)| *outcome == Redrive::Done)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(done.len(), 1, "{outcomes:?}");
    for (outcome, id) in &outcomes {
        if *outcome != Redrive::Done {
            assert_eq!(*outcome, Redrive::Already(done[0]));
            assert_eq!(store.get_execution(*id).await.unwrap(), None);
        }
    }
    let record = store.get_execution(failed.id).await.unwrap().unwrap();
    assert_eq!(record.redriven_by, Some(done[0]));
    assert!(!record.dead_letter, "off the dead-letter list");
    assert!(store.get_execution(done[0]).await.unwrap().is_some());
    let success = claimed(&*store, &function, "node-a").await;
    let ok = finished(ExecutionStatus::Success);
    assert!(store
        .finish_execution(success.id, Holder::Owner("node-a"), &ok)
        .await
        .unwrap());
    let retry = queued(&function);
    assert_eq!(
        store.redrive(success.id, &retry).await.unwrap(),
        Redrive::NotFailed
    );
}

/// A chain tree is its root and every execution naming it as root, by id, paged.
pub(crate) async fn a_chain_tree_pages_by_id(store: Arc<dyn Store>) {
    let function = create(&*store, "tree").await;
    let root = queued(&function);
    store.insert_execution(&root).await.unwrap();
    let mut members = vec![root.id];
    for depth in 1..=3 {
        let mut child = queued(&function);
        child.root_id = Some(root.id);
        child.parent_id = Some(*members.last().unwrap());
        child.depth = depth;
        store.insert_execution(&child).await.unwrap();
        members.push(child.id);
    }
    store.insert_execution(&queued(&function)).await.unwrap();
    let whole = store.chain_tree(root.id, None, 100).await.unwrap();
    assert_eq!(whole.iter().map(|e| e.id).collect::<Vec<_>>(), members);
    assert_eq!(whole[0].input, json!({"n": 1}), "with payloads");
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.chain_tree(root.id, after, 3).await.unwrap();
        paged.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(paged, members);
}
