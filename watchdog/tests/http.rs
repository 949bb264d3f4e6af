//! One-shot HTTP mode with real Python runtimes: readiness, the request, every error
//! code, and the runtime stopped afterwards.

mod support;

use serde_json::json;
use support::callback::CallbackServer;
use support::{assert_failed, example, fixture, free_port, watchdog, Watchdog};

/// A watchdog running the test runtime on a free port.
fn http_watchdog(runtime: &str) -> Watchdog {
    watchdog("HTTP", &format!("python3 {runtime}")).env(
        "RUNTIME_URL",
        format!("http://127.0.0.1:{}/invoke", free_port()),
    )
}

#[tokio::test]
async fn python_example_is_started_called_once_and_stopped() {
    let callback = CallbackServer::start().await;
    let finished = http_watchdog(&example("python-http/app.py"))
        .env("EXECUTION_ID", "http-1")
        .env("CALLBACK_URL", &callback.url)
        .env("CALLBACK_TOKEN", "t")
        .env("INVOCATION_PAYLOAD", r#"{"input": "hello"}"#)
        .run() // fails if the runtime outlives the watchdog
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let call = &callback.wait_for(1).await[0];
    assert_eq!(call.path, "/v1/internal/executions/http-1:complete");
    assert_eq!(call.body["output"], json!({"result": "HELLO"}));
}

#[tokio::test]
async fn the_runtime_gets_port_execution_id_and_trace_id() {
    let port = free_port();
    let finished = watchdog("HTTP", &format!("python3 {}", fixture("runtime.py")))
        .env("RUNTIME_URL", format!("http://127.0.0.1:{port}/invoke"))
        .env("EXECUTION_ID", "exec-7")
        .env("TRACE_ID", "trace-7")
        .env("INVOCATION_PAYLOAD", "[1, 2, 3]")
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let output = &finished.report()["output"];
    assert_eq!(output["echo"], json!([1, 2, 3]));
    assert_eq!(output["execution_id"], "exec-7");
    assert_eq!(output["trace_id"], "trace-7");
}

#[tokio::test]
async fn the_runtime_gets_the_trace_context_and_the_time_left() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let finished = http_watchdog(&fixture("runtime.py"))
        .env("TRACEPARENT", parent)
        .env("TRACESTATE", "a=1")
        .env("TIMEOUT_MS", "5000")
        .env("INVOCATION_PAYLOAD", "{}")
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let output = &finished.report()["output"];
    assert_eq!(output["traceparent"], parent);
    assert_eq!(output["tracestate"], "a=1");
    let left: u64 = output["timeout_ms"].as_str().unwrap().parse().unwrap();
    assert!((1..=5000).contains(&left), "{output}");
}

#[tokio::test]
async fn a_runtime_that_never_gets_healthy_is_startup_error() {
    let finished = http_watchdog(&fixture("runtime.py"))
        .env("NEVER_HEALTHY", "1")
        .env("READY_TIMEOUT_MS", "700")
        .run()
        .await;
    let report = finished.report();
    assert_failed(&report, "STARTUP_ERROR", &["READY_TIMEOUT_MS"]);
}

#[tokio::test]
async fn a_runtime_that_exits_before_it_is_ready_is_startup_error() {
    let finished = http_watchdog(&fixture("runtime.py"))
        .env("EXIT_AT_START", "7")
        .run()
        .await;
    let report = finished.report();
    assert_failed(&report, "STARTUP_ERROR", &["exit code 7"]);
}

#[tokio::test]
async fn a_runtime_that_dies_mid_request_is_runtime_crashed() {
    let finished = http_watchdog(&fixture("runtime.py"))
        .env("INVOCATION_PAYLOAD", r#"{"crash": true}"#)
        .run()
        .await;
    let report = finished.report();
    assert_failed(&report, "RUNTIME_CRASHED", &["exit code 3"]);
}

#[tokio::test]
async fn an_error_status_is_function_error_with_the_runtime_message() {
    let finished = http_watchdog(&fixture("runtime.py"))
        .env(
            "INVOCATION_PAYLOAD",
            r#"{"status": 500, "error": "database unavailable"}"#,
        )
        .run()
        .await;
    let report = finished.report();
    assert_eq!(report["error"]["code"], "FUNCTION_ERROR");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("500") && message.contains("database unavailable"),
        "{message}"
    );
}

#[tokio::test]
async fn a_slow_runtime_is_timeout_and_is_stopped() {
    let finished = http_watchdog(&fixture("runtime.py"))
        .env("TIMEOUT_MS", "300")
        .env("INVOCATION_PAYLOAD", r#"{"sleep": 30}"#)
        .run()
        .await;
    assert_eq!(finished.error_code().as_deref(), Some("TIMEOUT"));
}

#[tokio::test]
async fn a_response_past_max_output_bytes_is_output_too_large() {
    let finished = http_watchdog(&fixture("runtime.py"))
        .env("MAX_OUTPUT_BYTES", "10000")
        .env("INVOCATION_PAYLOAD", r#"{"big": 50000}"#)
        .run()
        .await;
    assert_eq!(finished.error_code().as_deref(), Some("OUTPUT_TOO_LARGE"));
}

#[tokio::test]
async fn a_non_json_or_empty_response_is_invalid_output() {
    for payload in [r#"{"raw": "plain text"}"#, r#"{"empty": true}"#] {
        let finished = http_watchdog(&fixture("runtime.py"))
            .env("INVOCATION_PAYLOAD", payload)
            .run()
            .await;
        assert_eq!(
            finished.error_code().as_deref(),
            Some("INVALID_OUTPUT"),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn a_runtime_command_that_cannot_start_is_spawn_error() {
    let finished = watchdog("HTTP", "/no/such/server --port 1").run().await;
    assert_eq!(finished.error_code().as_deref(), Some("SPAWN_ERROR"));
}
