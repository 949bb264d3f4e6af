//! Schedules on two `gantry serve` nodes sharing one PostgreSQL: both run the scheduler,
//! and each tick fires once in total, also while one of them is killed and started
//! again.

mod support;

use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use serde_json::json;
use support::postgres::TestPostgres;
use support::{cluster_node, scheduled_function, ticks, without_gaps, Server};

/// The schedule fires a node counted.
async fn fires(node: &Server) -> f64 {
    let (_, _, metrics) = node.call(node.request(Method::GET, "/metrics")).await;
    let series = "gantry_schedule_fires_total{function=\"shared\"} ";
    metrics
        .as_str()
        .and_then(|text| text.lines().find_map(|line| line.strip_prefix(series)))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn two_nodes_fire_each_tick_once_in_total() {
    let url = TestPostgres::shared().create_database().await;
    let one = Server::start_with(cluster_node(&url, "node-1")).await;
    let mut two = Server::start_with(cluster_node(&url, "node-2")).await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    one.deploy(scheduled_function(
        "shared",
        &runs,
        "* * * * * *",
        json!({"catch_up": true}),
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    two.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Utc::now();
    let two = two.restart(cluster_node(&url, "node-2")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = Utc::now();

    // Read through both nodes: the same records, each tick once.
    let through_one = ticks(&one, "shared").await;
    let through_two = ticks(&two, "shared").await;
    let fired: Vec<_> = through_one.keys().filter(|tick| **tick < stopped).collect();
    assert!(fired.len() >= 7, "it fired every second: {through_one:?}");
    assert!(
        without_gaps(&through_one),
        "each second once: {through_one:?}"
    );
    for tick in fired {
        assert_eq!(through_one.get(tick), through_two.get(tick), "{tick}");
    }
    let ids: Vec<String> = through_one.values().cloned().collect();
    one.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    let counted = support::count_lines(&runs);
    assert!(
        counted.values().all(|runs| *runs == 1),
        "no execution ran twice: {counted:?}"
    );
    // Node 2's counter restarted with it: count what both fired since.
    let fires = fires(&one).await + fires(&two).await;
    let since_restart = through_one.keys().filter(|tick| **tick > restarted).count();
    assert!(
        fires >= since_restart as f64 && fires <= through_one.len() as f64,
        "the nodes counted {fires} fires for {} ticks ({since_restart} since node 2 came back)",
        through_one.len()
    );
    let logs = one.stderr() + &two.stderr();
    assert!(
        !logs.contains("schedule: ") && !logs.contains("schedules: "),
        "no schedule failed: {logs}"
    );
}
