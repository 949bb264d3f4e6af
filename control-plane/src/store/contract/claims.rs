//! Contract: the store as a work queue. Claims are exclusive under contention, due work
//! is taken once at its time, leases lapse and are reclaimed, renewed ones are not.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::{claim_for, create, ms, queued};
use crate::domain::{ExecutionStatus, Holder};
use crate::store::Store;

/// Many tasks race to claim one queued execution: exactly one wins, and the record
/// names it as owner with its lease.
pub(crate) async fn a_queued_execution_is_claimed_by_one_runner(store: Arc<dyn Store>) {
    let function = create(&*store, "claimed").await;
    let execution = queued(&function);
    store.insert_execution(&execution).await.unwrap();
    let mut racers = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            let claim = claim_for(&format!("node-{n}"), 30);
            store
                .claim(execution.id, &claim)
                .await
                .unwrap()
                .then_some(claim)
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        winners.extend(racer.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let record = store.get_execution(execution.id).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Starting);
    assert_eq!(record.owner.as_deref(), Some(winners[0].owner.as_str()));
    assert_eq!(record.lease_until, Some(winners[0].lease_until));
    assert!(
        !store
            .claim(execution.id, &claim_for("late", 30))
            .await
            .unwrap(),
        "a claimed execution is not claimed again"
    );
}

/// Four runners claim from the same 200 queued executions: each is claimed once.
pub(crate) async fn many_runners_claim_each_execution_once(store: Arc<dyn Store>) {
    let function = create(&*store, "many").await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        let execution = queued(&function);
        store.insert_execution(&execution).await.unwrap();
        ids.push(execution.id);
    }
    let ids = Arc::new(ids);
    let mut runners = Vec::new();
    for n in 0..4 {
        let (store, ids) = (store.clone(), ids.clone());
        runners.push(tokio::spawn(async move {
            let claim = claim_for(&format!("runner-{n}"), 30);
            let mut mine = Vec::new();
            for &id in ids.iter() {
                if store.claim(id, &claim).await.unwrap() {
                    mine.push(id);
                }
            }
            mine
        }));
    }
    let mut claimed: Vec<Uuid> = Vec::new();
    for runner in runners {
        claimed.extend(runner.await.unwrap());
    }
    let distinct: HashSet<Uuid> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 200, "every execution claimed once");
    assert_eq!(distinct.len(), 200);
}

/// An execution with a `run_at` cannot be claimed before then; `take_due` answers it
/// once its time came, to one caller only, and `next_due` names the earliest time.
pub(crate) async fn due_work_is_taken_once_when_its_time_comes(store: Arc<dyn Store>) {
    let function = create(&*store, "later").await;
    let now = ms(Utc::now());
    let mut past = queued(&function);
    past.run_at = Some(now - TimeDelta::seconds(1));
    let mut future = queued(&function);
    future.run_at = Some(now + TimeDelta::seconds(60));
    let plain = queued(&function);
    for execution in [&past, &future, &plain] {
        store.insert_execution(execution).await.unwrap();
    }
    assert_eq!(store.next_due().await.unwrap(), past.run_at);
    assert!(
        !store
            .claim(future.id, &claim_for("node-a", 30))
            .await
            .unwrap(),
        "not before its time"
    );
    let (first, second) = tokio::join!(store.take_due(now, 10), store.take_due(now, 10));
    let mut taken = first.unwrap();
    taken.extend(second.unwrap());
    assert_eq!(taken, vec![(past.id, "later".to_owned())], "taken once");
    let record = store.get_execution(past.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.run_at),
        (ExecutionStatus::Queued, None)
    );
    assert!(store
        .claim(past.id, &claim_for("node-a", 30))
        .await
        .unwrap());
    assert_eq!(store.next_due().await.unwrap(), future.run_at);
    assert!(store.take_due(now, 10).await.unwrap().is_empty());
}

/// A claim whose lease lapsed is listed for other owners and reclaimable by one of
/// them; a renewed lease is neither.
pub(crate) async fn a_lapsed_lease_is_reclaimable_and_a_renewed_one_is_not(store: Arc<dyn Store>) {
    let function = create(&*store, "leased").await;
    let (lapsed, renewed) = (queued(&function), queued(&function));
    for execution in [&lapsed, &renewed] {
        store.insert_execution(execution).await.unwrap();
    }
    assert!(store
        .claim(lapsed.id, &claim_for("lost", -5))
        .await
        .unwrap());
    assert!(store
        .claim(renewed.id, &claim_for("alive", -5))
        .await
        .unwrap());
    let until = ms(Utc::now() + TimeDelta::seconds(30));
    assert_eq!(store.renew_leases("alive", until).await.unwrap(), 1);
    let now = ms(Utc::now());
    let listed = store.list_expired("node-b", now, 10).await.unwrap();
    let ids: Vec<Uuid> = listed.iter().map(|execution| execution.id).collect();
    assert_eq!(
        ids,
        vec![lapsed.id],
        "only the lapsed one, without its input"
    );
    assert!(listed[0].input.is_null());
    assert!(
        store
            .list_expired("lost", now, 10)
            .await
            .unwrap()
            .is_empty(),
        "an owner never reclaims from itself"
    );
    let taker = claim_for("node-b", 30);
    assert!(!store
        .reclaim(renewed.id, "alive", now, &taker)
        .await
        .unwrap());
    assert!(!store
        .reclaim(lapsed.id, "someone-else", now, &taker)
        .await
        .unwrap());
    assert!(store.reclaim(lapsed.id, "lost", now, &taker).await.unwrap());
    assert!(
        !store
            .reclaim(lapsed.id, "lost", now, &claim_for("node-c", 30))
            .await
            .unwrap(),
        "reclaimed once"
    );
    let record = store.get_execution(lapsed.id).await.unwrap().unwrap();
    assert_eq!(record.owner.as_deref(), Some("node-b"));
    assert_eq!(record.lease_until, Some(taker.lease_until));
}

/// `take_due` answers the earliest due work first, at most `limit` at a time.
pub(crate) async fn due_work_is_taken_in_time_order_a_page_at_a_time(store: Arc<dyn Store>) {
    let function = create(&*store, "paged-due").await;
    let now = ms(Utc::now());
    let mut expected = Vec::new();
    for seconds in [3, 1, 2] {
        let mut execution = queued(&function);
        execution.run_at = Some(now - TimeDelta::seconds(seconds));
        store.insert_execution(&execution).await.unwrap();
        expected.push((seconds, execution.id));
    }
    expected.sort();
    expected.reverse();
    let first = store.take_due(now, 2).await.unwrap();
    let second = store.take_due(now, 2).await.unwrap();
    let taken: Vec<Uuid> = first.iter().chain(&second).map(|(id, _)| *id).collect();
    assert_eq!(first.len(), 2);
    assert_eq!(
        taken,
        expected.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        "oldest run_at first"
    );
    assert_eq!(store.next_due().await.unwrap(), None);
}

/// Renewing extends the lease of what the owner holds (starting or running), nothing
/// else, and answers how many.
pub(crate) async fn renewal_extends_only_what_the_owner_holds(store: Arc<dyn Store>) {
    let function = create(&*store, "renewed").await;
    let mine = super::claimed(&*store, &function, "node-a").await;
    let running = super::claimed(&*store, &function, "node-a").await;
    assert!(store
        .mark_running(running.id, "node-a", &super::started("i-1"))
        .await
        .unwrap());
    let done = super::claimed(&*store, &function, "node-a").await;
    assert!(store
        .finish_execution(
            done.id,
            Holder::Owner("node-a"),
            &super::finished(ExecutionStatus::Success)
        )
        .await
        .unwrap());
    let theirs = super::claimed(&*store, &function, "node-b").await;
    let until = ms(Utc::now() + TimeDelta::seconds(90));
    assert_eq!(store.renew_leases("node-a", until).await.unwrap(), 2);
    for id in [mine.id, running.id] {
        let record = store.get_execution(id).await.unwrap().unwrap();
        assert_eq!(record.lease_until, Some(until));
    }
    let record = store.get_execution(theirs.id).await.unwrap().unwrap();
    assert_eq!(record.lease_until, theirs.lease_until);
    let record = store.get_execution(done.id).await.unwrap().unwrap();
    assert_eq!(record.lease_until, None);
    assert_eq!(store.renew_leases("nobody", until).await.unwrap(), 0);
}

/// Queued executions made before the cutoff that wait for no time are made due, oldest
/// first and a page at a time; fresh, delayed and claimed ones are left alone.
pub(crate) async fn stale_queued_work_is_made_due_oldest_first(store: Arc<dyn Store>) {
    let function = create(&*store, "stale").await;
    let now = ms(Utc::now());
    let made_at = |minutes_ago: i64| {
        let at = now - TimeDelta::minutes(minutes_ago);
        Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(at.timestamp()).unwrap(),
            0,
        ))
    };
    let mut old = Vec::new();
    for minutes_ago in [5, 4, 3] {
        let mut execution = queued(&function);
        execution.id = made_at(minutes_ago);
        store.insert_execution(&execution).await.unwrap();
        old.push(execution.id);
    }
    let mut delayed = queued(&function);
    delayed.id = made_at(6);
    delayed.run_at = Some(now + TimeDelta::hours(1));
    store.insert_execution(&delayed).await.unwrap();
    let mut claimed = queued(&function);
    claimed.id = made_at(7);
    store.insert_execution(&claimed).await.unwrap();
    assert!(store
        .claim(claimed.id, &claim_for("node-a", 30))
        .await
        .unwrap());
    let fresh = queued(&function);
    store.insert_execution(&fresh).await.unwrap();

    let cutoff = now - TimeDelta::minutes(1);
    assert_eq!(store.make_stale_due(cutoff, now, 2).await.unwrap(), 2);
    assert_eq!(store.make_stale_due(cutoff, now, 2).await.unwrap(), 1);
    assert_eq!(store.make_stale_due(cutoff, now, 2).await.unwrap(), 0);
    let taken: Vec<Uuid> = store
        .take_due(now, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut expected = old.clone();
    expected.sort();
    let mut got = taken.clone();
    got.sort();
    assert_eq!(got, expected, "the three stale ones, nothing else");
    let delayed_now = store.get_execution(delayed.id).await.unwrap().unwrap();
    assert_eq!(
        delayed_now.run_at, delayed.run_at,
        "a delayed one keeps its time"
    );
    let fresh_now = store.get_execution(fresh.id).await.unwrap().unwrap();
    assert_eq!(
        (fresh_now.status, fresh_now.run_at),
        (ExecutionStatus::Queued, None)
    );
}

/// A cancel request reaches only a starting or running execution, and only its holder
/// sees it, until the execution ends.
pub(crate) async fn a_cancel_request_reaches_only_the_holder(store: Arc<dyn Store>) {
    let function = create(&*store, "cancelled").await;
    let waiting = queued(&function);
    store.insert_execution(&waiting).await.unwrap();
    assert!(!store.request_cancel(waiting.id).await.unwrap(), "queued");
    assert!(
        !store.request_cancel(Uuid::now_v7()).await.unwrap(),
        "unknown"
    );
    let running = super::claimed(&*store, &function, "node-b").await;
    assert!(store.request_cancel(running.id).await.unwrap());
    assert_eq!(
        store.cancel_requests("node-a", 10).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        store.cancel_requests("node-b", 10).await.unwrap(),
        vec![running.id]
    );
    let ended = super::finished(ExecutionStatus::Cancelled);
    assert!(store
        .finish_execution(running.id, Holder::Owner("node-b"), &ended)
        .await
        .unwrap());
    assert_eq!(
        store.cancel_requests("node-b", 10).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert!(!store.request_cancel(running.id).await.unwrap(), "finished");
}

/// A claim bounded by `max_in_flight` counts what every owner holds of the function:
/// under contention exactly the bound is claimed, and a freed slot can be claimed again.
pub(crate) async fn a_bounded_claim_holds_the_limit_across_owners(store: Arc<dyn Store>) {
    let function = create(&*store, "bounded").await;
    let other = create(&*store, "other").await;
    let busy = super::claimed(&*store, &other, "node-z").await;
    let mut ids = Vec::new();
    for _ in 0..16 {
        let execution = queued(&function);
        store.insert_execution(&execution).await.unwrap();
        ids.push(execution.id);
    }
    let racers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let (store, id) = (store.clone(), *id);
            tokio::spawn(async move {
                let mut claim = claim_for(&format!("node-{}", n % 3), 30);
                claim.max_in_flight = Some(2);
                store.claim(id, &claim).await.unwrap().then_some(id)
            })
        })
        .collect();
    let mut won = Vec::new();
    for racer in racers {
        won.extend(racer.await.unwrap());
    }
    assert_eq!(won.len(), 2, "exactly the bound is claimed: {won:?}");
    assert_eq!(
        busy.status,
        ExecutionStatus::Starting,
        "another function's count apart"
    );
    let ended = super::finished(ExecutionStatus::Success);
    let holder = store
        .get_execution(won[0])
        .await
        .unwrap()
        .unwrap()
        .owner
        .unwrap();
    assert!(store
        .finish_execution(won[0], Holder::Owner(&holder), &ended)
        .await
        .unwrap());
    let waiting: Vec<Uuid> = ids.iter().copied().filter(|id| !won.contains(id)).collect();
    let mut claim = claim_for("node-a", 30);
    claim.max_in_flight = Some(2);
    assert!(
        store.claim(waiting[0], &claim).await.unwrap(),
        "a freed slot"
    );
    assert!(
        !store.claim(waiting[1], &claim).await.unwrap(),
        "full again"
    );
    claim.max_in_flight = None;
    assert!(
        store.claim(waiting[1], &claim).await.unwrap(),
        "unbounded claims ignore it"
    );
}
