//! The SQL of the SQLite store's result deliveries (see [`crate::destinations`]).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use super::exec_sql::{self, ExecutionRow};
use super::sql::{db, get, get_opt_time, to_ms};
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter, DeliveryState, StoredDelivery};
use crate::store::{FollowUps, StoreError};

const COLUMNS: &str = "id, execution_id, state, next_at, round_attempts, body, record";

/// See [`crate::store::Store::insert_deliveries`].
pub(super) fn insert(conn: &Connection, deliveries: &[Delivery]) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO deliveries (id, execution_id, state, next_at, round_attempts, body,
                record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db("store a delivery"))?;
    for delivery in deliveries {
        stmt.execute(params![
            delivery.id.to_string(),
            delivery.execution_id.to_string(),
            delivery.state.as_str(),
            delivery.next_at.map(to_ms),
            delivery.round_attempts,
            delivery.body,
            delivery.record_json(),
        ])
        .map_err(db("store a delivery"))?;
    }
    Ok(())
}

/// [`FollowUps`] prepared by the caller, written by the writer thread beside the result.
pub(super) struct FollowUpRows {
    children: Vec<ExecutionRow>,
    deliveries: Vec<Delivery>,
    callback_body: Option<String>,
}

impl FollowUpRows {
    /// Encodes `follow`.
    pub(super) fn new(follow: &FollowUps) -> Result<FollowUpRows, StoreError> {
        Ok(FollowUpRows {
            children: follow
                .children
                .iter()
                .map(ExecutionRow::new)
                .collect::<Result<_, _>>()?,
            deliveries: follow.deliveries.clone(),
            callback_body: follow.callback_body.clone(),
        })
    }

    /// Writes them for the result of execution `id`, in the caller's transaction.
    pub(super) fn write(&self, conn: &Connection, id: Uuid) -> Result<(), StoreError> {
        for child in &self.children {
            exec_sql::insert_execution(conn, child)?;
        }
        if !self.deliveries.is_empty() {
            insert(conn, &self.deliveries)?;
        }
        if let Some(body) = &self.callback_body {
            arm(conn, id, body, crate::domain::now())?;
        }
        Ok(())
    }
}

/// See [`crate::store::Store::arm_deliveries`].
pub(super) fn arm(
    conn: &Connection,
    execution: Uuid,
    body: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'pending', body = ?2, next_at = ?3
         WHERE execution_id = ?1 AND state = 'waiting'",
    )
    .and_then(|mut stmt| stmt.execute(params![execution.to_string(), body, to_ms(now)]))
    .map_err(db("arm deliveries"))
}

/// See [`crate::store::Store::drop_waiting_deliveries`].
pub(super) fn drop_waiting(conn: &Connection, execution: Uuid) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM deliveries WHERE execution_id = ?1 AND state = 'waiting'")
        .and_then(|mut stmt| stmt.execute([execution.to_string()]))
        .map(|_| ())
        .map_err(db("drop waiting deliveries"))
}

/// See [`crate::store::Store::claim_deliveries`]. The writer thread runs it alone, so
/// the select and the update are one step for every other caller.
pub(super) fn claim(conn: &Connection, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET owner = ?1, lease_until = ?2
         WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_at <= ?3
            AND (lease_until IS NULL OR lease_until < ?3) ORDER BY next_at, id LIMIT ?4)
         RETURNING {COLUMNS}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db("claim deliveries"))?;
    let mut rows = stmt
        .query(params![
            claim.owner,
            to_ms(claim.lease_until),
            to_ms(claim.now),
            claim.limit
        ])
        .map_err(db("claim deliveries"))?;
    collect(&mut rows, "claim deliveries")
}

/// See [`crate::store::Store::update_delivery`].
pub(super) fn update(
    conn: &Connection,
    delivery: &Delivery,
    owner: &str,
) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = ?3, next_at = ?4, round_attempts = ?5, record = ?6,
            owner = NULL, lease_until = NULL
         WHERE id = ?1 AND owner = ?2 AND state = 'pending'",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            delivery.id.to_string(),
            owner,
            delivery.state.as_str(),
            delivery.next_at.map(to_ms),
            delivery.round_attempts,
            delivery.record_json(),
        ])
    })
    .map(|changed| changed == 1)
    .map_err(db("record a delivery attempt"))
}

/// See [`crate::store::Store::list_deliveries`].
pub(super) fn list(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE (?1 IS NULL OR execution_id = ?1) AND (?2 IS NULL OR state = ?2)
            AND (?3 IS NULL OR id > ?3)
         ORDER BY id LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db("list deliveries"))?;
    let mut rows = stmt
        .query(params![
            filter.execution.map(|id| id.to_string()),
            filter.state.map(DeliveryState::as_str),
            filter.after.map(|id| id.to_string()),
            filter.limit,
        ])
        .map_err(db("list deliveries"))?;
    collect(&mut rows, "list deliveries")
}

/// See [`crate::store::Store::redrive_delivery`].
pub(super) fn redrive(conn: &Connection, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'pending', next_at = ?2, round_attempts = 0,
            owner = NULL, lease_until = NULL
         WHERE id = ?1 AND state = 'failed'",
    )
    .and_then(|mut stmt| stmt.execute(params![id.to_string(), to_ms(now)]))
    .map(|changed| changed == 1)
    .map_err(db("re-drive a delivery"))
}

fn collect(rows: &mut rusqlite::Rows<'_>, what: &'static str) -> Result<Vec<Delivery>, StoreError> {
    let mut deliveries = Vec::new();
    while let Some(row) = rows.next().map_err(db(what))? {
        deliveries.push(decode(row)?);
    }
    Ok(deliveries)
}

fn decode(row: &Row<'_>) -> Result<Delivery, StoreError> {
    let (id, execution, state, record): (String, String, String, String) = (
        get(row, 0, "delivery id")?,
        get(row, 1, "delivery execution")?,
        get(row, 2, "delivery state")?,
        get(row, 6, "delivery record")?,
    );
    Delivery::from_stored(StoredDelivery {
        id: &id,
        execution_id: &execution,
        state: &state,
        next_at: get_opt_time(row, 3, "delivery due time")?,
        round_attempts: get(row, 4, "delivery attempts")?,
        body: get(row, 5, "delivery body")?,
        record: &record,
    })
}
