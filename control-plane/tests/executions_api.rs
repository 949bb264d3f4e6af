//! `/v1/executions`: read one, list with filters and cursor paging, cancel running,
//! queued and finished executions.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use chrono::DateTime;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, error_message, stdio_function, Server};

const WAIT: Duration = Duration::from_secs(30);

fn ids(list: &Value) -> Vec<String> {
    list["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn cancel(server: &Server, id: &str) -> (StatusCode, Value) {
    let (status, _, body) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{id}:cancel")))
        .await;
    (status, body)
}

/// Waits until the function of execution `id` wrote its id to `runs` (status `running`
/// only says its watchdog started).
async fn wait_ran(runs: &std::path::Path, id: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(runs).is_ok_and(|text| text.lines().any(|l| l == id)) {
        assert!(std::time::Instant::now() < deadline, "{id} never ran");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let server = Server::start().await;
    let unknown = "0190a2b4-7c3e-7000-8000-000000000000";
    for path in [
        format!("/v1/executions/{unknown}"),
        format!("/v1/executions/{unknown}/logs"),
    ] {
        let (status, _, body) = server.call(server.request(Method::GET, &path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(error_code(&body), "NOT_FOUND");
        assert!(error_message(&body).contains(unknown), "{body}");
    }
    let (status, body) = cancel(&server, unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/executions/not-an-id"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains("ids are UUIDs"), "{body}");
    let (status, body) = cancel(&server, "not-an-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, _, body) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{unknown}:retry")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains(unknown), "{body}");
    let (status, _, body) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{unknown}:pause")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains(":cancel or :retry"), "{body}");
    let (status, _, body) = server
        .call(server.request(Method::GET, &format!("/v1/executions/{unknown}:cancel")))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    // An action takes POST whatever the method, DELETE too (it used to read the
    // segment as an id and answer 404).
    let (status, _, body) = server
        .call(server.request(Method::DELETE, &format!("/v1/executions/{unknown}:cancel")))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn list_filters_by_function_status_trigger_and_time() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("ok", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function("bad", "sh -c 'exit 3'", json!({})))
        .await;
    let mut made = Vec::new();
    for name in ["ok", "bad", "ok"] {
        let (_, body) = server.invoke(name, json!(null)).await;
        made.push(body["executionId"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, all) = server.list_executions(&[]).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["nextCursor"], Value::Null);

    let (_, list) = server.list_executions(&[("function", "ok")]).await;
    assert_eq!(ids(&list), [made[2].clone(), made[0].clone()]);
    let (_, list) = server.list_executions(&[("function", "")]).await;
    assert_eq!(ids(&list).len(), 3, "an empty filter is no filter");
    let (_, list) = server.list_executions(&[("function", "nobody")]).await;
    assert_eq!(ids(&list), Vec::<String>::new());
    let (_, list) = server.list_executions(&[("status", "error")]).await;
    assert_eq!(ids(&list), [made[1].clone()]);
    assert_eq!(list["executions"][0]["error"]["code"], "FUNCTION_ERROR");
    let (_, list) = server.list_executions(&[("status", "success,error")]).await;
    assert_eq!(ids(&list).len(), 3);
    let (_, list) = server
        .list_executions(&[("status", " timeout , success "), ("function", "ok")])
        .await;
    assert_eq!(ids(&list).len(), 2);
    let (_, list) = server.list_executions(&[("trigger", "api")]).await;
    assert_eq!(ids(&list), newest_first);
    let (_, list) = server
        .list_executions(&[("trigger", "chain,schedule")])
        .await;
    assert_eq!(ids(&list), Vec::<String>::new());
    let (_, list) = server
        .list_executions(&[("trigger", "event, api"), ("status", "error")])
        .await;
    assert_eq!(ids(&list), [made[1].clone()]);
    let repeated = vec!["api"; 2_000].join(",");
    let (status, list) = server.list_executions(&[("trigger", &repeated)]).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(ids(&list), newest_first);

    let second = server.execution(&made[1]).await;
    let created = second["createdAt"].as_str().unwrap().to_owned();
    let created_ms = DateTime::parse_from_rfc3339(&created)
        .unwrap()
        .timestamp_millis()
        .to_string();
    for since in [&created, &created_ms] {
        let (status, list) = server.list_executions(&[("since", since)]).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(
            ids(&list),
            [made[2].clone(), made[1].clone()],
            "since {since}"
        );
        let (_, list) = server.list_executions(&[("until", since)]).await;
        assert_eq!(ids(&list), [made[0].clone()], "until {since}");
    }
    let (_, list) = server
        .list_executions(&[("since", "2000-01-01T00:00:00+02:00"), ("until", &created)])
        .await;
    assert_eq!(ids(&list), [made[0].clone()]);

    let bad: [(&str, &str, &str); 7] = [
        (
            "status",
            "bogus",
            "unknown status \"bogus\"; use queued, starting, running, success, error, timeout or cancelled",
        ),
        ("status", "success,done", "unknown status \"done\""),
        (
            "trigger",
            "api,cron",
            "unknown trigger \"cron\"; use api, event, chain, retry or schedule",
        ),
        ("since", "yesterday", "since must be an RFC 3339 time"),
        ("until", "2026-13-01", "until must be an RFC 3339 time"),
        ("limit", "0", "limit must be between 1 and 1000"),
        ("limit", "1001", "limit must be between 1 and 1000"),
    ];
    for (key, value, words) in bad {
        let (status, body) = server.list_executions(&[(key, value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}={value}: {body}");
        assert_eq!(error_code(&body), "BAD_REQUEST");
        assert!(
            error_message(&body).contains(words),
            "{key}={value}: {body}"
        );
    }
    for (key, value) in [("limit", "many"), ("cursor", "not-a-cursor")] {
        let (status, body) = server.list_executions(&[(key, value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}={value}: {body}");
    }
    server.assert_no_instances().await;
}

#[tokio::test]
async fn cursor_paging_visits_every_execution_once() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let mut made = Vec::new();
    for n in 0..7 {
        made.push(server.enqueue("echo", json!({"n": n})).await);
    }
    for id in &made {
        server.wait_terminal(id, WAIT).await;
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "3".to_owned()), ("function", "echo".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = server.list_executions(&query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page_ids = ids(&page);
        sizes.push(page_ids.len());
        seen.extend(page_ids);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end: {sizes:?}");
    }
    assert_eq!(sizes, [3, 3, 1]);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 7, "no duplicates: {seen:?}");
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn cancel_a_running_execution_kills_its_instance() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("slow", "sleep 30", json!({})))
        .await;
    let id = server.enqueue("slow", json!(null)).await;
    let running = server.wait_status(&id, "running", WAIT).await;
    assert!(running["instanceId"]
        .as_str()
        .is_some_and(|i| i.starts_with("process-")));
    assert!(!server.instance_processes().is_empty());

    let (status, body) = cancel(&server, &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["error"]["code"], "CANCELLED");
    assert!(body["finishedAt"].is_string(), "{body}");
    server.assert_no_instances().await;
    assert_eq!(server.execution(&id).await["status"], "cancelled");

    let (status, body) = cancel(&server, &id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "ALREADY_FINISHED");
    assert!(error_message(&body).contains("cancelled"), "{body}");
}

#[tokio::test]
async fn a_sync_caller_learns_its_execution_was_cancelled() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("slow", "sleep 30", json!({})))
        .await;
    let canceller = async {
        let id = loop {
            let (_, list) = server.list_executions(&[("status", "running")]).await;
            if let Some(id) = ids(&list).first() {
                break id.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let (status, body) = cancel(&server, &id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    };
    let ((status, body), id) = tokio::join!(server.invoke("slow", json!(null)), canceller);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["executionId"], id);
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["error"]["code"], "CANCELLED");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn cancel_a_queued_execution_before_it_runs() {
    let server = Server::start().await;
    let dir = support::function_tempdir();
    let runs = dir.path().join("runs.txt");
    server
        .deploy(stdio_function(
            "one-at-a-time",
            "sh -c 'echo \"$EXECUTION_ID\" >> \"$COUNT_FILE\"; sleep 30'",
            json!({
                "env": {"COUNT_FILE": runs.to_str().unwrap()},
                "concurrency": {"max_in_flight": 1},
            }),
        ))
        .await;
    let first = server.enqueue("one-at-a-time", json!(1)).await;
    wait_ran(&runs, &first).await;
    let second = server.enqueue("one-at-a-time", json!(2)).await;
    assert_eq!(server.execution(&second).await["status"], "queued");

    let (status, body) = cancel(&server, &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["error"]["code"], "CANCELLED");
    assert_eq!(body["startedAt"], Value::Null);
    let (status, body) = cancel(&server, &second).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Freeing the slot must not start the cancelled one; a new one takes it.
    let (status, body) = cancel(&server, &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = server.enqueue("one-at-a-time", json!(3)).await;
    wait_ran(&runs, &third).await;
    let (status, _) = cancel(&server, &third).await;
    assert_eq!(status, StatusCode::OK);
    server.assert_no_instances().await;

    let record = server.execution(&second).await;
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["startedAt"], Value::Null);
    assert_eq!(record["instanceId"], Value::Null);
    assert!(server.log_lines(&second).await.is_empty());
    let metrics = server.metrics_text().await;
    for series in [
        r#"gantry_invocations_total{function="one-at-a-time",status="cancelled"} 3"#,
        r#"gantry_queue_depth{function="one-at-a-time"} 0"#,
        r#"gantry_in_flight{function="one-at-a-time"} 0"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    let ran = std::fs::read_to_string(&runs).unwrap();
    let ran: Vec<&str> = ran.lines().collect();
    assert_eq!(ran, [first.as_str(), third.as_str()], "only the others ran");
}

#[tokio::test]
async fn cancel_a_finished_execution_is_a_conflict() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let (status, body) = server.invoke("echo", json!("done")).await;
    assert_eq!(status, StatusCode::OK);
    let id = body["executionId"].as_str().unwrap();
    let (status, body) = cancel(&server, id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "ALREADY_FINISHED");
    assert!(error_message(&body).contains("success"), "{body}");
    let record = server.execution(id).await;
    assert_eq!(record["status"], "success");
    assert_eq!(record["output"], json!({"echo": "done"}));
    server.assert_no_instances().await;
}
