//! Warm pools on the process runtime: prewarm, reuse, cold starts, the most-free pick,
//! starting up to `max_instances`, the bounded queue, `:scale`, `:enqueue` and metrics.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{invoke_full, pool, send, wait_pool, warm_function, Server};

#[tokio::test]
async fn prewarmed_instances_serve_every_call_without_a_cold_start() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "counter",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    let ready = wait_pool(&server, "counter", "one idle instance", |p| p["idle"] == 1).await;
    assert_eq!(ready["instances"].as_array().unwrap().len(), 1, "{ready}");
    let instance_id = ready["instances"][0]["id"].as_str().unwrap().to_owned();
    let mut pids = HashSet::new();
    for expected in 1..=3 {
        let (status, cold, body) = invoke_full(&server, "counter", json!({"n": expected})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(cold.as_deref(), Some("false"), "a prewarmed call is warm");
        // The runtime process lives on between calls: its counter goes up.
        assert_eq!(body["output"]["count"], expected, "{body}");
        assert_eq!(body["output"]["echo"]["n"], expected, "{body}");
        pids.insert(body["output"]["pid"].as_u64().unwrap());
        let record = server
            .execution(body["executionId"].as_str().unwrap())
            .await;
        assert_eq!(record["instanceId"], instance_id.as_str(), "{record}");
        assert_eq!(record["coldStart"], false, "{record}");
        assert_eq!(record["status"], "success", "{record}");
    }
    assert_eq!(pids.len(), 1, "one runtime process served every call");
    let after = pool(&server, "counter").await;
    assert_eq!(after["instances"][0]["invocations"], 3, "{after}");
    assert_eq!(after["coldStarts"], 0, "{after}");
}

#[tokio::test]
async fn a_call_that_waits_for_an_instance_to_start_is_a_cold_start() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "lazy",
            json!({"min_instances": 0}),
            json!({}),
        ))
        .await;
    let empty = pool(&server, "lazy").await;
    assert_eq!(
        empty["instances"].as_array().map(Vec::len),
        Some(0),
        "{empty}"
    );
    let (status, cold, body) = invoke_full(&server, "lazy", json!(1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cold.as_deref(), Some("true"));
    let first = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(first["coldStart"], true, "{first}");
    let (status, cold, body) = invoke_full(&server, "lazy", json!(2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        cold.as_deref(),
        Some("false"),
        "the second call finds the instance warm"
    );
    let second = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(second["instanceId"], first["instanceId"]);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"gantry_cold_starts_total{function="lazy"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gantry_pool_instances{function="lazy",state="idle"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gantry_pool_queue_wait_seconds_count{function="lazy"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"gantry_instance_start_seconds_count{function="lazy",outcome="ready"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gantry_pool_in_flight{function="lazy"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_call_takes_the_instance_with_the_most_free_capacity() {
    let server = Server::start().await;
    let warm = json!({"min_instances": 2, "max_instances": 2, "concurrency_per_instance": 2});
    server
        .deploy(warm_function("spread", warm, json!({})))
        .await;
    wait_pool(&server, "spread", "two idle instances", |p| p["idle"] == 2).await;
    let slow = {
        let request = server
            .request(Method::POST, "/v1/functions/spread:invoke")
            .json(&json!({"sleep_ms": 1500}));
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    wait_pool(&server, "spread", "one busy instance", |p| p["busy"] == 1).await;
    // One instance has one free place, the other two: the quick call goes to the other.
    let (status, _, quick) = invoke_full(&server, "spread", json!({"n": 1})).await;
    assert_eq!(status, 200, "{quick}");
    let slow = slow.await.unwrap();
    assert_eq!(slow["status"], "success", "{slow}");
    assert_ne!(
        quick["output"]["pid"], slow["output"]["pid"],
        "the idle instance took the call, not the busy one"
    );
}

#[tokio::test]
async fn busy_pools_start_instances_up_to_max_then_queue_then_refuse() {
    let server = Server::start().await;
    let warm = json!({"min_instances": 0, "max_instances": 2, "concurrency_per_instance": 1});
    server
        .deploy(warm_function(
            "bounded",
            warm,
            json!({"concurrency": {"max_queue": 1}}),
        ))
        .await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let request = server
            .request(Method::POST, "/v1/functions/bounded:invoke")
            .json(&json!({"sleep_ms": 2000}));
        slow.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }));
    }
    wait_pool(&server, "bounded", "two busy instances", |p| p["busy"] == 2).await;
    // Both instances are busy and max_instances is reached: the next call waits...
    let queued = {
        let request = server
            .request(Method::POST, "/v1/functions/bounded:invoke")
            .json(&json!({"n": 3}));
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };
    wait_pool(&server, "bounded", "one queued call", |p| p["queued"] == 1).await;
    // ...and past max_queue the call is refused with Retry-After.
    let refused = server
        .request(Method::POST, "/v1/functions/bounded:invoke")
        .json(&json!({"n": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.headers().get("retry-after").is_some(),
        "{:?}",
        refused.headers()
    );
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_queue"),
        "{body}"
    );
    let mut pids = HashMap::new();
    for call in slow {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        *pids
            .entry(body["output"]["pid"].as_u64().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        pids.len(),
        2,
        "two instances were started for two concurrent calls"
    );
    let (status, body) = queued.await.unwrap();
    assert_eq!(
        status, 200,
        "the queued call ran once an instance was free: {body}"
    );
    let pool = pool(&server, "bounded").await;
    assert_eq!(pool["instances"].as_array().unwrap().len(), 2, "{pool}");
}

#[tokio::test]
async fn enqueued_executions_of_a_warm_function_run_on_its_pool() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "async-warm",
            // One instance only: the three calls queue for it rather than start others.
            json!({"min_instances": 1, "max_instances": 1}),
            json!({}),
        ))
        .await;
    let ready = wait_pool(&server, "async-warm", "one idle instance", |p| {
        p["idle"] == 1
    })
    .await;
    let ids: Vec<String> = futures_util::future::join_all(
        (0..3).map(|n| server.enqueue("async-warm", json!({"n": n}))),
    )
    .await;
    for id in ids {
        let done = server.wait_terminal(&id, Duration::from_secs(10)).await;
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["instanceId"], ready["instances"][0]["id"], "{done}");
    }
}

#[tokio::test]
async fn scale_changes_the_bounds_without_restarting_instances() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "scaled",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    let before = wait_pool(&server, "scaled", "one idle instance", |p| p["idle"] == 1).await;
    let first_id = before["instances"][0]["id"].clone();
    let (status, body) = send(
        &server,
        Method::POST,
        "/v1/functions/scaled:scale",
        Some(json!({"min_instances": 2, "max_instances": 3})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    assert_eq!(body["spec"]["warm"]["min_instances"], 2, "{body}");
    assert_eq!(body["pool"]["minInstances"], 2, "{body}");
    let after = wait_pool(&server, "scaled", "two idle instances", |p| p["idle"] == 2).await;
    let ids: Vec<&Value> = after["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert!(
        ids.contains(&&first_id),
        "the running instance was kept: {after}"
    );
    for (body, message) in [
        (json!({}), "min_instances"),
        (
            json!({"min_instances": 5, "max_instances": 2}),
            "above warm.max_instances",
        ),
        (json!({"min_instances": -1}), "min_instances"),
    ] {
        let (status, answer) = send(
            &server,
            Method::POST,
            "/v1/functions/scaled:scale",
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(message), "{answer}");
    }
    let (status, answer) = send(
        &server,
        Method::POST,
        "/v1/functions/nobody:scale",
        Some(json!({"min_instances": 1})),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
}
