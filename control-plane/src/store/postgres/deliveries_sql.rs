//! The SQL of the PostgreSQL store's result deliveries (see [`crate::destinations`]).
//! Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`, so nodes sharing the
//! database never take the same due delivery at once.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;
use uuid::Uuid;

use super::codec::{db, get, get_opt_time, get_u32, to_ms};
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter, DeliveryState, StoredDelivery};
use crate::store::StoreError;

const COLUMNS: &str = "id, execution_id, state, next_at, round_attempts, body, record";

/// See [`crate::store::Store::insert_deliveries`]: [`insert`] in a transaction of its
/// own, so all or nothing.
pub(super) async fn insert_all(
    client: &mut Object,
    deliveries: &[Delivery],
) -> Result<(), StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("begin a delivery insert"))?;
    insert(&tx, deliveries).await?;
    tx.commit().await.map_err(db("commit deliveries"))
}

/// See [`crate::store::Store::insert_deliveries`] (the caller's transaction makes it
/// all or nothing).
pub(super) async fn insert(
    client: &impl GenericClient,
    deliveries: &[Delivery],
) -> Result<(), StoreError> {
    for delivery in deliveries {
        client
            .execute(
                "INSERT INTO deliveries (id, execution_id, state, next_at, round_attempts,
                    body, record) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &delivery.id.to_string(),
                    &delivery.execution_id.to_string(),
                    &delivery.state.as_str(),
                    &delivery.next_at.map(to_ms),
                    &i64::from(delivery.round_attempts),
                    &delivery.body,
                    &delivery.record_json(),
                ],
            )
            .await
            .map_err(db("store a delivery"))?;
    }
    Ok(())
}

/// See [`crate::store::Store::arm_deliveries`].
pub(super) async fn arm(
    client: &impl GenericClient,
    execution: Uuid,
    body: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    client
        .execute(
            "UPDATE deliveries SET state = 'pending', body = $2, next_at = $3
             WHERE execution_id = $1 AND state = 'waiting'",
            &[&execution.to_string(), &body, &to_ms(now)],
        )
        .await
        .map(|count| count as usize)
        .map_err(db("arm deliveries"))
}

/// See [`crate::store::Store::drop_waiting_deliveries`].
pub(super) async fn drop_waiting(
    client: &impl GenericClient,
    execution: Uuid,
) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM deliveries WHERE execution_id = $1 AND state = 'waiting'",
            &[&execution.to_string()],
        )
        .await
        .map(|_| ())
        .map_err(db("drop waiting deliveries"))
}

/// See [`crate::store::Store::claim_deliveries`].
pub(super) async fn claim(
    client: &impl GenericClient,
    claim: &DeliveryClaim,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET owner = $1, lease_until = $2
         WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_at <= $3
            AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_at, id LIMIT $4
            FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    );
    let rows = client
        .query(
            &sql,
            &[
                &claim.owner,
                &to_ms(claim.lease_until),
                &to_ms(claim.now),
                &i64::from(claim.limit),
            ],
        )
        .await
        .map_err(db("claim deliveries"))?;
    rows.iter().map(decode).collect()
}

/// See [`crate::store::Store::update_delivery`].
pub(super) async fn update(
    client: &impl GenericClient,
    delivery: &Delivery,
    owner: &str,
) -> Result<bool, StoreError> {
    client
        .execute(
            "UPDATE deliveries SET state = $3, next_at = $4, round_attempts = $5, record = $6,
                owner = NULL, lease_until = NULL
             WHERE id = $1 AND owner = $2 AND state = 'pending'",
            &[
                &delivery.id.to_string(),
                &owner,
                &delivery.state.as_str(),
                &delivery.next_at.map(to_ms),
                &i64::from(delivery.round_attempts),
                &delivery.record_json(),
            ],
        )
        .await
        .map(|count| count == 1)
        .map_err(db("record a delivery attempt"))
}

/// See [`crate::store::Store::list_deliveries`].
pub(super) async fn list(
    client: &impl GenericClient,
    filter: &DeliveryFilter,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE ($1::text IS NULL OR execution_id = $1) AND ($2::text IS NULL OR state = $2)
            AND ($3::text IS NULL OR id > $3)
         ORDER BY id LIMIT $4"
    );
    let rows = client
        .query(
            &sql,
            &[
                &filter.execution.map(|id| id.to_string()),
                &filter.state.map(DeliveryState::as_str),
                &filter.after.map(|id| id.to_string()),
                &i64::from(filter.limit),
            ],
        )
        .await
        .map_err(db("list deliveries"))?;
    rows.iter().map(decode).collect()
}

/// See [`crate::store::Store::redrive_delivery`].
pub(super) async fn redrive(
    client: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    client
        .execute(
            "UPDATE deliveries SET state = 'pending', next_at = $2, round_attempts = 0,
                owner = NULL, lease_until = NULL
             WHERE id = $1 AND state = 'failed'",
            &[&id.to_string(), &to_ms(now)],
        )
        .await
        .map(|count| count == 1)
        .map_err(db("re-drive a delivery"))
}

fn decode(row: &Row) -> Result<Delivery, StoreError> {
    Delivery::from_stored(StoredDelivery {
        id: get(row, 0, "delivery id")?,
        execution_id: get(row, 1, "delivery execution")?,
        state: get(row, 2, "delivery state")?,
        next_at: get_opt_time(row, 3, "delivery due time")?,
        round_attempts: get_u32(row, 4, "delivery attempts")?,
        body: get(row, 5, "delivery body")?,
        record: get(row, 6, "delivery record")?,
    })
}
