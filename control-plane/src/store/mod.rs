//! Durable state: function versions, execution records and captured logs, behind the
//! [`Store`] trait. [`sqlite::SqliteStore`] is the embedded default,
//! [`postgres::PostgresStore`] one that several nodes can share,
//! [`memory::MemoryStore`] the fast one for tests, and [`WriteBehind`] a decorator over
//! any of them that records finished warm calls without making their caller wait.

#[cfg(test)]
pub(crate) mod contract;
mod cursor;
mod error;
pub mod memory;
mod model;
pub mod postgres;
pub mod sqlite;
mod write_behind;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    AttemptFailure, Claim, Execution, Finished, FunctionLoad, Holder, LogLine, NodeLoad,
    NodeRecord, Started,
};

use crate::access::TokenRecord;
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter};
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::secrets::{Sealed, SecretRecord};

pub use cursor::{CursorScope, ScheduleAdvance, ScheduleCursor};
pub use error::{Fault, StoreError};
pub use memory::MemoryStore;
pub use model::{Deletion, ExecutionFilter, FollowUps, PruneScope, Redrive, Unfinished};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use write_behind::WriteBehind;

/// Durable state of the control plane. Every method that returns `Ok` has made its write
/// durable (survives a kill -9 of the process) — for a store that persists at all: the
/// memory store keeps its state only as long as the process. The behaviour every store
/// must show is checked by the contract suite in `contract/`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores the first version of a new function. [`StoreError::FunctionExists`] if a
    /// function of that name exists (a deleted one does not count; its version numbers
    /// continue).
    async fn create_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError>;

    /// Stores a new version of an existing function and makes it current. When the hash
    /// equals the current version's, nothing is written and `(current, false)` is
    /// answered. [`StoreError::FunctionNotFound`] if there is no such function.
    async fn replace_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError>;

    /// The current version of a function that is not deleted.
    async fn get_function(&self, name: &str) -> Result<Option<FunctionVersion>, StoreError>;

    /// One version of a function, deleted or not.
    async fn get_function_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionVersion>, StoreError>;

    /// Current versions of every function that is not deleted, by name.
    async fn list_functions(&self) -> Result<Vec<FunctionVersion>, StoreError>;

    /// Every version of a function that is not deleted, oldest first; empty if unknown.
    async fn list_versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError>;

    /// Marks a function deleted (its versions stay for its executions). `false` if there
    /// was none.
    async fn delete_function(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a new execution. [`StoreError::DuplicateIdempotencyKey`] if its
    /// idempotency key is already used by an execution of the same function.
    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError>;

    /// Stores a new execution that may already be finished, and in the same transaction
    /// what its result sets off (`follow`): all of it or none.
    /// [`StoreError::DuplicateIdempotencyKey`] as [`Store::insert_execution`].
    async fn insert_with_follow_ups(
        &self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError>;

    /// One execution.
    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError>;

    /// The execution of `function` created with `key`.
    async fn find_by_idempotency_key(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Option<Execution>, StoreError>;

    /// Executions matching `filter`, newest first.
    async fn list_executions(&self, filter: &ExecutionFilter)
        -> Result<Vec<Execution>, StoreError>;

    /// Up to `limit` unfinished executions of the `which` kind after `after`, oldest
    /// first, without their payloads (`input` and `output` answer `null`): recovery pages
    /// through them without holding every input in memory.
    async fn list_unfinished(
        &self,
        which: Unfinished,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError>;

    /// Claims a queued execution that may run now for `claim.owner`: `queued` →
    /// `starting`, atomically, so exactly one runner gets it. `false`, and no change,
    /// if it is not queued, its `run_at` is still ahead, or `claim.max_in_flight`
    /// executions of its function are held already (by any node: claims of one
    /// function are serialized for that count).
    async fn claim(&self, id: Uuid, claim: &Claim) -> Result<bool, StoreError>;

    /// `starting` → `running` with `started`, if `owner` holds the execution. `false`,
    /// and no change, otherwise (cancelled, reclaimed, finished).
    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError>;

    /// Moves an execution `owner` holds back to `queued` for attempt `attempt`, clearing
    /// its claim, start fields and token. `false` otherwise.
    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError>;

    /// Moves an execution to a terminal status if `holder` may end it (see [`Holder`]).
    /// `false`, and no change, otherwise: a terminal status is never overwritten, a node
    /// never finishes what another holds, a runner never finishes what went back to the
    /// queue.
    async fn finish_execution(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
    ) -> Result<bool, StoreError> {
        self.finish_with_follow_ups(id, holder, finished, &FollowUps::default())
            .await
    }

    /// [`Store::finish_execution`], and in the same transaction, only if it applied, what
    /// the result sets off (`follow`): a chain fires, and a result is delivered, exactly
    /// once per finished execution, however often its result is reported.
    async fn finish_with_follow_ups(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError>;

    /// Moves an execution `owner` holds back to `queued` for attempt `attempt`, to run at
    /// `run_at` (due work), keeping how the attempt before failed. `false` otherwise.
    async fn schedule_retry(
        &self,
        id: Uuid,
        owner: &str,
        attempt: u32,
        run_at: DateTime<Utc>,
        failure: &AttemptFailure,
    ) -> Result<bool, StoreError>;

    /// Makes due now (`run_at` = `now`) the queued executions created before
    /// `created_before` that wait for no time, oldest first, at most `limit`; answers
    /// how many. When nodes share the store, such an execution may sit in the memory of
    /// a node that is gone: once due, any node's due work takes it (the claim still
    /// lets one run it).
    async fn make_stale_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError>;

    /// Up to `limit` queued executions of `function` that wait for no time and became
    /// due before `due_before` (their `due_at`, else their creation), oldest first: the
    /// ones past the function's queue age. Only ids: ending one is a conditional
    /// finish from the queue, so two nodes sweeping at once end each only once.
    async fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// Asks the node that holds execution `id` to cancel it (another node took the
    /// cancel): `false` when it is not starting or running.
    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError>;

    /// Executions `owner` holds (starting or running) that another node asked it to
    /// cancel, at most `limit`.
    async fn cancel_requests(&self, owner: &str, limit: u32) -> Result<Vec<Uuid>, StoreError>;

    /// Extends to `until` the lease of every execution `owner` holds; answers how many.
    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Up to `limit` starting or running executions held by another owner than `owner`
    /// whose lease lapsed before `now`, oldest first, without their payloads.
    async fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError>;

    /// Takes over execution `id` from `from`, whose lease lapsed before `now`, for
    /// `claim.owner`. `false`, and no change, if `from` no longer holds it or renewed.
    async fn reclaim(
        &self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> Result<bool, StoreError>;

    /// Due work: clears the `run_at` of up to `limit` queued executions whose time came
    /// (`run_at <= now`) and answers their ids and functions, each to one caller only;
    /// they are then claimable like any queued execution.
    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError>;

    /// The earliest `run_at` of a queued execution, if any.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Takes failed execution `id` off the dead-letter list, records that `retry` re-drove
    /// it and stores `retry`, in one transaction. A failure is re-driven once: nothing is
    /// stored when it already was, or when `id` is not a finished failure.
    async fn redrive(&self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError>;

    /// Execution `root` and the executions of its chain tree (`root_id = root`), by id,
    /// after `after` and at most `limit` of them.
    async fn chain_tree(
        &self,
        root: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError>;

    /// Appends captured lines to an execution's log.
    async fn append_logs(&self, id: Uuid, lines: &[LogLine]) -> Result<(), StoreError>;

    /// Up to `limit` lines of an execution's log with `seq > after_seq`, in order.
    async fn read_logs(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError>;

    /// Stores a new API token. `false`, and nothing stored, if one of that name exists.
    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError>;

    /// Every API token, by name.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Deletes the API token `name`; `false` if there was none.
    async fn delete_token(&self, name: &str) -> Result<bool, StoreError>;

    /// Records when the API token `name` was last used.
    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Stores a new value of secret `name`, sealed by the caller, as its next version
    /// (1 for a new secret). Answers the stored record.
    async fn put_secret(&self, name: &str, sealed: &Sealed) -> Result<SecretRecord, StoreError>;

    /// The current version of secret `name`.
    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError>;

    /// Every secret, by name (sealed values included; callers show only the metadata).
    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError>;

    /// Deletes secret `name`; `false` if there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError>;

    /// Deletes up to `limit` finished executions (and their logs) that finished before
    /// `before`, of the functions `scope` names; answers how many.
    async fn prune_executions(
        &self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError>;

    /// Deletes finished execution `id` and its logs.
    async fn delete_execution(&self, id: Uuid) -> Result<Deletion, StoreError>;

    /// Deletes the versions of every function beyond its newest `keep`, but never its
    /// current one nor one an unfinished execution runs on; answers how many.
    async fn prune_versions(&self, keep: u32) -> Result<usize, StoreError>;

    /// Returns free space to the file system, a little at a time.
    async fn compact(&self) -> Result<(), StoreError>;

    /// A server setting kept in the store (`None` if never set).
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets a server setting.
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Whether the store answers now (readiness): `Ok` if it can serve reads.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A number that changes whenever a function is created, replaced (a new version:
    /// a deploy, a scale) or deleted, through any node: nodes that cache functions
    /// compare it to know when to read them again.
    async fn catalog_generation(&self) -> Result<i64, StoreError>;

    /// Ids of executions that end from now on, through any node, as the store hears of
    /// them; `None` when it has no such feed (one node: this node ends them itself).
    /// A subscriber that falls behind misses some, so it is a hint to read the record,
    /// never the only way to learn of an end.
    fn finished_feed(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        None
    }

    /// Writes what node `node.id` says about itself, replacing its earlier record.
    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError>;

    /// Every node the store knows, by id (at most [`MAX_NODES`]).
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Replaces what `load.node_id` last said it holds of each function, for the other
    /// nodes sharing the store.
    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError>;

    /// The loads that nodes other than `node_id` published at or after `since` (a node
    /// that stopped publishing is not counted), at most [`MAX_NODES`].
    async fn peer_loads(
        &self,
        node_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<NodeLoad>, StoreError>;

    /// Every schedule cursor, by function and key (at most [`MAX_CURSORS`]).
    async fn list_schedule_cursors(&self) -> Result<Vec<ScheduleCursor>, StoreError>;

    /// Moves a schedule's cursor as `advance` says and, in the same transaction and only
    /// if it moved, stores `execution` (the tick's; `None` passes the tick over). `false`,
    /// and nothing written, when the cursor is not at `advance.from` (another node or an
    /// earlier pass moved it): of two fires of one tick, one loses.
    async fn advance_schedule(
        &self,
        advance: &ScheduleAdvance,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError>;

    /// Deletes the cursors of `function` that `scope` names; answers how many.
    async fn delete_schedule_cursors(
        &self,
        function: &str,
        scope: CursorScope<'_>,
    ) -> Result<usize, StoreError>;
    /// Stores new result deliveries, all or none: callbacks waiting for their execution
    /// to end, or pending deliveries of a final result.
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError>;

    /// Makes the waiting deliveries of `execution` pending with `body`, due at `now`;
    /// answers how many.
    async fn arm_deliveries(
        &self,
        execution: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// Deletes the waiting deliveries of `execution` (its enqueue was refused).
    async fn drop_waiting_deliveries(&self, execution: Uuid) -> Result<(), StoreError>;

    /// Claims up to `claim.limit` pending deliveries due at `claim.now` whose lease (if
    /// any) lapsed, for `claim.owner` until `claim.lease_until`, soonest due first: each
    /// to one caller only.
    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError>;

    /// Writes the state, attempts and due time of `delivery` and releases its lease, if
    /// `owner` holds it and it is still pending. `false`, and no change, otherwise.
    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError>;

    /// Deliveries matching `filter`, by id (oldest first).
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;

    /// A failed delivery becomes pending again, due at `now`, with a new round of
    /// attempts. `false` if it is not failed.
    async fn redrive_delivery(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// A node's load by function as the stores keep it: JSON text.
pub(crate) fn encode_load(functions: &BTreeMap<String, FunctionLoad>) -> String {
    serde_json::to_string(functions).unwrap_or_else(|_| "{}".to_owned())
}

/// Reads back what [`encode_load`] wrote.
pub(crate) fn decode_load(text: &str) -> Result<BTreeMap<String, FunctionLoad>, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
        what: "node load",
        detail: err.to_string(),
    })
}

/// The smallest execution id of `time`'s millisecond: ids are UUIDv7, ordered by the
/// time they were made, so every id made before `time` sorts below it.
pub(crate) fn stale_cutoff(time: DateTime<Utc>) -> Uuid {
    let ms = u128::try_from(time.timestamp_millis()).unwrap_or(0);
    Uuid::from_u128(ms << 80)
}

/// Most cursors [`Store::list_schedule_cursors`] answers.
pub const MAX_CURSORS: u32 = 100_000;

/// Most nodes [`Store::list_nodes`] answers.
pub const MAX_NODES: u32 = 1_000;
