//! [`Store`] for [`WriteBehind`]: every call goes to the store underneath; reads of
//! one execution answer a held record first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::WriteBehind;
use crate::access::TokenRecord;
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter};
use crate::domain::{
    AttemptFailure, Claim, Execution, Finished, Holder, LogLine, NodeLoad, NodeRecord, Started,
};
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::secrets::{Sealed, SecretRecord};
use crate::store::{
    CursorScope, Deletion, ExecutionFilter, FollowUps, PruneScope, Redrive, ScheduleAdvance,
    ScheduleCursor, Store, StoreError, Unfinished,
};

#[async_trait]
impl Store for WriteBehind {
    async fn create_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        self.inner.create_function(spec, content_hash).await
    }

    async fn replace_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError> {
        self.inner.replace_function(spec, content_hash).await
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionVersion>, StoreError> {
        self.inner.get_function(name).await
    }

    async fn get_function_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        self.inner.get_function_version(name, version).await
    }

    async fn list_functions(&self) -> Result<Vec<FunctionVersion>, StoreError> {
        self.inner.list_functions().await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<FunctionVersion>, StoreError> {
        self.inner.list_versions(name).await
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_function(name).await
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        self.inner.insert_execution(execution).await
    }

    async fn insert_with_follow_ups(
        &self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError> {
        self.inner.insert_with_follow_ups(execution, follow).await
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
        if let Some(held) = self.shared.held.get(&id) {
            return Ok(Some(held.clone()));
        }
        self.inner.get_execution(id).await
    }

    async fn find_by_idempotency_key(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Option<Execution>, StoreError> {
        self.inner.find_by_idempotency_key(function, key).await
    }

    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        self.inner.list_executions(filter).await
    }

    async fn list_unfinished(
        &self,
        which: Unfinished,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.inner.list_unfinished(which, after, limit).await
    }

    async fn claim(&self, id: Uuid, claim: &Claim) -> Result<bool, StoreError> {
        self.inner.claim(id, claim).await
    }

    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError> {
        self.inner.mark_running(id, owner, started).await
    }

    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        self.inner.requeue(id, owner, attempt).await
    }

    async fn finish_execution(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
    ) -> Result<bool, StoreError> {
        self.inner.finish_execution(id, holder, finished).await
    }

    async fn finish_with_follow_ups(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError> {
        self.inner
            .finish_with_follow_ups(id, holder, finished, follow)
            .await
    }

    async fn schedule_retry(
        &self,
        id: Uuid,
        owner: &str,
        attempt: u32,
        run_at: DateTime<Utc>,
        failure: &AttemptFailure,
    ) -> Result<bool, StoreError> {
        self.inner
            .schedule_retry(id, owner, attempt, run_at, failure)
            .await
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.renew_leases(owner, until).await
    }

    async fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.inner.list_expired(owner, now, limit).await
    }

    async fn reclaim(
        &self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        self.inner.reclaim(id, from, now, claim).await
    }

    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        self.inner.take_due(now, limit).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_due().await
    }

    async fn redrive(&self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError> {
        self.inner.redrive(id, retry).await
    }

    async fn chain_tree(
        &self,
        root: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.inner.chain_tree(root, after, limit).await
    }

    async fn append_logs(&self, id: Uuid, lines: &[LogLine]) -> Result<(), StoreError> {
        self.inner.append_logs(id, lines).await
    }

    async fn read_logs(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError> {
        self.inner.read_logs(id, after_seq, limit).await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        self.inner.insert_token(token).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_tokens().await
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_token(name).await
    }

    async fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch_token(name, at).await
    }

    async fn put_secret(&self, name: &str, sealed: &Sealed) -> Result<SecretRecord, StoreError> {
        self.inner.put_secret(name, sealed).await
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.inner.get_secret(name).await
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.inner.list_secrets().await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_secret(name).await
    }

    async fn prune_executions(
        &self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        self.inner.prune_executions(scope, before, limit).await
    }

    async fn delete_execution(&self, id: Uuid) -> Result<Deletion, StoreError> {
        self.inner.delete_execution(id).await
    }

    async fn prune_versions(&self, keep: u32) -> Result<usize, StoreError> {
        self.inner.prune_versions(keep).await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        self.inner.compact().await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_setting(key).await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.put_setting(key, value).await
    }

    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        self.inner.request_cancel(id).await
    }

    async fn cancel_requests(&self, owner: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        self.inner.cancel_requests(owner, limit).await
    }

    async fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.inner.list_overdue(function, due_before, limit).await
    }

    async fn make_stale_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        self.inner.make_stale_due(created_before, now, limit).await
    }

    async fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.inner.catalog_generation().await
    }

    fn finished_feed(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        self.inner.finished_feed()
    }

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        self.inner.heartbeat(node).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.list_nodes().await
    }

    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError> {
        self.inner.publish_load(load).await
    }

    async fn peer_loads(
        &self,
        node_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<NodeLoad>, StoreError> {
        self.inner.peer_loads(node_id, since).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn list_schedule_cursors(&self) -> Result<Vec<ScheduleCursor>, StoreError> {
        self.inner.list_schedule_cursors().await
    }

    async fn advance_schedule(
        &self,
        advance: &ScheduleAdvance,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        self.inner.advance_schedule(advance, execution).await
    }

    async fn delete_schedule_cursors(
        &self,
        function: &str,
        scope: CursorScope<'_>,
    ) -> Result<usize, StoreError> {
        self.inner.delete_schedule_cursors(function, scope).await
    }

    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        self.inner.insert_deliveries(deliveries).await
    }

    async fn arm_deliveries(
        &self,
        execution: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.inner.arm_deliveries(execution, body, now).await
    }

    async fn drop_waiting_deliveries(&self, execution: Uuid) -> Result<(), StoreError> {
        self.inner.drop_waiting_deliveries(execution).await
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        self.inner.claim_deliveries(claim).await
    }

    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError> {
        self.inner.update_delivery(delivery, owner).await
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.inner.list_deliveries(filter).await
    }

    async fn redrive_delivery(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.redrive_delivery(id, now).await
    }
}
