//! Nodes: a server records itself with heartbeats, `GET /v1/nodes` and `gantry node
//! list` show it, a clean stop is recorded, a SIGKILL shows as lost only once the lease
//! has lapsed, and a node id must be a safe word.

mod cli_support;
mod support;

use reqwest::Method;
use serde_json::Value;
use support::{serve_exits, Server, ServerOptions};

fn with_node_id(id: &str) -> ServerOptions {
    ServerOptions {
        args: vec!["--node-id".into(), id.into()],
        ..ServerOptions::default()
    }
}

async fn nodes(server: &Server) -> Value {
    let (status, _, body) = server.call(server.request(Method::GET, "/v1/nodes")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn node<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|node| node["id"] == id))
        .unwrap_or_else(|| panic!("node {id} is listed: {list}"))
}

#[tokio::test]
async fn a_node_is_listed_up_then_stopped_and_the_next_start_lists_both() {
    let mut first = Server::start_with(with_node_id("node-one")).await;
    let listed = nodes(&first).await;
    assert_eq!(listed["thisNode"], "node-one", "{listed}");
    let one = node(&listed, "node-one");
    assert_eq!(one["state"], "up", "{listed}");
    assert_eq!(one["runtime"], "process", "{listed}");
    assert_eq!(one["address"], first.url.as_str(), "{listed}");
    assert_eq!(one["running"], 0, "{listed}");

    let table = cli_support::cli(&first, ["node", "list"]).ok().await;
    let rows = table.rows_of("node-one");
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(&rows[0][..3], ["node-one", "*", "up"], "{table}");

    assert_eq!(first.stop().await, Some(0));
    let second = first.restart(with_node_id("node-two")).await;
    let listed = nodes(&second).await;
    assert_eq!(listed["thisNode"], "node-two", "{listed}");
    assert_eq!(node(&listed, "node-one")["state"], "stopped", "{listed}");
    assert!(
        node(&listed, "node-one")["stoppedAt"].is_string(),
        "{listed}"
    );
    assert_eq!(node(&listed, "node-two")["state"], "up", "{listed}");
}

#[tokio::test]
async fn a_killed_node_stays_up_until_its_lease_lapses() {
    let mut first = Server::start().await;
    let id = first.owner_id();
    // Its first heartbeat is written as it starts serving.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while nodes(&first).await["nodes"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(tokio::time::Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill9().await;
    let second = first.restart(with_node_id("survivor")).await;
    let listed = nodes(&second).await;
    // It was heart-beating a moment ago: not lost before a lease (30 s) has passed.
    assert_eq!(node(&listed, &id)["state"], "up", "{listed}");
    assert!(node(&listed, &id)["stoppedAt"].is_null(), "{listed}");
}

#[tokio::test]
async fn a_node_id_must_be_a_short_safe_word() {
    for bad in ["", "has space", "../x", &"n".repeat(65)] {
        let (code, stderr) = serve_exits(&["--listen", "127.0.0.1:0", "--node-id", bad], &[]).await;
        assert_eq!(code, Some(64), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("GANTRY_NODE_ID (--node-id)"),
            "{bad:?}: {stderr}"
        );
    }
}
