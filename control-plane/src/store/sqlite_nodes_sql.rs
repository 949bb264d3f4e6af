//! The SQL of the SQLite store's node records (heartbeats), its catalog generation and
//! its readiness ping.

use rusqlite::{params, Connection, Row};

use super::sql::{db, get, get_opt_time, get_time, to_ms};
use crate::domain::{NodeLoad, NodeRecord};
use crate::store::{decode_load, encode_load, StoreError, MAX_NODES};

/// See [`crate::store::Store::heartbeat`].
pub(super) fn heartbeat(conn: &Connection, node: &NodeRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO nodes (id, address, runtime, version, started_at, heartbeat_at, running,
            stopped_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET address = excluded.address,
            runtime = excluded.runtime, version = excluded.version,
            started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
            running = excluded.running, stopped_at = excluded.stopped_at",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            node.id,
            node.address,
            node.runtime,
            node.version,
            to_ms(node.started_at),
            to_ms(node.heartbeat_at),
            node.running,
            node.stopped_at.map(to_ms),
        ])
    })
    .map(|_| ())
    .map_err(db("record a heartbeat"))
}

/// See [`crate::store::Store::list_nodes`].
pub(super) fn list_nodes(conn: &Connection) -> Result<Vec<NodeRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, address, runtime, version, started_at, heartbeat_at, running, stopped_at
             FROM nodes ORDER BY id LIMIT ?1",
        )
        .map_err(db("list nodes"))?;
    let mut rows = stmt.query([MAX_NODES]).map_err(db("list nodes"))?;
    let mut nodes = Vec::new();
    while let Some(row) = rows.next().map_err(db("list nodes"))? {
        nodes.push(decode(row)?);
    }
    Ok(nodes)
}

fn decode(row: &Row<'_>) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        id: get(row, 0, "node id")?,
        address: get(row, 1, "node address")?,
        runtime: get(row, 2, "node runtime")?,
        version: get(row, 3, "node version")?,
        started_at: get_time(row, 4, "node start")?,
        heartbeat_at: get_time(row, 5, "node heartbeat")?,
        running: get(row, 6, "node load")?,
        stopped_at: get_opt_time(row, 7, "node stop")?,
    })
}

/// See [`crate::store::Store::publish_load`].
pub(super) fn publish_load(conn: &Connection, load: &NodeLoad) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO node_loads (node_id, address, published_at, functions)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (node_id) DO UPDATE SET address = excluded.address,
            published_at = excluded.published_at, functions = excluded.functions",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            load.node_id,
            load.address,
            to_ms(load.published_at),
            encode_load(&load.functions),
        ])
    })
    .map(|_| ())
    .map_err(db("publish a node's load"))
}

/// See [`crate::store::Store::peer_loads`].
pub(super) fn peer_loads(
    conn: &Connection,
    node_id: &str,
    since: i64,
) -> Result<Vec<NodeLoad>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT node_id, address, published_at, functions FROM node_loads
             WHERE node_id <> ?1 AND published_at >= ?2 ORDER BY node_id LIMIT ?3",
        )
        .map_err(db("read the other nodes' loads"))?;
    let mut rows = stmt
        .query(params![node_id, since, MAX_NODES])
        .map_err(db("read the other nodes' loads"))?;
    let mut loads = Vec::new();
    while let Some(row) = rows.next().map_err(db("read the other nodes' loads"))? {
        let functions: String = get(row, 3, "node load")?;
        loads.push(NodeLoad {
            node_id: get(row, 0, "node id")?,
            address: get(row, 1, "node address")?,
            published_at: get_time(row, 2, "node load time")?,
            functions: decode_load(&functions)?,
        });
    }
    Ok(loads)
}

/// See [`crate::store::Store::ping`].
pub(super) fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT 1", [], |_| Ok(()))
        .map_err(db("ping"))
}

/// See [`crate::store::Store::catalog_generation`].
pub(super) fn catalog_generation(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("SELECT generation FROM catalog_changes", [], |row| {
        row.get(0)
    })
    .map_err(db("read the catalog generation"))
}
