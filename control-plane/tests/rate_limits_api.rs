//! Rate limits and event age with the real server: API calls past a function's
//! `rate_limit` get 429 `RATE_LIMITED` with `Retry-After`, events and chained children
//! past it are delayed and still run, and an execution that waits in the queue past its
//! `max_queue_age_ms` (or the server's `--max-queue-age-ms`) ends `EXPIRED` without
//! running and fires its `on_failure` chain.

mod support;

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, error_message, send, stdio_function, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(30);

fn echo(name: &str, extra: Value) -> Value {
    stdio_function(name, "python3 echo.py", extra)
}

fn time(execution: &Value, field: &str) -> DateTime<FixedOffset> {
    let text = execution[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field}: {execution}"));
    DateTime::parse_from_rfc3339(text).expect(field)
}

/// `POST /v1/functions/{name}:{action}`: status, `Retry-After`, body.
async fn call(server: &Server, name: &str, action: &str) -> (StatusCode, Option<String>, Value) {
    let (status, headers, body) = server
        .call(
            server
                .request(Method::POST, &format!("/v1/functions/{name}:{action}"))
                .json(&json!({"n": 1})),
        )
        .await;
    let retry_after = headers
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, body)
}

fn assert_rate_limited(answer: &(StatusCode, Option<String>, Value)) {
    let (status, retry_after, body) = answer;
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(body), "RATE_LIMITED", "{body}");
    assert!(error_message(body).contains("rate_limit"), "{body}");
    assert_eq!(
        retry_after.as_deref(),
        Some("1"),
        "2/s: a token within a second"
    );
}

#[tokio::test]
async fn api_calls_past_the_rate_limit_get_429_with_retry_after_then_pass_again() {
    let server = Server::start().await;
    let limited = json!({"rate_limit": {"per_second": 2, "burst": 3}});
    server.deploy(echo("paced", limited)).await;
    // The burst: three calls pass at once, the next ones are refused.
    for _ in 0..3 {
        let (status, _, body) = call(&server, "paced", "enqueue").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_rate_limited(&call(&server, "paced", "invoke").await);
    assert_rate_limited(&call(&server, "paced", "enqueue").await);
    let (_, list) = server.list_executions(&[("function", "paced")]).await;
    assert_eq!(
        list["executions"].as_array().unwrap().len(),
        3,
        "refused calls are not stored"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"gantry_rate_limited_total{function="paced",outcome="refused"} 2"#),
        "{metrics}"
    );

    // After Retry-After, a token is free again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _, body) = call(&server, "paced", "invoke").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");

    // A redeploy with another limit takes effect at once.
    replace(
        &server,
        echo(
            "paced",
            json!({"rate_limit": {"per_second": 100, "burst": 10}}),
        ),
    )
    .await;
    for _ in 0..5 {
        let (status, _, body) = call(&server, "paced", "enqueue").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // Without a limit nothing is refused.
    replace(&server, echo("paced", json!({}))).await;
    for _ in 0..12 {
        let (status, _, body) = call(&server, "paced", "enqueue").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
}

/// `PUT /v1/functions/{name}`: a new version.
async fn replace(server: &Server, manifest: Value) {
    let path = format!("/v1/functions/{}", manifest["name"].as_str().unwrap());
    let (status, body) = send(server, Method::PUT, &path, Some(manifest)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The records of `ids`, once all of them finished.
async fn finished_records(server: &Server, ids: &[String]) -> Vec<Value> {
    let mut records = Vec::new();
    for id in ids {
        records.push(server.wait_terminal(id, WAIT).await);
    }
    records
}

/// `true` when `record` waited for its rate limit: due at least `at_least_ms` after
/// its creation, and not started before then.
fn delayed(record: &Value, at_least_ms: i64) -> bool {
    if record["dueAt"].is_null() {
        return false;
    }
    let due = time(record, "dueAt");
    assert!(
        time(record, "startedAt") >= due,
        "started before due: {record}"
    );
    (due - time(record, "createdAt")).num_milliseconds() >= at_least_ms
}

#[tokio::test]
async fn events_and_chained_children_past_the_limit_are_delayed_and_all_run() {
    let server = Server::start().await;
    let limited = |extra: Value| {
        let mut manifest = json!({"rate_limit": {"per_second": 2, "burst": 1}});
        for (key, value) in extra.as_object().unwrap() {
            manifest[key] = value.clone();
        }
        manifest
    };
    server
        .deploy(echo(
            "on-order",
            limited(json!({"triggers": [{"type": "order.created"}]})),
        ))
        .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let event = json!({"type": "order.created", "data": {"n": n}});
        let (status, body) = send(&server, Method::POST, "/v1/events", Some(event)).await;
        assert_eq!(status, 202, "{body}");
        let target = &body["executions"][0];
        assert!(target["error"].is_null(), "delayed, not refused: {body}");
        ids.push(target["executionId"].as_str().unwrap().to_owned());
    }
    let records = finished_records(&server, &ids).await;
    for record in &records {
        assert_eq!(record["status"], "success", "none is lost: {record}");
    }
    assert!(!delayed(&records[0], 0), "the burst: {}", records[0]);
    assert!(delayed(&records[1], 400), "{}", records[1]);
    assert!(delayed(&records[2], 900), "{}", records[2]);

    // One parent whose three chains start the limited function at the same moment.
    server.deploy(echo("chained", limited(json!({})))).await;
    let always = json!({"target": "chained", "condition": "always"});
    server
        .deploy(echo("fan", json!({"chains": [always, always, always]})))
        .await;
    let (status, body) = server.invoke("fan", json!({"go": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let parent = body["executionId"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    let children = loop {
        let (_, list) = server.list_executions(&[("function", "chained")]).await;
        let listed = list["executions"].as_array().unwrap().clone();
        if listed.len() == 3 {
            break listed;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: Vec<String> = children
        .iter()
        .map(|child| child["id"].as_str().unwrap().to_owned())
        .collect();
    let records = finished_records(&server, &ids).await;
    let mut waits: Vec<bool> = Vec::new();
    for record in &records {
        assert_eq!(record["status"], "success", "{record}");
        assert_eq!(record["parentId"], parent.as_str(), "{record}");
        waits.push(delayed(record, 400));
    }
    assert_eq!(
        waits.iter().filter(|waited| **waited).count(),
        2,
        "one child runs at once, two wait for their tokens: {records:?}"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"gantry_rate_limited_total{function="chained",outcome="delayed"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_rate_limits_and_queue_ages_are_400s_naming_the_field() {
    let server = Server::start().await;
    let cases = [
        (
            json!({"rate_limit": {"per_second": 0, "burst": 1}}),
            "rate_limit.per_second",
        ),
        (
            json!({"rate_limit": {"per_second": -2}}),
            "rate_limit.per_second",
        ),
        (
            json!({"rate_limit": {"per_second": 1e12}}),
            "rate_limit.per_second",
        ),
        (
            json!({"rate_limit": {"per_second": "fast"}}),
            "rate_limit.per_second",
        ),
        (
            json!({"rate_limit": {"per_second": 1, "burst": 0}}),
            "rate_limit.burst",
        ),
        (
            json!({"rate_limit": {"per_second": 1, "burst": 2.5}}),
            "rate_limit.burst",
        ),
        (
            json!({"rate_limit": {"per_second": 1, "burst": -1}}),
            "rate_limit.burst",
        ),
        (
            json!({"rate_limit": {"per_second": 1, "burst": 1e10}}),
            "rate_limit.burst",
        ),
        (json!({"rate_limit": {"burst": 1}}), "per_second"),
        (
            json!({"rate_limit": {"per_second": 1, "every": 2}}),
            "rate_limit",
        ),
        (json!({"rate_limit": 5}), "rate_limit"),
        (json!({"max_queue_age_ms": 0}), "max_queue_age_ms"),
        (json!({"max_queue_age_ms": -5}), "max_queue_age_ms"),
        (json!({"max_queue_age_ms": "soon"}), "max_queue_age_ms"),
        (
            json!({"max_queue_age_ms": 700_000_000_000u64}),
            "max_queue_age_ms",
        ),
    ];
    for (extra, field) in cases {
        let (status, body) = server.try_deploy(echo("bad", extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert!(error_message(&body).contains(field), "{extra}: {body}");
    }
}

/// Deploys `name`: it marks each run in `marks` and sleeps 3 s, one at a time, with an
/// `on_failure` chain to `failed`; `extra` is merged in.
async fn deploy_busy(server: &Server, name: &str, marks: &std::path::Path, extra: Value) {
    let mut manifest = stdio_function(
        name,
        "python3 mark.py 3",
        json!({
            "env": {"MARK_FILE": marks.to_str().unwrap()},
            "concurrency": {"max_in_flight": 1},
            "chains": [{"target": "failed", "condition": "on_failure"}],
        }),
    );
    for (key, value) in extra.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    server.deploy(manifest).await;
}

/// Enqueues two executions of `name`: the first runs (3 s), the second waits behind it.
async fn one_running_one_waiting(server: &Server, name: &str) -> (String, String) {
    let first = server.enqueue(name, json!(1)).await;
    server.wait_status(&first, "running", WAIT).await;
    let second = server.enqueue(name, json!(2)).await;
    assert_eq!(server.execution(&second).await["status"], "queued");
    (first, second)
}

/// The `failed` executions the `on_failure` chain of `parent` started.
async fn failure_chain(server: &Server, parent: &str) -> Vec<Value> {
    let (_, list) = server.list_executions(&[("function", "failed")]).await;
    list["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["parentId"] == parent)
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_execution_waiting_past_its_queue_age_expires_without_running() {
    let server = Server::start().await;
    let dir = support::function_tempdir();
    let marks = dir.path().join("marks.txt");
    server.deploy(echo("failed", json!({}))).await;
    deploy_busy(&server, "busy", &marks, json!({"max_queue_age_ms": 500})).await;
    let (first, second) = one_running_one_waiting(&server, "busy").await;

    let expired = server.wait_terminal(&second, WAIT).await;
    assert_eq!(expired["status"], "error", "{expired}");
    assert_eq!(expired["error"]["code"], "EXPIRED", "{expired}");
    assert!(expired["startedAt"].is_null(), "never started: {expired}");
    let ran = server.wait_terminal(&first, WAIT).await;
    assert_eq!(ran["status"], "success", "{ran}");
    assert!(
        time(&expired, "finishedAt") < time(&ran, "finishedAt"),
        "ended while the first still ran"
    );
    let marks = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(
        marks,
        format!("start {first}\nend {first}\n"),
        "only the first ran"
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    let chained = loop {
        let chained = failure_chain(&server, &second).await;
        if !chained.is_empty() {
            break chained;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "on_failure never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(chained.len(), 1, "{chained:?}");
    let id = chained[0]["id"].as_str().unwrap();
    assert_eq!(server.wait_terminal(id, WAIT).await["status"], "success");
    assert!(failure_chain(&server, &first).await.is_empty());
}

#[tokio::test]
async fn the_server_default_queue_age_applies_when_the_function_sets_none() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--max-queue-age-ms".into(), "500".into()],
        ..ServerOptions::default()
    })
    .await;
    let dir = support::function_tempdir();
    let (marks, patient_marks) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    server.deploy(echo("failed", json!({}))).await;
    deploy_busy(&server, "defaulted", &marks, json!({})).await;
    deploy_busy(
        &server,
        "patient",
        &patient_marks,
        json!({"max_queue_age_ms": 60_000}),
    )
    .await;
    let (_, defaulted) = one_running_one_waiting(&server, "defaulted").await;
    let (_, patient) = one_running_one_waiting(&server, "patient").await;

    let expired = server.wait_terminal(&defaulted, WAIT).await;
    assert_eq!(expired["error"]["code"], "EXPIRED", "{expired}");
    let ran = server.wait_terminal(&patient, WAIT).await;
    assert_eq!(ran["status"], "success", "its own limit is longer: {ran}");
}

#[tokio::test]
async fn nodes_sharing_a_database_each_enforce_their_share_of_the_limit() {
    let url = support::postgres::TestPostgres::shared()
        .create_database()
        .await;
    let near = Server::start_with(support::cluster_node(&url, "rate-near")).await;
    let far = Server::start_with(support::cluster_node(&url, "rate-far")).await;
    // A burst of 4 at one every two seconds: each of the two nodes takes 2, at one every
    // four seconds.
    near.deploy(echo(
        "shared",
        json!({"rate_limit": {"per_second": 0.5, "burst": 4}}),
    ))
    .await;
    // Long enough for each node to see the other's load (exchanged every 250 ms).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for server in [&near, &far] {
        for _ in 0..2 {
            let (status, _, body) = call(server, "shared", "enqueue").await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        let (status, retry_after, body) = call(server, "shared", "enqueue").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
        let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!(
            (1..=4).contains(&seconds),
            "a token of its share: {seconds}"
        );
    }
}

#[tokio::test]
async fn calls_reaching_one_node_get_the_part_of_the_idle_one_too() {
    let url = support::postgres::TestPostgres::shared()
        .create_database()
        .await;
    let near = Server::start_with(support::cluster_node(&url, "demand-near")).await;
    let far = Server::start_with(support::cluster_node(&url, "demand-far")).await;
    near.deploy(echo(
        "lopsided",
        json!({"rate_limit": {"per_second": 4, "burst": 4}}),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let started = std::time::Instant::now();
    let mut admitted = 0u32;
    while started.elapsed() < Duration::from_secs(4) {
        let (status, _, body) = call(&near, "lopsided", "enqueue").await;
        match status {
            StatusCode::ACCEPTED => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}: {body}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // An equal half would admit at most 2 + 2 a second; the whole limit 4 + 4 a second.
    let half = 2.0 + 2.0 * seconds;
    let whole = 4.0 + 4.0 * seconds;
    assert!(
        f64::from(admitted) > half + 1.0,
        "the busy node takes more than half once the demand is exchanged: {admitted} in {seconds:.1}s"
    );
    assert!(
        f64::from(admitted) <= whole + 1.0,
        "never more than the limit: {admitted} in {seconds:.1}s"
    );
    // The idle node keeps a small part: it admits little while the other is busy.
    let (status, _, body) = call(&far, "lopsided", "enqueue").await;
    assert!(
        status == StatusCode::ACCEPTED || status == StatusCode::TOO_MANY_REQUESTS,
        "{status}: {body}"
    );
}
