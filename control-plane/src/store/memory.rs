//! [`MemoryStore`]: a [`Store`] that keeps everything in memory, with the SQLite
//! store's semantics (the store contract checks both), for fast tests. Nothing survives
//! the process. [`MemoryStore::set_fault`] makes it fail like a sick database, so tests
//! can exercise what the server does when its store fails.

#[path = "memory_catalog.rs"]
mod catalog;
#[path = "memory_deliveries.rs"]
mod deliveries;
#[path = "memory_exec.rs"]
mod exec;
#[path = "memory_schedules.rs"]
mod schedules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    CursorScope, Deletion, ExecutionFilter, Fault, FollowUps, PruneScope, Redrive, ScheduleAdvance,
    ScheduleCursor, Store, StoreError, Unfinished,
};
use crate::access::TokenRecord;
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter};
use crate::domain::{
    AttemptFailure, Claim, Execution, Finished, Holder, LogLine, NodeLoad, NodeRecord, Started,
};
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::secrets::{Sealed, SecretRecord};

/// `time` truncated to the millisecond, as every store keeps it.
fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// A function's row: its current version and whether it is deleted.
#[derive(Debug, Clone)]
struct FunctionRow {
    current: u32,
    deleted: bool,
}

/// Everything the store holds. Executions are ordered by id, as SQLite orders its
/// blobs: UUIDv7 ids thus list oldest first.
#[derive(Default)]
struct State {
    functions: BTreeMap<String, FunctionRow>,
    versions: BTreeMap<(String, u32), FunctionVersion>,
    executions: BTreeMap<Uuid, Execution>,
    /// `(function, idempotency key)` → execution.
    idempotency: HashMap<(String, String), Uuid>,
    logs: HashMap<Uuid, BTreeMap<u64, LogLine>>,
    tokens: BTreeMap<String, TokenRecord>,
    secrets: BTreeMap<String, SecretRecord>,
    settings: HashMap<String, String>,
    nodes: BTreeMap<String, NodeRecord>,
    /// What each node last said it holds.
    loads: BTreeMap<String, NodeLoad>,
    /// Executions another node asked their holder to cancel.
    cancel_requested: HashSet<Uuid>,
    /// Bumped by every change of a function (see [`Store::catalog_generation`]).
    catalog_generation: i64,
    /// `(function, schedule key)` → last tick.
    schedule_cursors: BTreeMap<(String, String), DateTime<Utc>>,
    /// Result deliveries by id.
    deliveries: BTreeMap<Uuid, deliveries::HeldDelivery>,
}

/// The in-memory store. One lock guards all of it and is never held across an await,
/// so every call is atomic (compare-and-set races resolve as in SQLite: one winner).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    fault: Mutex<Option<Fault>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("fault", &*lock(&self.fault))
            .finish()
    }
}

/// Locks `mutex`, even if a panicking test poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes later calls fail with `fault` until it is cleared with `None`:
    /// [`Fault::Full`] refuses writes only (reads go on, as on a full disk); any other
    /// fault refuses every call, [`Store::ping`] included.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.fault) = fault;
    }

    /// The error a call answers under the current fault, if any.
    fn refusal(&self, operation: &'static str, write: bool) -> Result<(), StoreError> {
        match *lock(&self.fault) {
            None => Ok(()),
            Some(Fault::Full) if !write => Ok(()),
            Some(fault) => Err(StoreError::database(
                operation,
                fault,
                format!("injected fault: {fault:?}"),
            )),
        }
    }

    fn read<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&State) -> T,
    ) -> Result<T, StoreError> {
        self.refusal(operation, false)?;
        Ok(work(&lock(&self.state)))
    }

    fn write<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.refusal(operation, true)?;
        work(&mut lock(&self.state))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        self.write("create function", |s| s.create_function(spec, content_hash))
    }

    async fn replace_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError> {
        self.write("replace function", |s| {
            s.replace_function(spec, content_hash)
        })
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionVersion>, StoreError> {
        self.read("read function", |s| s.get_function(name))
    }

    async fn get_function_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        self.read("read function version", |s| {
            s.versions.get(&(name.to_owned(), version)).cloned()
        })
    }

    async fn list_functions(&self) -> Result<Vec<FunctionVersion>, StoreError> {
        self.read("list functions", State::list_functions)
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError> {
        self.read("list versions", |s| s.list_versions(name))
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        self.write("delete function", |s| Ok(s.delete_function(name)))
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        self.write("insert execution", |s| s.insert(&[execution]))
    }

    async fn insert_with_follow_ups(
        &self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError> {
        self.write("insert execution", |s| s.insert_with(execution, follow))
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
        self.read("read execution", |s| s.executions.get(&id).cloned())
    }

    async fn find_by_idempotency_key(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Option<Execution>, StoreError> {
        self.read("find idempotency key", |s| {
            s.find_by_idempotency_key(function, key)
        })
    }

    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read("list executions", |s| s.list_executions(filter))
    }

    async fn list_unfinished(
        &self,
        which: Unfinished,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read("list unfinished", |s| {
            s.list_unfinished(&which, after, limit)
        })
    }

    async fn claim(&self, id: Uuid, claim: &Claim) -> Result<bool, StoreError> {
        let now = crate::domain::now();
        self.write("claim execution", |s| Ok(s.claim(id, claim, now)))
    }

    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError> {
        self.write("mark execution running", |s| {
            Ok(s.mark_running(id, owner, started))
        })
    }

    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        self.write("requeue execution", |s| Ok(s.requeue(id, owner, attempt)))
    }

    async fn finish_with_follow_ups(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError> {
        self.write("finish execution", |s| {
            s.finish(id, holder, finished, follow)
        })
    }

    async fn schedule_retry(
        &self,
        id: Uuid,
        owner: &str,
        attempt: u32,
        run_at: DateTime<Utc>,
        failure: &AttemptFailure,
    ) -> Result<bool, StoreError> {
        self.write("schedule a retry", |s| {
            Ok(s.schedule_retry(id, owner, attempt, run_at, failure))
        })
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write("renew leases", |s| Ok(s.renew_leases(owner, until)))
    }

    async fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read("list expired", |s| s.list_expired(owner, now, limit))
    }

    async fn reclaim(
        &self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        self.write("reclaim execution", |s| Ok(s.reclaim(id, from, now, claim)))
    }

    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        self.write("take due executions", |s| Ok(s.take_due(now, limit)))
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read("find the next due execution", State::next_due)
    }

    async fn redrive(&self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError> {
        self.write("re-drive execution", |s| s.redrive(id, retry))
    }

    async fn chain_tree(
        &self,
        root: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read("read chain tree", |s| s.chain_tree(root, after, limit))
    }

    async fn append_logs(&self, id: Uuid, lines: &[LogLine]) -> Result<(), StoreError> {
        self.write("insert log line", |s| {
            s.append_logs(id, lines);
            Ok(())
        })
    }

    async fn read_logs(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError> {
        self.read("read logs", |s| s.read_logs(id, after_seq, limit))
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        self.write("insert token", |s| Ok(s.insert_token(token)))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read("list tokens", |s| s.tokens.values().cloned().collect())
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        self.write("delete token", |s| Ok(s.tokens.remove(name).is_some()))
    }

    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write("touch token", |s| {
            s.touch_token(name, at);
            Ok(())
        })
    }

    async fn put_secret(&self, name: &str, sealed: &Sealed) -> Result<SecretRecord, StoreError> {
        self.write("store secret", |s| Ok(s.put_secret(name, sealed)))
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.read("read secret", |s| s.secrets.get(name).cloned())
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.read("list secrets", |s| s.secrets.values().cloned().collect())
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        self.write("delete secret", |s| Ok(s.secrets.remove(name).is_some()))
    }

    async fn prune_executions(
        &self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        self.write("prune executions", |s| {
            Ok(s.prune_executions(scope, before, limit))
        })
    }

    async fn delete_execution(&self, id: Uuid) -> Result<Deletion, StoreError> {
        self.write("delete execution", |s| Ok(s.delete_execution(id)))
    }

    async fn prune_versions(&self, keep: u32) -> Result<usize, StoreError> {
        self.write("prune versions", |s| Ok(s.prune_versions(keep)))
    }

    async fn compact(&self) -> Result<(), StoreError> {
        // Memory is given back as records go; there is nothing to compact.
        self.write("compact", |_| Ok(()))
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read("read setting", |s| s.settings.get(key).cloned())
    }

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let mut node = node.clone();
        node.started_at = ms(node.started_at);
        node.heartbeat_at = ms(node.heartbeat_at);
        node.stopped_at = node.stopped_at.map(ms);
        self.write("record a heartbeat", |s| {
            s.nodes.insert(node.id.clone(), node);
            Ok(())
        })
    }

    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write("ask for a cancel", |s| Ok(s.request_cancel(id)))
    }

    async fn cancel_requests(&self, owner: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        self.read("list cancel requests", |s| s.cancel_requests(owner, limit))
    }

    async fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.read("list overdue executions", |s| {
            s.list_overdue(function, due_before, limit)
        })
    }

    async fn make_stale_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        self.write("make stale queued executions due", |s| {
            Ok(s.make_stale_due(created_before, now, limit))
        })
    }

    async fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.read("read the catalog generation", |s| s.catalog_generation)
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read("list nodes", |s| {
            s.nodes
                .values()
                .take(super::MAX_NODES as usize)
                .cloned()
                .collect()
        })
    }

    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError> {
        let mut load = load.clone();
        load.published_at = ms(load.published_at);
        self.write("publish a node's load", |s| {
            s.loads.insert(load.node_id.clone(), load);
            Ok(())
        })
    }

    async fn peer_loads(
        &self,
        node_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<NodeLoad>, StoreError> {
        self.read("read the other nodes' loads", |s| {
            s.loads
                .values()
                .filter(|load| load.node_id != node_id && load.published_at >= since)
                .take(super::MAX_NODES as usize)
                .cloned()
                .collect()
        })
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write("store setting", |s| {
            s.settings.insert(key.to_owned(), value.to_owned());
            Ok(())
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read("ping", |_| ())
    }

    async fn list_schedule_cursors(&self) -> Result<Vec<ScheduleCursor>, StoreError> {
        self.read("list schedule cursors", State::list_schedule_cursors)
    }

    async fn advance_schedule(
        &self,
        advance: &ScheduleAdvance,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        self.write("advance schedule", |s| {
            s.advance_schedule(advance, execution)
        })
    }

    async fn delete_schedule_cursors(
        &self,
        function: &str,
        scope: CursorScope<'_>,
    ) -> Result<usize, StoreError> {
        self.write("delete schedule cursors", |s| {
            Ok(s.delete_schedule_cursors(function, scope))
        })
    }
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        self.write("store deliveries", |s| s.insert_deliveries(deliveries))
    }

    async fn arm_deliveries(
        &self,
        execution: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.write("arm deliveries", |s| {
            Ok(s.arm_deliveries(execution, body, now))
        })
    }

    async fn drop_waiting_deliveries(&self, execution: Uuid) -> Result<(), StoreError> {
        self.write("drop waiting deliveries", |s| {
            s.drop_waiting_deliveries(execution);
            Ok(())
        })
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        self.write("claim deliveries", |s| Ok(s.claim_deliveries(claim)))
    }

    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError> {
        self.write("record a delivery attempt", |s| {
            Ok(s.update_delivery(delivery, owner))
        })
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.read("list deliveries", |s| s.list_deliveries(filter))
    }

    async fn redrive_delivery(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write("re-drive a delivery", |s| Ok(s.redrive_delivery(id, now)))
    }
}

#[cfg(test)]
mod contract {
    use std::sync::Arc;

    use crate::store::contract::Subject;
    use crate::store::MemoryStore;

    fn memory() -> Subject {
        (Box::new(()), Arc::new(MemoryStore::new()))
    }

    crate::store_contract!(memory());
}
