//! `/healthz`, `/readyz` and the Prometheus text on `/metrics`.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{stdio_function, Server};

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn health_and_readiness_answer_after_start() {
    let server = Server::start().await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = server.get_open(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body, json!({"status": status}), "{path}");
    }
}

#[tokio::test]
async fn metrics_count_invocations_durations_and_load() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function("fails", "sh -c 'exit 1'", json!({})))
        .await;
    for n in 0..3 {
        let (status, _) = server.invoke("echo", json!(n)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = server.invoke("fails", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // Refused calls are not invocations.
    let (status, _) = server.invoke("nobody", json!(null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let response = server
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let metrics = response.text().await.unwrap();
    for (series, value) in [
        (
            r#"gantry_invocations_total{function="echo",status="success"}"#,
            3.0,
        ),
        (
            r#"gantry_invocations_total{function="fails",status="error"}"#,
            1.0,
        ),
        (
            r#"gantry_execution_duration_seconds_count{function="echo",outcome="success"}"#,
            3.0,
        ),
        (
            r#"gantry_execution_duration_seconds_count{function="fails",outcome="error"}"#,
            1.0,
        ),
        (
            r#"gantry_execution_queue_wait_seconds_count{function="echo",outcome="success"}"#,
            3.0,
        ),
        (
            r#"gantry_instance_start_seconds_count{function="echo",outcome="ready"}"#,
            3.0,
        ),
        (r#"gantry_queue_depth{function="echo"}"#, 0.0),
        (r#"gantry_in_flight{function="echo"}"#, 0.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(value),
            "{series} in:\n{metrics}"
        );
    }
    // Each bucket's exemplar names the trace of an execution that landed in it.
    assert!(
        metrics.lines().any(
            |line| line.starts_with("gantry_execution_duration_seconds_bucket{")
                && line.contains(r#" # {trace_id=""#)
        ),
        "{metrics}"
    );
    assert!(sample(
        &metrics,
        r#"gantry_invocations_total{function="echo",status="error"}"#
    )
    .is_none());
    assert!(!metrics.contains("nobody"), "{metrics}");
    assert!(
        metrics.contains("# TYPE gantry_execution_duration_seconds histogram"),
        "{metrics}"
    );
    let sum = sample(
        &metrics,
        r#"gantry_execution_duration_seconds_sum{function="echo",outcome="success"}"#,
    )
    .expect("a duration sum");
    assert!(sum > 0.0, "{metrics}");
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    server.assert_no_instances().await;
}
