//! [`SqliteStore`]: the embedded [`Store`], one SQLite database in the data directory.
//!
//! Writes go through one writer thread that commits them in groups (see
//! `sqlite_writer.rs`); reads run on a small pool of read-only connections in tokio's
//! blocking threads, concurrently with the writer thanks to WAL. A write is answered only
//! once its transaction is committed; with `synchronous=NORMAL` that makes it durable
//! against a kill -9 of the process, not against a power loss (see `sqlite_schema.rs`).
//! Timestamps are kept to the millisecond.

#[path = "sqlite_access_sql.rs"]
mod access_sql;
#[path = "sqlite_claim_sql.rs"]
mod claim_sql;
#[path = "sqlite_deliveries_sql.rs"]
mod deliveries_sql;
#[path = "sqlite_exec_calls.rs"]
mod exec_calls;
#[path = "sqlite_exec_reads.rs"]
mod exec_reads;
#[path = "sqlite_exec_sql.rs"]
mod exec_sql;
#[path = "sqlite_handle.rs"]
mod handle;
#[path = "sqlite_nodes_sql.rs"]
mod nodes_sql;
#[path = "sqlite_queue.rs"]
mod queue;
#[path = "sqlite_readers.rs"]
mod readers;
#[path = "sqlite_retention_sql.rs"]
mod retention_sql;
#[path = "sqlite_schedules_sql.rs"]
mod schedules_sql;
#[path = "sqlite_schema.rs"]
mod schema;
#[path = "sqlite_sql.rs"]
mod sql;
#[path = "sqlite_writer.rs"]
mod writer;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use self::deliveries_sql::FollowUpRows;
use self::exec_sql::{ExecutionRow, FinishedRow};
use self::handle::with_copy;
use self::readers::Readers;
use self::writer::Writer;
use super::{
    CursorScope, Deletion, ExecutionFilter, FollowUps, PruneScope, Redrive, ScheduleAdvance,
    ScheduleCursor, Store, StoreError, Unfinished,
};
use crate::access::TokenRecord;
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter};
use crate::domain::{
    AttemptFailure, Claim, Execution, Finished, Holder, LogLine, NodeLoad, NodeRecord, Started,
};
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::secrets::{Sealed, SecretRecord};

/// The SQLite store. Open it with [`SqliteStore::open`]; dropping it (or
/// [`SqliteStore::close`]) finishes the queued writes and stops the writer thread.
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    closed: Arc<AtomicBool>,
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        self.write(sql::version_job(spec, content_hash, sql::create_function)?)
            .await
    }

    async fn replace_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError> {
        self.write(sql::version_job(spec, content_hash, sql::replace_function)?)
            .await
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionVersion>, StoreError> {
        self.read(with_copy(name, sql::get_function)).await
    }

    async fn get_function_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| sql::get_function_version(conn, &name, version))
            .await
    }

    async fn list_functions(&self) -> Result<Vec<FunctionVersion>, StoreError> {
        self.read(sql::list_functions).await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError> {
        self.read(with_copy(name, sql::list_versions)).await
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        self.write(with_copy(name, sql::delete_function)).await
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        exec_calls::insert_execution(self, execution).await
    }

    async fn insert_with_follow_ups(
        &self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError> {
        let (row, follow) = (ExecutionRow::new(execution)?, FollowUpRows::new(follow)?);
        exec_calls::insert(self, row, follow, execution.id).await
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
        self.read(move |conn| exec_reads::get_execution(conn, id))
            .await
    }

    async fn find_by_idempotency_key(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Option<Execution>, StoreError> {
        exec_calls::find_by_idempotency_key(self, function, key).await
    }

    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read(with_copy(filter, exec_reads::list_executions))
            .await
    }

    async fn list_unfinished(
        &self,
        which: Unfinished,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read(move |conn| exec_sql::list_unfinished(conn, which, after, limit))
            .await
    }

    async fn claim(&self, id: Uuid, claim: &Claim) -> Result<bool, StoreError> {
        queue::claim(self, id, claim).await
    }

    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError> {
        exec_calls::mark_running(self, id, owner, started).await
    }

    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        exec_calls::requeue(self, id, owner, attempt).await
    }

    async fn finish_with_follow_ups(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError> {
        let (row, follow) = (FinishedRow::new(finished)?, FollowUpRows::new(follow)?);
        exec_calls::finish(self, id, holder, row, follow).await
    }

    async fn schedule_retry(
        &self,
        id: Uuid,
        owner: &str,
        attempt: u32,
        run_at: DateTime<Utc>,
        failure: &AttemptFailure,
    ) -> Result<bool, StoreError> {
        let failure = sql::to_json(failure, "attempt failure")?;
        exec_calls::schedule_retry(self, id, owner, attempt, run_at, failure).await
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError> {
        queue::renew_leases(self, owner, until).await
    }

    async fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        queue::list_by(self, owner, now, limit, claim_sql::list_expired).await
    }

    async fn reclaim(
        &self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        queue::reclaim(self, id, from, now, claim).await
    }

    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        queue::take_due(self, now, limit).await
    }

    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write(move |conn| claim_sql::request_cancel(conn, id))
            .await
    }

    async fn cancel_requests(&self, owner: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        queue::cancel_requests(self, owner, limit).await
    }

    async fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        queue::list_by(self, function, due_before, limit, claim_sql::list_overdue).await
    }

    async fn make_stale_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        queue::make_stale_due(self, created_before, now, limit).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        queue::next_due(self).await
    }

    async fn redrive(&self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError> {
        exec_calls::redrive(self, id, retry).await
    }

    async fn chain_tree(
        &self,
        root: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read(move |conn| exec_reads::chain_tree(conn, root, after, limit))
            .await
    }

    async fn append_logs(&self, id: Uuid, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let lines = lines.to_vec();
        self.write(move |conn| sql::append_logs(conn, id, &lines))
            .await
    }

    async fn read_logs(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError> {
        self.read(move |conn| sql::read_logs(conn, id, after_seq, limit))
            .await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        self.write(with_copy(token, access_sql::insert_token)).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(access_sql::list_tokens).await
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        self.write(with_copy(name, access_sql::delete_token)).await
    }

    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |conn| access_sql::touch_token(conn, &name, at))
            .await
    }

    async fn put_secret(&self, name: &str, sealed: &Sealed) -> Result<SecretRecord, StoreError> {
        let (name, sealed) = (name.to_owned(), sealed.clone());
        self.write(move |conn| access_sql::put_secret(conn, &name, &sealed))
            .await
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.read(with_copy(name, access_sql::get_secret)).await
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.read(access_sql::list_secrets).await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        self.write(with_copy(name, access_sql::delete_secret)).await
    }

    async fn prune_executions(
        &self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let scope = scope.clone();
        self.write(move |conn| retention_sql::prune_executions(conn, &scope, before, limit))
            .await
    }

    async fn delete_execution(&self, id: Uuid) -> Result<Deletion, StoreError> {
        self.write(move |conn| retention_sql::delete_execution(conn, id))
            .await
    }

    async fn prune_versions(&self, keep: u32) -> Result<usize, StoreError> {
        self.write(move |conn| retention_sql::prune_versions(conn, keep))
            .await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        self.write(retention_sql::compact).await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(with_copy(key, access_sql::get_setting)).await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| access_sql::put_setting(conn, &key, &value))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(nodes_sql::ping).await
    }

    async fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.read(nodes_sql::catalog_generation).await
    }

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        self.write(with_copy(node, nodes_sql::heartbeat)).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read(nodes_sql::list_nodes).await
    }

    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError> {
        self.write(with_copy(load, nodes_sql::publish_load)).await
    }

    async fn peer_loads(
        &self,
        node_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<NodeLoad>, StoreError> {
        let (node_id, since) = (node_id.to_owned(), since.timestamp_millis());
        self.read(move |conn| nodes_sql::peer_loads(conn, &node_id, since))
            .await
    }

    async fn list_schedule_cursors(&self) -> Result<Vec<ScheduleCursor>, StoreError> {
        self.read(schedules_sql::list).await
    }

    async fn advance_schedule(
        &self,
        advance: &ScheduleAdvance,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        let row = execution.map(ExecutionRow::new).transpose()?;
        let advance = advance.clone();
        self.write(move |conn| schedules_sql::advance(conn, &advance, row.as_ref()))
            .await
    }

    async fn delete_schedule_cursors(
        &self,
        function: &str,
        scope: CursorScope<'_>,
    ) -> Result<usize, StoreError> {
        let (function, keys) = (function.to_owned(), schedules_sql::Keys::new(scope));
        self.write(move |conn| schedules_sql::delete(conn, &function, keys.scope()))
            .await
    }

    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        self.write(with_copy(deliveries, deliveries_sql::insert))
            .await
    }

    async fn arm_deliveries(
        &self,
        execution: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let body = body.to_owned();
        self.write(move |conn| deliveries_sql::arm(conn, execution, &body, now))
            .await
    }

    async fn drop_waiting_deliveries(&self, execution: Uuid) -> Result<(), StoreError> {
        self.write(move |conn| deliveries_sql::drop_waiting(conn, execution))
            .await
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        self.write(with_copy(claim, deliveries_sql::claim)).await
    }

    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError> {
        let (delivery, owner) = (delivery.clone(), owner.to_owned());
        self.write(move |conn| deliveries_sql::update(conn, &delivery, &owner))
            .await
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.read(with_copy(filter, deliveries_sql::list)).await
    }

    async fn redrive_delivery(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write(move |conn| deliveries_sql::redrive(conn, id, now))
            .await
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sqlite_exec_tests.rs"]
mod exec_tests;

#[cfg(test)]
#[path = "sqlite_contract.rs"]
mod contract;
