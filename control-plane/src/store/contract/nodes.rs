//! The contract of node records: a heartbeat replaces the node's record, whatever it
//! held before, and nodes are listed by id.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};

use super::ms;
use crate::domain::NodeRecord;
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
