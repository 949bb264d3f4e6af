//! The SQLite store's calls of the work queue (claims, leases, reclaims, cancel requests
//! and due work): each copies what the writer thread or a reader needs, times as
//! milliseconds, and runs the SQL of `sqlite_claim_sql.rs` there.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use uuid::Uuid;

use super::claim_sql;
use super::sql::to_ms;
use super::SqliteStore;
use crate::domain::Claim;
use crate::store::StoreError;

/// See [`crate::store::Store::claim`]: the claim's time is taken now.
pub(super) async fn claim(
    store: &SqliteStore,
    id: Uuid,
    claim: &Claim,
) -> Result<bool, StoreError> {
    let (claim, now) = (claim.clone(), to_ms(crate::domain::now()));
    store
        .write(move |conn| claim_sql::claim(conn, id, &claim, now))
        .await
}

/// See [`crate::store::Store::renew_leases`].
pub(super) async fn renew_leases(
    store: &SqliteStore,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let (owner, until) = (owner.to_owned(), to_ms(until));
    store
        .write(move |conn| claim_sql::renew_leases(conn, &owner, until))
        .await
}

/// Runs `list` on a reader with a copy of `name` (an owner or a function) and `time` in
/// milliseconds: the listings of lapsed leases ([`claim_sql::list_expired`]) and of
/// overdue executions ([`claim_sql::list_overdue`]).
pub(super) async fn list_by<T: Send + 'static>(
    store: &SqliteStore,
    name: &str,
    time: DateTime<Utc>,
    limit: u32,
    list: fn(&Connection, &str, i64, u32) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let (name, time) = (name.to_owned(), to_ms(time));
    store.read(move |conn| list(conn, &name, time, limit)).await
}

/// See [`crate::store::Store::reclaim`].
pub(super) async fn reclaim(
    store: &SqliteStore,
    id: Uuid,
    from: &str,
    now: DateTime<Utc>,
    claim: &Claim,
) -> Result<bool, StoreError> {
    let (from, now, claim) = (from.to_owned(), to_ms(now), claim.clone());
    store
        .write(move |conn| claim_sql::reclaim(conn, id, &from, now, &claim))
        .await
}

/// See [`crate::store::Store::take_due`].
pub(super) async fn take_due(
    store: &SqliteStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    let now = to_ms(now);
    store
        .write(move |conn| claim_sql::take_due(conn, now, limit))
        .await
}

/// See [`crate::store::Store::cancel_requests`].
pub(super) async fn cancel_requests(
    store: &SqliteStore,
    owner: &str,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let owner = owner.to_owned();
    store
        .read(move |conn| claim_sql::cancel_requests(conn, &owner, limit))
        .await
}

/// See [`crate::store::Store::make_stale_due`].
pub(super) async fn make_stale_due(
    store: &SqliteStore,
    created_before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<usize, StoreError> {
    let (before, now) = (crate::store::stale_cutoff(created_before), to_ms(now));
    store
        .write(move |conn| claim_sql::make_stale_due(conn, before, now, limit))
        .await
}

/// See [`crate::store::Store::next_due`].
pub(super) async fn next_due(store: &SqliteStore) -> Result<Option<DateTime<Utc>>, StoreError> {
    let due = store.read(claim_sql::next_due).await?;
    Ok(due.and_then(DateTime::from_timestamp_millis))
}
