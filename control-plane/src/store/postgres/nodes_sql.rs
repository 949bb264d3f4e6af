//! The SQL of the PostgreSQL store's node records (heartbeats), its catalog generation
//! and its readiness ping.

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

use super::codec::{db, get, get_opt_time, get_time, get_u32, to_ms};
use crate::domain::{NodeLoad, NodeRecord};
use crate::store::{decode_load, encode_load, StoreError, MAX_NODES};

/// See [`crate::store::Store::heartbeat`].
pub(super) async fn heartbeat(
    client: &impl GenericClient,
    node: &NodeRecord,
) -> Result<(), StoreError> {
    let running = i64::from(node.running);
    client
        .execute(
            "INSERT INTO nodes (id, address, runtime, version, started_at, heartbeat_at, running,
                stopped_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                runtime = excluded.runtime, version = excluded.version,
                started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                running = excluded.running, stopped_at = excluded.stopped_at",
            &[
                &node.id,
                &node.address,
                &node.runtime,
                &node.version,
                &to_ms(node.started_at),
                &to_ms(node.heartbeat_at),
                &running,
                &node.stopped_at.map(to_ms),
            ],
        )
        .await
        .map(|_| ())
        .map_err(db("record a heartbeat"))
}

/// See [`crate::store::Store::list_nodes`].
pub(super) async fn list_nodes(client: &impl GenericClient) -> Result<Vec<NodeRecord>, StoreError> {
    let rows = client
        .query(
            "SELECT id, address, runtime, version, started_at, heartbeat_at, running, stopped_at
             FROM nodes ORDER BY id COLLATE \"C\" LIMIT $1",
            &[&i64::from(MAX_NODES)],
        )
        .await
        .map_err(db("list nodes"))?;
    rows.iter().map(decode).collect()
}

fn decode(row: &Row) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        id: get(row, 0, "node id")?,
        address: get(row, 1, "node address")?,
        runtime: get(row, 2, "node runtime")?,
        version: get(row, 3, "node version")?,
        started_at: get_time(row, 4, "node start")?,
        heartbeat_at: get_time(row, 5, "node heartbeat")?,
        running: get_u32(row, 6, "node load")?,
        stopped_at: get_opt_time(row, 7, "node stop")?,
    })
}

/// See [`crate::store::Store::publish_load`].
pub(super) async fn publish_load(
    client: &impl GenericClient,
    load: &NodeLoad,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO node_loads (node_id, address, published_at, functions)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (node_id) DO UPDATE SET address = excluded.address,
                published_at = excluded.published_at, functions = excluded.functions",
            &[
                &load.node_id,
                &load.address,
                &to_ms(load.published_at),
                &encode_load(&load.functions),
            ],
        )
        .await
        .map(|_| ())
        .map_err(db("publish a node's load"))
}

/// See [`crate::store::Store::peer_loads`].
pub(super) async fn peer_loads(
    client: &impl GenericClient,
    node_id: &str,
    since: i64,
) -> Result<Vec<NodeLoad>, StoreError> {
    let rows = client
        .query(
            "SELECT node_id, address, published_at, functions FROM node_loads
             WHERE node_id <> $1 AND published_at >= $2 ORDER BY node_id COLLATE \"C\" LIMIT $3",
            &[&node_id, &since, &i64::from(MAX_NODES)],
        )
        .await
        .map_err(db("read the other nodes' loads"))?;
    rows.iter()
        .map(|row| {
            let functions: String = get(row, 3, "node load")?;
            Ok(NodeLoad {
                node_id: get(row, 0, "node id")?,
                address: get(row, 1, "node address")?,
                published_at: get_time(row, 2, "node load time")?,
                functions: decode_load(&functions)?,
            })
        })
        .collect()
}

/// See [`crate::store::Store::catalog_generation`].
pub(super) async fn catalog_generation(client: &impl GenericClient) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT generation FROM catalog_changes", &[])
        .await
        .map_err(db("read the catalog generation"))?;
    get(&row, 0, "catalog generation")
}

/// See [`crate::store::Store::ping`].
pub(super) async fn ping(client: &Object) -> Result<(), StoreError> {
    client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(db("ping"))
}
