//! Retries with real functions: a failure retried to success on the same execution with
//! each attempt's error kept, exhaustion to the dead-letter list (firing `on_failure`
//! chains) and re-drive, and pending retries and delayed chains surviving a kill -9.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{send, stdio_function, Server, ServerOptions};
use tokio::time::Instant;

/// A function failing (exit 1) on its first `fail_times` runs, counted in `count_file`.
fn flaky(name: &str, count_file: &Path, fail_times: u32, extra: Value) -> Value {
    let mut manifest = stdio_function(
        name,
        "python3 flaky.py",
        json!({"env": {
            "COUNT_FILE": count_file.to_str().unwrap(),
            "FAIL_TIMES": fail_times.to_string(),
        }}),
    );
    for (key, value) in extra.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    manifest
}

/// Polls execution `id` until `check` holds.
async fn wait_for(server: &Server, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = server.execution(id).await;
        if check(&record) {
            return record;
        }
        assert!(Instant::now() < deadline, "{id} never got {what}: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failed_attempt_is_retried_to_success_keeping_its_error() {
    let server = Server::start().await;
    let runs = server.data_dir.parent().unwrap().join("runs");
    let retry = json!({"retry": {"max_attempts": 3, "initial_backoff_ms": 50}});
    server.deploy(flaky("flaky", &runs, 1, retry)).await;
    // A sync call waits through the retry.
    let (status, body) = server.invoke("flaky", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["status"], "success", "{record}");
    assert_eq!(record["attempt"], 2, "{record}");
    assert_eq!(record["output"]["runs"], 2, "{record}");
    let attempts = record["attempts"].as_array().expect("attempts kept");
    assert_eq!(attempts.len(), 1, "{record}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["error"]["code"], "FUNCTION_ERROR", "{record}");
    assert_eq!(record["deadLetter"], false);
}

#[tokio::test]
async fn exhausted_retries_dead_letter_fire_on_failure_and_can_be_redriven() {
    let server = Server::start().await;
    let runs = server.data_dir.parent().unwrap().join("runs");
    server
        .deploy(stdio_function("alert", "python3 echo.py", json!({})))
        .await;
    let extra = json!({
        "retry": {"max_attempts": 2, "initial_backoff_ms": 20, "retry_on": ["FUNCTION_ERROR"]},
        "chains": [{"target": "alert", "condition": "on_failure", "input": "merge"}],
    });
    server.deploy(flaky("doomed", &runs, 2, extra)).await;
    let id = server.enqueue("doomed", json!({"order": 9})).await;
    let failed = server.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(failed["status"], "error", "{failed}");
    assert_eq!(failed["attempt"], 2, "{failed}");
    assert_eq!(failed["deadLetter"], true, "{failed}");
    assert_eq!(
        failed["attempts"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );
    let (status, listed) = server
        .list_executions(&[("dead_letter", "true"), ("function", "doomed")])
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["executions"][0]["id"], id.as_str(), "{listed}");
    // The on_failure chain fired once, after the last attempt.
    let (_, tree) = send(
        &server,
        Method::GET,
        &format!("/v1/executions/{id}/chain"),
        None,
    )
    .await;
    let children = tree["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{tree}");
    assert_eq!(children[0]["function"], "alert");
    let alert = server
        .wait_terminal(children[0]["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(alert["input"]["order"], 9, "merge keeps the input: {alert}");
    // Re-drive: a new execution; the third run succeeds.
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("/v1/executions/{id}:retry"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["retryOf"], id.as_str());
    let again = server
        .wait_terminal(
            body["executionId"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(again["status"], "success", "{again}");
    assert_eq!(again["trigger"], "retry", "{again}");
    assert_eq!(again["parentId"], id.as_str(), "{again}");
    assert_eq!(again["input"], json!({"order": 9}));
    let (_, listed) = server.list_executions(&[("dead_letter", "true")]).await;
    assert_eq!(
        listed["executions"],
        json!([]),
        "re-driven, off the list: {listed}"
    );
    // Only failures can be re-driven.
    let again_id = again["id"].as_str().unwrap();
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("/v1/executions/{again_id}:retry"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn pending_retries_and_delayed_chains_survive_a_kill_9() {
    let mut server = Server::start().await;
    let runs = server.data_dir.parent().unwrap().join("runs");
    let retry =
        json!({"retry": {"max_attempts": 2, "initial_backoff_ms": 2500, "multiplier": 1.0}});
    server.deploy(flaky("later", &runs, 1, retry)).await;
    server
        .deploy(stdio_function("landing", "python3 echo.py", json!({})))
        .await;
    let delayed = json!({"chains": [{"target": "landing", "delay_ms": 2500}]});
    server
        .deploy(stdio_function("launch", "python3 echo.py", delayed))
        .await;
    let retried = server.enqueue("later", json!({"n": 1})).await;
    let launched = server.enqueue("launch", json!({"n": 2})).await;
    let pending = wait_for(&server, &retried, "a scheduled retry", |r| {
        r["status"] == "queued" && r["attempt"] == 2 && r["runAt"].is_string()
    })
    .await;
    assert_eq!(
        pending["attempts"][0]["error"]["code"], "FUNCTION_ERROR",
        "{pending}"
    );
    server
        .wait_terminal(&launched, Duration::from_secs(20))
        .await;
    let (_, tree) = send(
        &server,
        Method::GET,
        &format!("/v1/executions/{launched}/chain"),
        None,
    )
    .await;
    let child = tree["children"][0].clone();
    assert_eq!(child["status"], "queued", "the delayed chain waits: {tree}");
    assert!(child["runAt"].is_string(), "{tree}");
    server.kill9().await;
    let restarted = server.restart(ServerOptions::default()).await;
    let done = restarted
        .wait_terminal(&retried, Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["attempt"], 2, "{done}");
    let landed = restarted
        .wait_terminal(child["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(landed["status"], "success", "{landed}");
    assert_eq!(landed["input"]["echo"], json!({"n": 2}), "{landed}");
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 2);
}
