//! The write-behind decorator over a memory store that fails on demand: records are
//! readable at once, kept while the store refuses them, written when it is back, and a
//! close waits for them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::WriteBehind;
use crate::domain::ExecutionStatus;
use crate::store::contract::{create, ms, queued};
use crate::store::{Fault, FollowUps, MemoryStore, Store};

fn behind() -> (Arc<MemoryStore>, WriteBehind) {
    let memory = Arc::new(MemoryStore::new());
    let behind = WriteBehind::new(memory.clone());
    (memory, behind)
}

/// Lets the background writes run (time is paused: sleeps end at once).
async fn settle(behind: &WriteBehind) {
    for _ in 0..100 {
        if behind.unwritten() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_held_record_is_readable_but_not_stored() {
    let (memory, behind) = behind();
    let function = create(&behind, "warm").await;
    let mut running = queued(&function);
    running.status = ExecutionStatus::Running;
    behind.hold(&running);
    assert_eq!(
        behind.get_execution(running.id).await.unwrap(),
        Some(running.clone())
    );
    assert_eq!(memory.get_execution(running.id).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_finished_record_and_its_children_are_written_behind() {
    let (memory, behind) = behind();
    let function = create(&behind, "warm").await;
    let mut done = queued(&function);
    done.status = ExecutionStatus::Success;
    done.output = Some(json!("ok"));
    done.finished_at = Some(ms(chrono::Utc::now()));
    let mut child = queued(&function);
    child.parent_id = Some(done.id);
    child.root_id = Some(done.id);
    behind.write_behind(done.clone(), FollowUps::children(vec![child.clone()]));
    assert_eq!(
        behind.get_execution(done.id).await.unwrap(),
        Some(done.clone()),
        "readable before it is written"
    );
    settle(&behind).await;
    assert_eq!(behind.unwritten(), 0);
    assert_eq!(memory.get_execution(done.id).await.unwrap(), Some(done));
    assert_eq!(memory.get_execution(child.id).await.unwrap(), Some(child));
}

#[tokio::test(start_paused = true)]
async fn a_refused_record_is_kept_readable_and_written_when_the_store_is_back() {
    let (memory, behind) = behind();
    let function = create(&behind, "warm").await;
    let mut done = queued(&function);
    done.status = ExecutionStatus::Error;
    done.finished_at = Some(ms(chrono::Utc::now()));
    memory.set_fault(Some(Fault::Full));
    behind.write_behind(done.clone(), FollowUps::default());
    // A minute of refusals: the record stays, readable through the decorator.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(behind.unwritten(), 1);
    assert_eq!(
        behind.get_execution(done.id).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(memory.get_execution(done.id).await.unwrap(), None);
    memory.set_fault(None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    settle(&behind).await;
    assert_eq!(behind.unwritten(), 0);
    assert_eq!(memory.get_execution(done.id).await.unwrap(), Some(done));
}

#[tokio::test(start_paused = true)]
async fn a_record_refused_for_good_is_not_retried() {
    let (memory, behind) = behind();
    let function = create(&behind, "warm").await;
    let first = queued(&function);
    memory.insert_execution(&first).await.unwrap();
    let mut twin = queued(&function);
    twin.id = first.id;
    twin.status = ExecutionStatus::Success;
    behind.write_behind(twin, FollowUps::default());
    settle(&behind).await;
    assert_eq!(
        behind.unwritten(),
        0,
        "an existing id is not retried forever"
    );
    let stored = behind.get_execution(first.id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        ExecutionStatus::Queued,
        "the stored one stays"
    );
}

#[tokio::test(start_paused = true)]
async fn close_waits_for_pending_writes_then_gives_up() {
    let (memory, behind) = behind();
    let function = create(&behind, "warm").await;
    let mut done = queued(&function);
    done.status = ExecutionStatus::Success;
    memory.set_fault(Some(Fault::Unavailable));
    behind.write_behind(done.clone(), FollowUps::default());
    let started = tokio::time::Instant::now();
    behind.close(Duration::from_secs(3)).await;
    assert!(started.elapsed() >= Duration::from_secs(3), "it waited");
    assert_eq!(behind.unwritten(), 0, "then gave up");
    memory.set_fault(None);
    assert_eq!(behind.get_execution(done.id).await.unwrap(), None);
    let mut other = queued(&function);
    other.status = ExecutionStatus::Success;
    let fresh = WriteBehind::new(memory.clone());
    fresh.write_behind(other.clone(), FollowUps::default());
    fresh.close(Duration::from_secs(3)).await;
    assert_eq!(memory.get_execution(other.id).await.unwrap(), Some(other));
}
