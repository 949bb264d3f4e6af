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
#[path = "sqlite_exec_sql.rs"]
mod exec_sql;
#[path = "sqlite_nodes_sql.rs"]
mod nodes_sql;
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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::Semaphore;
use uuid::Uuid;

use self::deliveries_sql::FollowUpRows;
use self::exec_sql::{ExecutionRow, FinishedRow};
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
use chrono::{DateTime, Utc};

/// Read-only connections kept open for reads.
const READERS: usize = 4;

/// The SQLite store. Open it with [`SqliteStore::open`]; dropping it (or
/// [`SqliteStore::close`]) finishes the queued writes and stops the writer thread.
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.readers.dir)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating it and `data_dir` if needed) `gantry.db` in `data_dir`, brings its
    /// schema up to date and starts the writer thread. Blocks while doing so.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let write_conn = schema::open_writer(data_dir)?;
        let idle = (0..READERS)
            .map(|_| schema::open_reader(data_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let writer = Writer::start(write_conn)?;
        Ok(SqliteStore {
            writer: Arc::new(writer),
            readers: Arc::new(Readers {
                dir: data_dir.to_path_buf(),
                idle: Mutex::new(idle),
                permits: Semaphore::new(READERS),
            }),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Finishes the writes queued so far, then stops the writer thread. Every later
    /// call answers [`StoreError::Closed`].
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.readers.permits.close();
        self.writer.shutdown().await;
        let writer = Arc::clone(&self.writer);
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }

    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        self.writer.write(work).await
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        Readers::read(&self.readers, work).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Blocks until the queued writes are committed.
        self.writer.join();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        let spec_json = sql::to_json(spec, "function spec")?;
        let (spec, hash) = (spec.clone(), content_hash.to_owned());
        self.write(move |conn| sql::create_function(conn, spec, &spec_json, hash))
            .await
    }

    async fn replace_function(
        &self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError> {
        let spec_json = sql::to_json(spec, "function spec")?;
        let (spec, hash) = (spec.clone(), content_hash.to_owned());
        self.write(move |conn| sql::replace_function(conn, spec, &spec_json, hash))
            .await
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionVersion>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| sql::get_function(conn, &name)).await
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
        let name = name.to_owned();
        self.read(move |conn| sql::list_versions(conn, &name)).await
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| sql::delete_function(conn, &name))
            .await
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        let row = ExecutionRow::new(execution)?;
        self.write(move |conn| exec_sql::insert_execution(conn, &row))
            .await
    }

    async fn insert_with_follow_ups(
        &self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError> {
        let row = ExecutionRow::new(execution)?;
        let follow = FollowUpRows::new(follow)?;
        let id = execution.id;
        self.write(move |conn| {
            exec_sql::insert_execution(conn, &row)?;
            follow.write(conn, id)
        })
        .await
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
        self.read(move |conn| exec_sql::get_execution(conn, id))
            .await
    }

    async fn find_by_idempotency_key(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Option<Execution>, StoreError> {
        let (function, key) = (function.to_owned(), key.to_owned());
        self.read(move |conn| exec_sql::find_by_idempotency_key(conn, &function, &key))
            .await
    }

    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| exec_sql::list_executions(conn, &filter))
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
        let (claim, now) = (claim.clone(), sql::to_ms(crate::domain::now()));
        self.write(move |conn| claim_sql::claim(conn, id, &claim, now))
            .await
    }

    async fn mark_running(
        &self,
        id: Uuid,
        owner: &str,
        started: &Started,
    ) -> Result<bool, StoreError> {
        let (owner, started) = (owner.to_owned(), started.clone());
        self.write(move |conn| exec_sql::mark_running(conn, id, &owner, &started))
            .await
    }

    async fn requeue(&self, id: Uuid, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| exec_sql::requeue(conn, id, &owner, attempt))
            .await
    }

    async fn finish_with_follow_ups(
        &self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError> {
        let row = FinishedRow::new(finished)?;
        let follow = FollowUpRows::new(follow)?;
        let owner = match holder {
            Holder::Queue => None,
            Holder::Owner(owner) => Some(owner.to_owned()),
        };
        self.write(move |conn| {
            let holder = owner.as_deref().map_or(Holder::Queue, Holder::Owner);
            let applied = exec_sql::finish_execution(conn, id, holder, &row)?;
            if applied {
                follow.write(conn, id)?;
            }
            Ok(applied)
        })
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
        let failure = sql::to_json(failure, "attempt failure")?;
        let (owner, run_at) = (owner.to_owned(), sql::to_ms(run_at));
        self.write(move |conn| {
            exec_sql::schedule_retry(conn, id, &owner, attempt, run_at, &failure)
        })
        .await
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<usize, StoreError> {
        let (owner, until) = (owner.to_owned(), sql::to_ms(until));
        self.write(move |conn| claim_sql::renew_leases(conn, &owner, until))
            .await
    }

    async fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        let (owner, now) = (owner.to_owned(), sql::to_ms(now));
        self.read(move |conn| claim_sql::list_expired(conn, &owner, now, limit))
            .await
    }

    async fn reclaim(
        &self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        let (from, now, claim) = (from.to_owned(), sql::to_ms(now), claim.clone());
        self.write(move |conn| claim_sql::reclaim(conn, id, &from, now, &claim))
            .await
    }

    async fn take_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let now = sql::to_ms(now);
        self.write(move |conn| claim_sql::take_due(conn, now, limit))
            .await
    }

    async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write(move |conn| claim_sql::request_cancel(conn, id))
            .await
    }

    async fn cancel_requests(&self, owner: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let owner = owner.to_owned();
        self.read(move |conn| claim_sql::cancel_requests(conn, &owner, limit))
            .await
    }

    async fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let (function, due_before) = (function.to_owned(), sql::to_ms(due_before));
        self.read(move |conn| claim_sql::list_overdue(conn, &function, due_before, limit))
            .await
    }

    async fn make_stale_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let (before, now) = (super::stale_cutoff(created_before), sql::to_ms(now));
        self.write(move |conn| claim_sql::make_stale_due(conn, before, now, limit))
            .await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due = self.read(claim_sql::next_due).await?;
        Ok(due.and_then(DateTime::from_timestamp_millis))
    }

    async fn redrive(&self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError> {
        let row = ExecutionRow::new(retry)?;
        let retry_id = retry.id;
        self.write(move |conn| {
            let outcome = exec_sql::mark_redriven(conn, id, retry_id)?;
            if outcome == Redrive::Done {
                exec_sql::insert_execution(conn, &row)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn chain_tree(
        &self,
        root: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        self.read(move |conn| exec_sql::chain_tree(conn, root, after, limit))
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
        let token = token.clone();
        self.write(move |conn| access_sql::insert_token(conn, &token))
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(access_sql::list_tokens).await
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| access_sql::delete_token(conn, &name))
            .await
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
        let name = name.to_owned();
        self.read(move |conn| access_sql::get_secret(conn, &name))
            .await
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.read(access_sql::list_secrets).await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| access_sql::delete_secret(conn, &name))
            .await
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
        let key = key.to_owned();
        self.read(move |conn| access_sql::get_setting(conn, &key))
            .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| access_sql::put_setting(conn, &key, &value))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sql::db("ping"))
        })
        .await
    }

    async fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT generation FROM catalog_changes", [], |row| {
                row.get(0)
            })
            .map_err(sql::db("read the catalog generation"))
        })
        .await
    }

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let node = node.clone();
        self.write(move |conn| nodes_sql::heartbeat(conn, &node))
            .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read(nodes_sql::list_nodes).await
    }

    async fn publish_load(&self, load: &NodeLoad) -> Result<(), StoreError> {
        let load = load.clone();
        self.write(move |conn| nodes_sql::publish_load(conn, &load))
            .await
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
        let function = function.to_owned();
        let keys = match scope {
            CursorScope::All => None,
            CursorScope::Keys(keys) => Some(keys.to_vec()),
        };
        self.write(move |conn| {
            let scope = keys.as_deref().map_or(CursorScope::All, CursorScope::Keys);
            schedules_sql::delete(conn, &function, scope)
        })
        .await
    }

    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let deliveries = deliveries.to_vec();
        self.write(move |conn| deliveries_sql::insert(conn, &deliveries))
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
        let claim = claim.clone();
        self.write(move |conn| deliveries_sql::claim(conn, &claim))
            .await
    }

    async fn update_delivery(&self, delivery: &Delivery, owner: &str) -> Result<bool, StoreError> {
        let (delivery, owner) = (delivery.clone(), owner.to_owned());
        self.write(move |conn| deliveries_sql::update(conn, &delivery, &owner))
            .await
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| deliveries_sql::list(conn, &filter))
            .await
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
mod contract {
    use std::sync::Arc;

    use crate::store::contract::Subject;
    use crate::store::SqliteStore;

    fn sqlite() -> Subject {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).expect("open store");
        (Box::new(dir), Arc::new(store))
    }

    crate::store_contract!(sqlite());
}
