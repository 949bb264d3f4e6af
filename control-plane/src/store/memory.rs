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
#[path = "memory_handle.rs"]
mod handle;
#[path = "memory_nodes.rs"]
mod nodes;
#[path = "memory_schedules.rs"]
mod schedules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

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
        self.apply("delete function", |s| s.delete_function(name))
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
        self.apply("claim execution", |s| s.claim(id, claim, now))
    }

    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError> {
        self.apply("mark execution running", |s| {
            s.mark_running(id, owner, started)
        })
    }

    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        self.apply("requeue execution", |s| s.requeue(id, owner, attempt))
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
        self.apply("schedule a retry", |s| {
            s.schedule_retry(id, owner, attempt, run_at, failure)
        })
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError> {
        self.apply("renew leases", |s| s.renew_leases(owner, until))
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
        self.apply("reclaim execution", |s| s.reclaim(id, from, now, claim))
    }

    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        self.apply("take due executions", |s| s.take_due(now, limit))
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
        self.apply("insert log line", |s| s.append_logs(id, lines))
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
        self.apply("insert token", |s| s.insert_token(token))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read("list tokens", |s| s.tokens.values().cloned().collect())
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        self.apply("delete token", |s| s.tokens.remove(name).is_some())
    }

    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.apply("touch token", |s| s.touch_token(name, at))
    }

    async fn put_secret(&self, name: &str, sealed: &Sealed) -> Result<SecretRecord, StoreError> {
        self.apply("store secret", |s| s.put_secret(name, sealed))
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.read("read secret", |s| s.secrets.get(name).cloned())
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.read("list secrets", |s| s.secrets.values().cloned().collect())
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        self.apply("delete secret", |s| s.secrets.remove(name).is_some())
    }

    async fn prune_executions(
        &self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        self.apply("prune executions", |s| {
            s.prune_executions(scope, before, limit)
        })
    }

    async fn delete_execution(&self, id: Uuid) -> Result<Deletion, StoreError> {
        self.apply("delete execution", |s| s.delete_execution(id))
    }

    async fn prune_versions(&self, keep: u32) -> Result<usize, StoreError> {
        self.apply("prune versions", |s| s.prune_versions(keep))
    }

    async fn compact(&self) -> Result<(), StoreError> {
        // Memory is given back as records go; there is nothing to compact.
        self.apply("compact", |_| ())
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read("read setting", |s| s.settings.get(key).cloned())
    }

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        self.apply("record a heartbeat", |s| s.heartbeat(node))
    }

    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        self.apply("ask for a cancel", |s| s.request_cancel(id))
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
        self.apply("make stale queued executions due", |s| {
            s.make_stale_due(created_before, now, limit)
        })
    }

    async fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.read("read the catalog generation", |s| s.catalog_generation)
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read("list nodes", State::list_nodes)
    }

    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError> {
        self.apply("publish a node's load", |s| s.publish_load(load))
    }

    async fn peer_loads(
        &self,
        node_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<NodeLoad>, StoreError> {
        self.read("read the other nodes' loads", |s| {
            s.peer_loads(node_id, since)
        })
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.apply("store setting", |s| s.put_setting(key, value))
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
        self.apply("delete schedule cursors", |s| {
            s.delete_schedule_cursors(function, scope)
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
        self.apply("arm deliveries", |s| s.arm_deliveries(execution, body, now))
    }

    async fn drop_waiting_deliveries(&self, execution: Uuid) -> Result<(), StoreError> {
        self.apply("drop waiting deliveries", |s| {
            s.drop_waiting_deliveries(execution)
        })
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        self.apply("claim deliveries", |s| s.claim_deliveries(claim))
    }

    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError> {
        self.apply("record a delivery attempt", |s| {
            s.update_delivery(delivery, owner)
        })
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.read("list deliveries", |s| s.list_deliveries(filter))
    }

    async fn redrive_delivery(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.apply("re-drive a delivery", |s| s.redrive_delivery(id, now))
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
