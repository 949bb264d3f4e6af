//! The contract of node records: a heartbeat replaces the node's record, whatever it
//! held before, and nodes are listed by id; a node reads the loads the others published
//! lately, never its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::ms;
use crate::domain::{FunctionLoad, NodeLoad, NodeRecord};
use crate::store::Store;

fn node(id: &str, running: u32) -> NodeRecord {
    let started = ms(Utc::now() - TimeDelta::seconds(60));
    NodeRecord {
        id: id.into(),
        address: format!("http://{id}.internal:8080"),
        runtime: "process".into(),
        version: "1.2.3".into(),
        started_at: started,
        heartbeat_at: started,
        running,
        stopped_at: None,
    }
}

/// Each heartbeat replaces the node's record (a clean stop, a restart that clears it);
/// nodes come back by id, as written.
pub(crate) async fn a_heartbeat_replaces_the_record_and_nodes_list_by_id(store: Arc<dyn Store>) {
    assert_eq!(store.list_nodes().await.unwrap(), Vec::new());
    let (b, mut a) = (node("node-b", 0), node("node-a", 3));
    store.heartbeat(&b).await.unwrap();
    store.heartbeat(&a).await.unwrap();
    assert_eq!(
        store.list_nodes().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    a.heartbeat_at = ms(Utc::now());
    a.running = 7;
    a.stopped_at = Some(ms(Utc::now()));
    store.heartbeat(&a).await.unwrap();
    assert_eq!(
        store.list_nodes().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    a.started_at = ms(Utc::now());
    a.stopped_at = None;
    a.address = "http://node-a.internal:9090".into();
    store.heartbeat(&a).await.unwrap();
    assert_eq!(store.list_nodes().await.unwrap(), vec![a, b]);
}

fn load(id: &str, published_at: DateTime<Utc>, queued: u32) -> NodeLoad {
    let busy = FunctionLoad {
        queued,
        running: 1,
        instances: 2,
        free: 3,
        demand: 4,
    };
    NodeLoad {
        node_id: id.into(),
        address: format!("http://{id}.internal:8080"),
        published_at,
        functions: BTreeMap::from([
            ("f".to_owned(), busy),
            ("g".to_owned(), FunctionLoad::default()),
        ]),
    }
}

/// A node's load replaces what it published before; a node reads the loads the others
/// published since a time, by id, never its own nor a stale one.
pub(crate) async fn nodes_read_each_others_fresh_loads(store: Arc<dyn Store>) {
    let now = ms(Utc::now());
    let recent = now - TimeDelta::seconds(5);
    let (a, b, c) = (
        load("node-a", now, 1),
        load("node-b", now - TimeDelta::seconds(10), 2),
        load("node-c", now, 5),
    );
    for published in [&a, &b, &c] {
        store.publish_load(published).await.unwrap();
    }
    assert_eq!(
        store.peer_loads("node-a", recent).await.unwrap(),
        vec![c.clone()]
    );
    assert_eq!(store.peer_loads("node-c", recent).await.unwrap(), vec![a]);
    let a = load("node-a", now, 9);
    store.publish_load(&a).await.unwrap();
    assert_eq!(store.peer_loads("node-c", recent).await.unwrap(), vec![a]);
    let long_ago = now - TimeDelta::seconds(60);
    assert_eq!(
        store.peer_loads("node-a", long_ago).await.unwrap(),
        vec![b, c]
    );
}
