//! Three `gantry serve` nodes on one PostgreSQL (a server the test starts), each with its
//! own data directory and port: a deploy on one is seen by the others within a second,
//! any node answers a call, and when one node is SIGKILLed in the middle of a load
//! every accepted execution still ends, none runs twice unless its retry policy asked
//! for it, and the lost node's running executions are re-run by the others. Logs are
//! followed, and runs cancelled, from a node that does not run them.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::postgres::TestPostgres;
use support::{cluster_node, stdio_function, Server};

/// Executions enqueued through the three nodes.
const ENQUEUED: usize = 90;

/// A function that sleeps, writes its execution id to `runs`, and answers its input
/// with `mark`.
fn work(runs: &str, mark: &str) -> Value {
    stdio_function(
        "work",
        r#"sh -c 'sleep 0.3; echo "$EXECUTION_ID" >> "$RUNS"; printf "{\"mark\": \"%s\"}" "$MARK"'"#,
        json!({
            "env": {"RUNS": runs, "MARK": mark},
            "concurrency": {"max_in_flight": 9},
            "retry": {"max_attempts": 2, "initial_backoff_ms": 50},
        }),
    )
}

#[tokio::test]
async fn three_nodes_share_the_work_and_a_lost_node_loses_nothing() {
    let url = TestPostgres::shared().create_database().await;
    let one = Server::start_with(cluster_node(&url, "node-1")).await;
    let two = Server::start_with(cluster_node(&url, "node-2")).await;
    let mut three = Server::start_with(cluster_node(&url, "node-3")).await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    let runs = runs.to_str().unwrap();

    // Deployed on node 1, called on node 2.
    one.deploy(work(runs, "v1")).await;
    let (status, answer) = two.invoke("work", json!({"call": 1})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["output"]["mark"], "v1", "{answer}");

    // A new version on node 1 reaches node 2 within a second.
    let replace = one
        .request(Method::PUT, "/v1/functions/work")
        .json(&work(runs, "v2"));
    let (status, _, body) = one.call(replace).await;
    assert!(status.is_success(), "{body}");
    let changed = Instant::now();
    loop {
        let (status, answer) = two.invoke("work", json!({"call": 2})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if answer["output"]["mark"] == "v2" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_millis(1_500),
            "node 2 still runs the old version: {answer}"
        );
    }

    // Work through all three, then node 3 dies with some of it running and queued.
    let mut ids: Vec<String> = Vec::new();
    for n in 0..ENQUEUED {
        let node = [&one, &two, &three][n % 3];
        ids.push(node.enqueue("work", json!({ "n": n })).await);
    }
    // Killed while it runs some of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    'running: loop {
        for id in ids.iter().skip(2).step_by(3) {
            let record = one.execution(id).await;
            if record["owner"] == "node-3" && record["status"] == "running" {
                break 'running;
            }
        }
        assert!(Instant::now() < deadline, "node 3 never ran any");
    }
    three.kill9().await;

    // The others finish everything: what ran on node 3 once its leases lapse (30 s),
    // what waited in its memory once it has been unclaimed for a minute.
    let ended = one.wait_all_terminal(&ids, Duration::from_secs(150)).await;
    let counted = support::count_lines(std::path::Path::new(runs));
    let mut lost = 0;
    for (id, record) in &ended {
        let attempt = record["attempt"].as_u64().unwrap_or(0) as usize;
        let ran = counted.get(id).copied().unwrap_or(0);
        assert!(
            ran <= attempt,
            "{id} ran {ran} times in {attempt} attempt(s): {record}"
        );
        match record["status"].as_str() {
            Some("success") => {}
            _ => {
                assert_eq!(record["error"]["code"], "NODE_LOST", "{record}");
                lost += 1;
            }
        }
        if attempt > 1 {
            assert_ne!(record["owner"], "node-3", "re-run elsewhere: {record}");
        }
    }
    // Two attempts each: a run lost with node 3 is run again, so none should end lost.
    assert_eq!(lost, 0, "executions ended NODE_LOST");
    let rerun = ended
        .values()
        .filter(|record| record["attempt"].as_u64() == Some(2))
        .count();
    assert!(
        rerun > 0,
        "node 3 was running some when it died; they ran again"
    );

    // The nodes see each other; node 3 is not stopped cleanly.
    let (status, _, listed) = two.call(two.request(Method::GET, "/v1/nodes")).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let states: BTreeMap<String, String> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states.get("node-1").map(String::as_str),
        Some("up"),
        "{listed}"
    );
    assert_eq!(
        states.get("node-2").map(String::as_str),
        Some("up"),
        "{listed}"
    );
    assert_eq!(
        states.get("node-3").map(String::as_str),
        Some("lost"),
        "{listed}"
    );

    // Node 3 comes back: it stops what it left running and settles only what it held.
    let mut back = three.restart(cluster_node(&url, "node-3")).await;
    for (id, record) in &ended {
        assert_eq!(
            &back.execution(id).await["status"],
            &record["status"],
            "{id}"
        );
    }
    back.stop().await;
}

#[tokio::test]
async fn a_node_with_another_secret_key_is_refused() {
    let url = TestPostgres::shared().create_database().await;
    // Node ids name cgroups on this host: none shared with the other test.
    let mut first = Server::start_with(cluster_node(&url, "keyed-1")).await;
    let other_key = "0".repeat(64);
    let (code, stderr) = support::serve_exits(
        &["--listen", "127.0.0.1:0", "--node-id", "keyed-2"],
        &[
            ("GANTRY_DATABASE_URL", url.as_str()),
            ("GANTRY_SECRET_KEY", other_key.as_str()),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("GANTRY_SECRET_KEY"), "{stderr}");
    first.stop().await;
}

#[tokio::test]
async fn logs_and_cancels_reach_across_nodes() {
    let url = TestPostgres::shared().create_database().await;
    let near = Server::start_with(cluster_node(&url, "near-1")).await;
    let far = Server::start_with(cluster_node(&url, "far-2")).await;
    far.deploy(stdio_function(
        "ticks",
        r#"sh -c 'for i in 1 2 3 4 5; do echo "tick $i" >&2; sleep 0.2; done; cat'"#,
        json!({}),
    ))
    .await;
    far.deploy(stdio_function("long", "sleep 60", json!({})))
        .await;

    // Accepted (and run) by the far node, followed from the near one.
    let id = far.enqueue("ticks", json!({"t": 1})).await;
    let events = near
        .follow_logs(&id)
        .await
        .collect(Duration::from_secs(20))
        .await;
    let ticks: Vec<&str> = events
        .iter()
        .filter(|event| event.event == "log")
        .filter_map(|event| event.data["line"].as_str())
        .collect();
    assert_eq!(
        ticks,
        ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"],
        "{events:?}"
    );
    let end = events.last().expect("events");
    assert_eq!(
        (end.event.as_str(), &end.data),
        ("end", &json!({"status": "success"}))
    );

    // Running on the far node, cancelled through the near one.
    let id = far.enqueue("long", json!(null)).await;
    far.wait_status(&id, "running", Duration::from_secs(10))
        .await;
    let asked = Instant::now();
    let cancel = near.request(Method::POST, &format!("/v1/executions/{id}:cancel"));
    let (status, _, body) = near.call(cancel).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(body["owner"], "far-2", "the far node ended it: {body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "cancelled within seconds: {:?}",
        asked.elapsed()
    );
    far.assert_no_instances().await;
}

#[tokio::test]
async fn max_in_flight_holds_across_the_cluster() {
    let url = TestPostgres::shared().create_database().await;
    let nodes = [
        Server::start_with(cluster_node(&url, "lim-1")).await,
        Server::start_with(cluster_node(&url, "lim-2")).await,
        Server::start_with(cluster_node(&url, "lim-3")).await,
    ];
    let temp = support::function_tempdir();
    let spans = temp.path().join("spans");
    nodes[0]
        .deploy(stdio_function(
            "bounded",
            r#"sh -c 'echo "$EXECUTION_ID start $(date +%s%N)" >> "$SPANS"; sleep 0.3; echo "$EXECUTION_ID end $(date +%s%N)" >> "$SPANS"; cat'"#,
            json!({
                "env": {"SPANS": spans.to_str().unwrap()},
                "concurrency": {"max_in_flight": 2},
            }),
        ))
        .await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(nodes[n % 3].enqueue("bounded", json!({ "n": n })).await);
    }
    let ended = nodes[0]
        .wait_all_terminal(&ids, Duration::from_secs(60))
        .await;
    for record in ended.values() {
        assert_eq!(record["status"], "success", "{record}");
    }
    // The most runs at once, from the starts and ends the function recorded.
    let text = std::fs::read_to_string(&spans).unwrap();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let at: u128 = fields[2].parse().unwrap();
            (at, if fields[1] == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(events.len(), 24, "{text}");
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, step) in events {
        running += step;
        most = most.max(running);
    }
    assert_eq!(
        most, 2,
        "at most two at once, and two did run together:\n{text}"
    );
    let owners: std::collections::BTreeSet<&str> = ended
        .values()
        .map(|record| record["owner"].as_str().unwrap_or_default())
        .collect();
    assert!(owners.len() > 1, "more than one node ran them: {owners:?}");
}
