//! The contract of result deliveries: a callback waits for its execution's end, then is
//! pending with the result; a due delivery is claimed by one owner at a time, and only
//! its holder records an attempt; failed ones are listed and re-driven once.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::{claimed, create, finished, ms, queued};
use crate::destinations::{
    Delivery, DeliveryAttempt, DeliveryClaim, DeliveryFilter, DeliveryKind, DeliveryState,
};
use crate::domain::{ExecutionStatus, Holder};
use crate::store::{FollowUps, Store};

fn delivery(execution: Uuid, kind: DeliveryKind, state: DeliveryState) -> Delivery {
    let now = ms(Utc::now());
    let pending = state == DeliveryState::Pending;
    Delivery {
        id: Uuid::now_v7(),
        execution_id: execution,
        function: "f".into(),
        url: "https://example.com/hook".into(),
        kind,
        state,
        secret: (kind == DeliveryKind::OnFailure).then(|| "hook-key".into()),
        attempts: Vec::new(),
        round_attempts: 0,
        next_at: pending.then_some(now),
        body: pending.then(|| r#"{"status":"success"}"#.into()),
        created_at: now,
    }
}

fn claim(owner: &str, lease_seconds: i64) -> DeliveryClaim {
    let now = ms(Utc::now());
    DeliveryClaim {
        owner: owner.into(),
        now,
        lease_until: now + TimeDelta::seconds(lease_seconds),
        limit: 100,
    }
}

fn of(execution: Uuid) -> DeliveryFilter {
    DeliveryFilter {
        execution: Some(execution),
        limit: 100,
        ..DeliveryFilter::default()
    }
}

/// A waiting callback reads back as written, becomes pending with the result when
/// armed, and only waiting ones are dropped.
pub(crate) async fn a_callback_waits_then_is_armed_with_the_result(store: Arc<dyn Store>) {
    let execution = Uuid::now_v7();
    let waiting = delivery(execution, DeliveryKind::Callback, DeliveryState::Waiting);
    let pending = delivery(execution, DeliveryKind::OnFailure, DeliveryState::Pending);
    store
        .insert_deliveries(&[waiting.clone(), pending.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.list_deliveries(&of(execution)).await.unwrap(),
        vec![waiting.clone(), pending.clone()]
    );
    let other = Uuid::now_v7();
    assert_eq!(store.list_deliveries(&of(other)).await.unwrap(), vec![]);

    let now = ms(Utc::now());
    assert_eq!(store.arm_deliveries(execution, "{}", now).await.unwrap(), 1);
    assert_eq!(store.arm_deliveries(execution, "{}", now).await.unwrap(), 0);
    let listed = store.list_deliveries(&of(execution)).await.unwrap();
    assert_eq!(listed[0].state, DeliveryState::Pending);
    assert_eq!(listed[0].body.as_deref(), Some("{}"));
    assert_eq!(listed[0].next_at, Some(now));

    let refused = Uuid::now_v7();
    store
        .insert_deliveries(&[delivery(
            refused,
            DeliveryKind::Callback,
            DeliveryState::Waiting,
        )])
        .await
        .unwrap();
    store.drop_waiting_deliveries(refused).await.unwrap();
    store.drop_waiting_deliveries(execution).await.unwrap();
    assert_eq!(store.list_deliveries(&of(refused)).await.unwrap(), vec![]);
    assert_eq!(
        store.list_deliveries(&of(execution)).await.unwrap().len(),
        2
    );
}

/// The deliveries of a result are written with it, once: a finish that applies stores
/// its pending deliveries and arms the callbacks waiting for it; a second report of the
/// result, or a finish that fails (a chained child whose idempotency key is taken),
/// stores none. A result written whole (the warm path) takes its deliveries too.
pub(crate) async fn a_results_deliveries_are_written_with_it_once(store: Arc<dyn Store>) {
    let function = create(&*store, "destined").await;
    let running = claimed(&*store, &function, "node-a").await;
    let callback = delivery(running.id, DeliveryKind::Callback, DeliveryState::Waiting);
    store
        .insert_deliveries(std::slice::from_ref(&callback))
        .await
        .unwrap();
    let follow = FollowUps {
        children: Vec::new(),
        deliveries: vec![delivery(
            running.id,
            DeliveryKind::OnSuccess,
            DeliveryState::Pending,
        )],
        callback_body: Some(r#"{"status":"success"}"#.into()),
    };
    let done = finished(ExecutionStatus::Success);
    let holder = Holder::Owner("node-a");
    assert!(store
        .finish_with_follow_ups(running.id, holder, &done, &follow)
        .await
        .unwrap());
    let mut again = follow.clone();
    again.deliveries[0].id = Uuid::now_v7();
    assert!(!store
        .finish_with_follow_ups(running.id, holder, &done, &again)
        .await
        .unwrap());
    let listed = store.list_deliveries(&of(running.id)).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|d| d.state == DeliveryState::Pending));
    assert!(listed
        .iter()
        .all(|d| d.body.as_deref() == Some(r#"{"status":"success"}"#)));

    let mut taken = queued(&function);
    taken.idempotency_key = Some("taken".into());
    store.insert_execution(&taken).await.unwrap();
    let mut clash = queued(&function);
    clash.idempotency_key = Some("taken".into());
    let failing = claimed(&*store, &function, "node-a").await;
    let follow = FollowUps {
        children: vec![clash],
        deliveries: vec![delivery(
            failing.id,
            DeliveryKind::OnFailure,
            DeliveryState::Pending,
        )],
        callback_body: None,
    };
    let failed = finished(ExecutionStatus::Error);
    assert!(store
        .finish_with_follow_ups(failing.id, holder, &failed, &follow)
        .await
        .is_err());
    assert_eq!(
        store.list_deliveries(&of(failing.id)).await.unwrap(),
        vec![]
    );

    let mut whole = queued(&function);
    whole.status = ExecutionStatus::Success;
    let follow = FollowUps {
        deliveries: vec![delivery(
            whole.id,
            DeliveryKind::OnSuccess,
            DeliveryState::Pending,
        )],
        ..FollowUps::default()
    };
    store.insert_with_follow_ups(&whole, &follow).await.unwrap();
    assert_eq!(
        store.list_deliveries(&of(whole.id)).await.unwrap(),
        follow.deliveries
    );
}

/// Owners racing for due deliveries each get distinct ones; only the holder records an
/// attempt (which releases the lease); a lapsed lease is claimable again.
pub(crate) async fn a_due_delivery_is_claimed_once_and_recorded_by_its_holder(
    store: Arc<dyn Store>,
) {
    let execution = Uuid::now_v7();
    let mut due: Vec<Delivery> = (0..12)
        .map(|_| delivery(execution, DeliveryKind::OnSuccess, DeliveryState::Pending))
        .collect();
    let mut later = delivery(execution, DeliveryKind::OnSuccess, DeliveryState::Pending);
    later.next_at = Some(ms(Utc::now() + TimeDelta::seconds(60)));
    due.push(later.clone());
    store.insert_deliveries(&due).await.unwrap();

    let racers = (0..4).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut claim = claim(&format!("node-{n}"), 30);
            claim.limit = 5;
            store.claim_deliveries(&claim).await.unwrap()
        })
    });
    let mut seen = HashSet::new();
    for racer in racers {
        for claimed in racer.await.unwrap() {
            assert!(seen.insert(claimed.id), "claimed twice: {}", claimed.id);
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(!seen.contains(&later.id));
    assert_eq!(
        store.claim_deliveries(&claim("node-9", 30)).await.unwrap(),
        vec![]
    );

    let held = store.list_deliveries(&of(execution)).await.unwrap();
    let mut first = held[0].clone();
    first.push_attempt(DeliveryAttempt {
        at: ms(Utc::now()),
        status_code: Some(200),
        error: None,
    });
    first.state = DeliveryState::Delivered;
    first.next_at = None;
    assert!(!store.update_delivery(&first, "node-9").await.unwrap());
    let owners = ["node-0", "node-1", "node-2", "node-3"];
    let mut recorded = false;
    for owner in owners {
        recorded |= store.update_delivery(&first, owner).await.unwrap();
    }
    assert!(recorded);
    let stored = store.list_deliveries(&of(execution)).await.unwrap();
    assert_eq!(stored[0], first);
    // Delivered is final: no holder records on it again.
    for owner in owners {
        assert!(!store.update_delivery(&first, owner).await.unwrap());
    }

    // Leases that lapsed are claimable again.
    let lapsed = delivery(execution, DeliveryKind::Callback, DeliveryState::Pending);
    store
        .insert_deliveries(std::slice::from_ref(&lapsed))
        .await
        .unwrap();
    let mut short = claim("node-a", -1);
    short.limit = 100;
    let taken = store.claim_deliveries(&short).await.unwrap();
    assert!(taken.iter().any(|d| d.id == lapsed.id));
    let again = store.claim_deliveries(&claim("node-b", 30)).await.unwrap();
    assert!(again.iter().any(|d| d.id == lapsed.id));
}

/// Failed deliveries list by state, page by id, and are re-driven once.
pub(crate) async fn failed_deliveries_are_listed_and_redriven_once(store: Arc<dyn Store>) {
    let execution = Uuid::now_v7();
    let rows: Vec<Delivery> = (0..3)
        .map(|_| delivery(execution, DeliveryKind::OnFailure, DeliveryState::Pending))
        .collect();
    store.insert_deliveries(&rows).await.unwrap();
    for claimed in store.claim_deliveries(&claim("node-a", 30)).await.unwrap() {
        let mut done = claimed.clone();
        done.push_attempt(DeliveryAttempt {
            at: ms(Utc::now()),
            status_code: None,
            error: Some("cannot connect".into()),
        });
        done.state = if claimed.id == rows[1].id {
            DeliveryState::Delivered
        } else {
            DeliveryState::Failed
        };
        done.next_at = None;
        assert!(store.update_delivery(&done, "node-a").await.unwrap());
    }
    let failed = DeliveryFilter {
        state: Some(DeliveryState::Failed),
        limit: 1,
        ..DeliveryFilter::default()
    };
    let page = store.list_deliveries(&failed).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, rows[0].id);
    assert_eq!(page[0].attempts.len(), 1);
    let next = DeliveryFilter {
        after: Some(page[0].id),
        ..failed.clone()
    };
    assert_eq!(
        store.list_deliveries(&next).await.unwrap()[0].id,
        rows[2].id
    );

    let now = ms(Utc::now());
    assert!(store.redrive_delivery(rows[0].id, now).await.unwrap());
    assert!(!store.redrive_delivery(rows[0].id, now).await.unwrap());
    assert!(!store.redrive_delivery(rows[1].id, now).await.unwrap());
    assert!(!store.redrive_delivery(Uuid::now_v7(), now).await.unwrap());
    let redriven = store.claim_deliveries(&claim("node-b", 30)).await.unwrap();
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].id, rows[0].id);
    assert_eq!(redriven[0].round_attempts, 0);
    assert_eq!(redriven[0].attempts.len(), 1);
}

/// An execution's deliveries go with it: when retention prunes it and when it is
/// deleted, so the table cannot outgrow the executions it serves.
pub(crate) async fn deliveries_leave_with_their_execution(store: Arc<dyn Store>) {
    let function = create(&*store, "delivered").await;
    let long_ago = ms(Utc::now() - TimeDelta::days(30));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut execution = queued(&function);
        execution.status = ExecutionStatus::Success;
        execution.finished_at = Some(long_ago);
        store.insert_execution(&execution).await.unwrap();
        let kinds = [DeliveryKind::Callback, DeliveryKind::OnSuccess];
        let held: Vec<Delivery> = kinds
            .into_iter()
            .map(|kind| delivery(execution.id, kind, DeliveryState::Pending))
            .collect();
        store.insert_deliveries(&held).await.unwrap();
        ids.push(execution.id);
    }
    let count = |id| {
        let store = store.clone();
        async move { store.list_deliveries(&of(id)).await.unwrap().len() }
    };
    assert_eq!(count(ids[0]).await, 2);

    assert_eq!(
        store.delete_execution(ids[0]).await.unwrap(),
        crate::store::Deletion::Deleted
    );
    assert_eq!(count(ids[0]).await, 0, "deleted with its execution");
    let scope = crate::store::PruneScope::Function("delivered".into());
    let cut = ms(Utc::now() - TimeDelta::days(1));
    assert_eq!(store.prune_executions(&scope, cut, 1).await.unwrap(), 1);
    let left: Vec<usize> = [count(ids[1]).await, count(ids[2]).await].into();
    assert!(
        left == [0, 2] || left == [2, 0],
        "one pruned execution takes its deliveries, the other keeps them: {left:?}"
    );
}
