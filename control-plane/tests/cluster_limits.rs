//! Limits that hold across `gantry serve` nodes sharing one PostgreSQL: a warm
//! function's `max_instances` counts every node's instances, and a sync call that lands
//! on a node without a free instance is served by the node that has one; `max_queue`
//! counts what waits on every node.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::postgres::TestPostgres;
use support::{cluster_node, invoke_header, pool, send, stdio_function, warm_function, Server};

/// Longer than a few exchanges of loads between nodes (every 250 ms).
const SETTLE: Duration = Duration::from_millis(1_000);

/// Waits until node `node` has published a load of `function` that `check` accepts,
/// then for the other nodes to read it.
async fn wait_published(url: &str, node: &str, function: &str, check: impl Fn(&Value) -> bool) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = client
            .query_opt(
                "SELECT functions FROM node_loads WHERE node_id = $1",
                &[&node],
            )
            .await
            .unwrap();
        let load: Value = row
            .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
            .unwrap_or_default();
        if check(&load[function]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never published it: {load}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
}

/// `:invoke` answering the status, the node that served it when another did, and the
/// body.
async fn invoke_on(
    server: &Server,
    name: &str,
    input: Value,
) -> (StatusCode, Option<String>, Value) {
    invoke_header(server, name, input, "x-gantry-served-by").await
}

/// Execution `id` once `server` can read it (within 10 s).
async fn readable(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = server
            .call(server.request(Method::GET, &format!("/v1/executions/{id}")))
            .await;
        if status == StatusCode::OK {
            return body;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(Instant::now() < deadline, "{id} never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn warm_calls_reach_the_one_instance_the_cluster_may_run() {
    let url = TestPostgres::shared().create_database().await;
    let near = Server::start_with(cluster_node(&url, "warm-near")).await;
    let far = Server::start_with(cluster_node(&url, "warm-far")).await;
    let warm = json!({"min_instances": 0, "max_instances": 1, "concurrency_per_instance": 1});
    near.deploy(warm_function("single", warm, json!({}))).await;

    let (status, served_by, first) = invoke_on(&near, "single", json!({"n": 0})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(served_by, None, "served where it landed");
    let pid = first["output"]["pid"].as_u64().unwrap();
    wait_published(&url, "warm-near", "single", |load| load["instances"] == 1).await;

    // The far node may start no instance of its own: it passes its calls on to the
    // near node's, one at a time (concurrency 1), and their answers come back.
    let calls = (1..=4).map(|n| invoke_on(&far, "single", json!({"n": n, "sleep_ms": 100})));
    for (status, served_by, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(served_by.as_deref(), Some("warm-near"), "{body}");
        assert_eq!(
            body["output"]["pid"], pid,
            "one instance served all: {body}"
        );
        // The near node records the call behind its answer: the record reaches the
        // database (and the far node's reads) a moment later.
        let id = body["executionId"].as_str().unwrap();
        let record = readable(&far, id).await;
        assert_eq!(record["status"], "success", "{record}");
    }
    let far_pool = pool(&far, "single").await;
    assert_eq!(
        far_pool["instances"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{far_pool}"
    );
    let near_pool = pool(&near, "single").await;
    assert_eq!(
        near_pool["instances"].as_array().map(Vec::len),
        Some(1),
        "{near_pool}"
    );
    let metrics = far.metrics_text().await;
    assert!(
        metrics.contains(r#"gantry_warm_forwarded_total{function="single"} 4"#),
        "{metrics}"
    );

    // A call marked as passed on already is served where it lands: it waits there
    // (no instance may start) until its timeout, and is never passed on again.
    let marked = far
        .request(Method::POST, "/v1/functions/single:invoke")
        .header("x-gantry-forwarded-by", "warm-near")
        .header("x-timeout-ms", "300")
        .json(&json!({"n": 9}));
    let (status, headers, body) = far.call(marked).await;
    assert!(headers.get("x-gantry-served-by").is_none(), "{body}");
    assert_ne!(
        status,
        StatusCode::OK,
        "no instance was free for it here: {body}"
    );
}

#[tokio::test]
async fn max_queue_counts_what_waits_on_every_node() {
    let url = TestPostgres::shared().create_database().await;
    let near = Server::start_with(cluster_node(&url, "queue-near")).await;
    let far = Server::start_with(cluster_node(&url, "queue-far")).await;
    near.deploy(stdio_function(
        "narrow",
        "sh -c 'sleep 1.5; cat'",
        json!({"concurrency": {"max_in_flight": 1, "max_queue": 2}}),
    ))
    .await;
    let enqueue = |server: &Server, n: u32| {
        server
            .request(Method::POST, "/v1/functions/narrow:enqueue")
            .json(&json!({ "n": n }))
    };
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, _, body) = near.call(enqueue(&near, n)).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "one runs and two wait: {body}"
        );
        ids.push(body["executionId"].as_str().unwrap().to_owned());
    }
    let (status, _, body) = near.call(enqueue(&near, 3)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    wait_published(&url, "queue-near", "narrow", |load| load["queued"] == 2).await;

    // The far node has a free slot of its own, so it takes one (which waits for the
    // cluster-wide max_in_flight); past that, the two waiting on the near node fill
    // the queue.
    let (status, _, body) = far.call(enqueue(&far, 4)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    ids.push(body["executionId"].as_str().unwrap().to_owned());
    let (status, _, body) = far.call(enqueue(&far, 5)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "QUEUE_FULL", "{body}");

    let ended = near.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    for record in ended.values() {
        assert_eq!(record["status"], "success", "{record}");
    }
}

#[tokio::test]
async fn a_surplus_instance_started_in_a_race_stops_once_idle() {
    let url = TestPostgres::shared().create_database().await;
    let first = Server::start_with(cluster_node(&url, "race-a")).await;
    let second = Server::start_with(cluster_node(&url, "race-b")).await;
    let warm = json!({"min_instances": 0, "max_instances": 1, "concurrency_per_instance": 1});
    first.deploy(warm_function("raced", warm, json!({}))).await;
    // Seen by the second node before the calls.
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&second, Method::GET, "/v1/functions/raced", None)
        .await
        .0
        != StatusCode::OK
    {
        assert!(
            Instant::now() < deadline,
            "the second node never saw the deploy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both nodes start an instance before either hears of the other's.
    let (a, b) = tokio::join!(
        invoke_on(&first, "raced", json!({"sleep_ms": 300})),
        invoke_on(&second, "raced", json!({"sleep_ms": 300})),
    );
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.2,
        b.2
    );
    let count = |pool: &Value| pool["instances"].as_array().map_or(0, Vec::len);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (kept, stopped) = (pool(&first, "raced").await, pool(&second, "raced").await);
        if count(&kept) == 1 && count(&stopped) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node with the larger id keeps a surplus instance: {kept} {stopped}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
