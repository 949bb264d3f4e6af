//! [`PostgresStore`]: the [`Store`] on a PostgreSQL server, which several nodes can
//! share.
//!
//! Each call takes a connection from a pool (tokio-postgres under deadpool) and runs one
//! statement, or one transaction where the contract asks for all or nothing (a finish
//! with its children, a re-drive, a function's new version). New executions are the
//! exception: concurrent inserts are gathered by one writer task into one statement per
//! round trip (`insert_batch.rs`), each caller answered its own row's outcome. Status
//! changes are compare-and-set `UPDATE … WHERE status …` statements, so of two nodes
//! racing for one execution exactly one wins; due work is taken with
//! `FOR UPDATE SKIP LOCKED`. The schema is migrated at open (see `schema.rs`).
//! Timestamps are kept to the millisecond, as by the SQLite store, and every write is
//! committed before the call answers.

mod access_sql;
mod catalog_sql;
mod claim_sql;
mod codec;
mod connect;
mod deliveries_sql;
mod exec_sql;
mod exec_tx;
mod handle;
mod insert_batch;
#[cfg(test)]
mod insert_batch_tests;
mod listener;
mod nodes_sql;
mod retention_sql;
#[cfg(test)]
mod retention_tests;
mod schedules_sql;
mod schema;
#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use self::codec::{to_json, to_ms};
use self::exec_sql::{ExecutionRow, FinishedRow};
use self::exec_tx::child_rows;
use self::insert_batch::InsertWriter;
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

/// The PostgreSQL store. Open it with [`PostgresStore::open`].
pub struct PostgresStore {
    pool: Pool,
    target: String,
    /// Ids of executions that ended, from the database's notifications.
    finished: tokio::sync::broadcast::Sender<Uuid>,
    /// The task listening for them; stopped with the store.
    listener: tokio::task::JoinHandle<()>,
    /// The writer task new executions are inserted through; it stops with the store.
    inserts: InsertWriter,
}

/// Where a connection URL points (hosts, ports, database), without its password, for
/// messages; why not if it cannot be read.
pub fn describe_url(url: &str) -> Result<String, StoreError> {
    connect::parse(url).map(|target| connect::describe(&target.config))
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        let spec_json = to_json(spec, "function spec")?;
        let mut client = self.client().await?;
        catalog_sql::create_function(&mut client, spec.clone(), &spec_json, content_hash.into())
            .await
    }

    async fn replace_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError> {
        let spec_json = to_json(spec, "function spec")?;
        let mut client = self.client().await?;
        catalog_sql::replace_function(&mut client, spec.clone(), &spec_json, content_hash.into())
            .await
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionVersion>, StoreError> {
        catalog_sql::get_function(&self.client().await?, name).await
    }

    async fn get_function_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        catalog_sql::get_function_version(&self.client().await?, name, version).await
    }

    async fn list_functions(&self) -> Result<Vec<FunctionVersion>, StoreError> {
        catalog_sql::list_functions(&self.client().await?).await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError> {
        catalog_sql::list_versions(&self.client().await?, name).await
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        catalog_sql::delete_function(&self.client().await?, name).await
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        self.inserts.insert(ExecutionRow::new(execution)?).await
    }

    async fn insert_with_follow_ups(
        &self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError> {
        let (row, children) = (ExecutionRow::new(execution)?, child_rows(follow)?);
        let mut client = self.client().await?;
        exec_tx::insert(&mut client, &row, execution.id, follow, &children).await
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
        exec_sql::get_execution(&self.client().await?, id).await
    }

    async fn find_by_idempotency_key(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Option<Execution>, StoreError> {
        exec_sql::find_by_idempotency_key(&self.client().await?, function, key).await
    }

    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        exec_sql::list_executions(&self.client().await?, filter).await
    }

    async fn list_unfinished(
        &self,
        which: Unfinished,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        exec_sql::list_unfinished(&self.client().await?, which, after, limit).await
    }

    async fn claim(&self, id: Uuid, claim: &Claim) -> Result<bool, StoreError> {
        let now = to_ms(crate::domain::now());
        exec_tx::claim(&mut self.client().await?, id, claim, now).await
    }

    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError> {
        claim_sql::mark_running(&self.client().await?, id, owner, started).await
    }

    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        claim_sql::requeue(&self.client().await?, id, owner, attempt).await
    }

    async fn finish_with_follow_ups(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError> {
        let (row, children) = (FinishedRow::new(finished)?, child_rows(follow)?);
        let mut client = self.client().await?;
        exec_tx::finish(&mut client, id, holder, &row, follow, &children).await
    }

    async fn schedule_retry(
        &self,
        id: Uuid,
        owner: &str,
        attempt: u32,
        run_at: DateTime<Utc>,
        failure: &AttemptFailure,
    ) -> Result<bool, StoreError> {
        let failure = to_json(failure, "attempt failure")?;
        let client = self.client().await?;
        claim_sql::schedule_retry(&client, id, owner, attempt, to_ms(run_at), &failure).await
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError> {
        claim_sql::renew_leases(&self.client().await?, owner, to_ms(until)).await
    }

    async fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        claim_sql::list_expired(&self.client().await?, owner, to_ms(now), limit).await
    }

    async fn reclaim(
        &self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        claim_sql::reclaim(&self.client().await?, id, from, to_ms(now), claim).await
    }

    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        claim_sql::take_due(&self.client().await?, to_ms(now), limit).await
    }

    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        claim_sql::request_cancel(&self.client().await?, id).await
    }

    async fn cancel_requests(&self, owner: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        claim_sql::cancel_requests(&self.client().await?, owner, limit).await
    }

    async fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let client = self.client().await?;
        claim_sql::list_overdue(&client, function, to_ms(due_before), limit).await
    }

    async fn make_stale_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let before = super::stale_cutoff(created_before);
        claim_sql::make_stale_due(&self.client().await?, before, to_ms(now), limit).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due = claim_sql::next_due(&self.client().await?).await?;
        due.map(|ms| codec::from_ms(ms, "next run_at")).transpose()
    }

    async fn redrive(&self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError> {
        let row = ExecutionRow::new(retry)?;
        exec_tx::redrive(&mut self.client().await?, id, retry.id, &row).await
    }

    async fn chain_tree(
        &self,
        root: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        exec_sql::chain_tree(&self.client().await?, root, after, limit).await
    }

    async fn append_logs(&self, id: Uuid, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        catalog_sql::append_logs(&self.client().await?, id, lines).await
    }

    async fn read_logs(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError> {
        catalog_sql::read_logs(&self.client().await?, id, after_seq, limit).await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        access_sql::insert_token(&self.client().await?, token).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        access_sql::list_tokens(&self.client().await?).await
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        access_sql::delete_token(&self.client().await?, name).await
    }

    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        access_sql::touch_token(&self.client().await?, name, at).await
    }

    async fn put_secret(&self, name: &str, sealed: &Sealed) -> Result<SecretRecord, StoreError> {
        access_sql::put_secret(&self.client().await?, name, sealed).await
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        access_sql::get_secret(&self.client().await?, name).await
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        access_sql::list_secrets(&self.client().await?).await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        access_sql::delete_secret(&self.client().await?, name).await
    }

    async fn prune_executions(
        &self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        retention_sql::prune_executions(&self.client().await?, scope, before, limit).await
    }

    async fn delete_execution(&self, id: Uuid) -> Result<Deletion, StoreError> {
        retention_sql::delete_execution(&mut self.client().await?, id).await
    }

    async fn prune_versions(&self, keep: u32) -> Result<usize, StoreError> {
        retention_sql::prune_versions(&mut self.client().await?, keep).await
    }

    /// Nothing to do: PostgreSQL's autovacuum makes the space of deleted rows reusable
    /// and gives trailing free pages back to the file system on its own.
    async fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        access_sql::get_setting(&self.client().await?, key).await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        access_sql::put_setting(&self.client().await?, key, value).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        nodes_sql::ping(&self.client().await?).await
    }

    async fn catalog_generation(&self) -> Result<i64, StoreError> {
        nodes_sql::catalog_generation(&self.client().await?).await
    }

    fn finished_feed(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        Some(self.finished.subscribe())
    }

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        nodes_sql::heartbeat(&self.client().await?, node).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        nodes_sql::list_nodes(&self.client().await?).await
    }

    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError> {
        nodes_sql::publish_load(&self.client().await?, load).await
    }

    async fn peer_loads(
        &self,
        node_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<NodeLoad>, StoreError> {
        nodes_sql::peer_loads(&self.client().await?, node_id, since.timestamp_millis()).await
    }

    async fn list_schedule_cursors(&self) -> Result<Vec<ScheduleCursor>, StoreError> {
        schedules_sql::list(&self.client().await?).await
    }

    async fn advance_schedule(
        &self,
        advance: &ScheduleAdvance,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        let row = execution.map(ExecutionRow::new).transpose()?;
        schedules_sql::advance(&mut self.client().await?, advance, row.as_ref()).await
    }

    async fn delete_schedule_cursors(
        &self,
        function: &str,
        scope: CursorScope<'_>,
    ) -> Result<usize, StoreError> {
        schedules_sql::delete(&self.client().await?, function, scope).await
    }

    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        deliveries_sql::insert_all(&mut self.client().await?, deliveries).await
    }

    async fn arm_deliveries(
        &self,
        execution: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        deliveries_sql::arm(&self.client().await?, execution, body, now).await
    }

    async fn drop_waiting_deliveries(&self, execution: Uuid) -> Result<(), StoreError> {
        deliveries_sql::drop_waiting(&self.client().await?, execution).await
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        deliveries_sql::claim(&self.client().await?, claim).await
    }

    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError> {
        deliveries_sql::update(&self.client().await?, delivery, owner).await
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        deliveries_sql::list(&self.client().await?, filter).await
    }

    async fn redrive_delivery(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        deliveries_sql::redrive(&self.client().await?, id, now).await
    }
}
