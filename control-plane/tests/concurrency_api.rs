//! Per-function admission: `max_in_flight` executions run, `max_queue` wait, and past
//! that the caller gets 429 QUEUE_FULL with `Retry-After`.

mod support;

use std::time::Duration;

use chrono::DateTime;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{error_code, error_message, stdio_function, Server};

const WAIT: Duration = Duration::from_secs(60);

fn time(execution: &serde_json::Value, field: &str) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(execution[field].as_str().expect(field)).expect(field)
}

#[tokio::test]
async fn one_in_flight_one_queued_then_429_and_never_overlapping() {
    let server = Server::start().await;
    let dir = support::function_tempdir();
    let marks = dir.path().join("marks.txt");
    server
        .deploy(stdio_function(
            "single",
            "python3 mark.py 3",
            json!({
                "env": {"MARK_FILE": marks.to_str().unwrap()},
                "concurrency": {"max_in_flight": 1, "max_queue": 1},
            }),
        ))
        .await;
    let first = server.enqueue("single", json!(1)).await;
    server.wait_status(&first, "running", WAIT).await;
    let second = server.enqueue("single", json!(2)).await;
    assert_eq!(server.execution(&second).await["status"], "queued");

    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"gantry_queue_depth{function="single"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gantry_in_flight{function="single"} 1"#),
        "{metrics}"
    );

    for action in ["enqueue", "invoke"] {
        let (status, headers, body) = server
            .call(
                server
                    .request(Method::POST, &format!("/v1/functions/single:{action}"))
                    .json(&json!(3)),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{action}: {body}");
        assert_eq!(error_code(&body), "QUEUE_FULL");
        assert!(error_message(&body).contains("max_queue"), "{body}");
        let retry_after = headers
            .get("retry-after")
            .expect("429 carries Retry-After")
            .to_str()
            .unwrap();
        assert!(
            retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
            "{retry_after}"
        );
    }
    let (_, list) = server.list_executions(&[("function", "single")]).await;
    assert_eq!(
        list["executions"].as_array().unwrap().len(),
        2,
        "refused calls are not stored"
    );

    let a = server.wait_terminal(&first, WAIT).await;
    let b = server.wait_terminal(&second, WAIT).await;
    assert_eq!(a["status"], "success", "{a}");
    assert_eq!(b["status"], "success", "{b}");
    assert!(time(&b, "startedAt") >= time(&a, "finishedAt"), "{a}\n{b}");
    let marks = std::fs::read_to_string(&marks).unwrap();
    let expected = format!("start {first}\nend {first}\nstart {second}\nend {second}\n");
    assert_eq!(marks, expected, "the two ran one after the other");

    // Room again: the next one is accepted.
    let third = server.enqueue("single", json!(3)).await;
    assert_eq!(
        server.wait_terminal(&third, WAIT).await["status"],
        "success"
    );
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_zero_queue_refuses_as_soon_as_every_slot_is_busy() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "busy",
            "sleep 30",
            json!({"concurrency": {"max_in_flight": 2, "max_queue": 0}}),
        ))
        .await;
    let a = server.enqueue("busy", json!(null)).await;
    let b = server.enqueue("busy", json!(null)).await;
    let (status, headers, body) = server
        .call(server.request(Method::POST, "/v1/functions/busy:enqueue"))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    // Limits are per function: another function still runs.
    server
        .deploy(stdio_function("other", "python3 echo.py", json!({})))
        .await;
    let (status, body) = server.invoke("other", json!("free")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for id in [&a, &b] {
        server.wait_status(id, "running", WAIT).await;
        let (status, _, body) = server
            .call(server.request(Method::POST, &format!("/v1/executions/{id}:cancel")))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Cancelled runs free their slots.
    let c = server.enqueue("busy", json!(null)).await;
    server.wait_status(&c, "running", WAIT).await;
    let (status, _, _) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{c}:cancel")))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.assert_no_instances().await;
    let metrics = server.metrics_text().await;
    for series in [
        r#"gantry_invocations_total{function="busy",status="cancelled"} 3"#,
        r#"gantry_in_flight{function="busy"} 0"#,
        r#"gantry_queue_depth{function="busy"} 0"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}
