//! One-shot STDIO mode with real Python, Node and shell functions: results, every error
//! code, timeouts that take the whole process group down, bounded output.

mod support;

use std::time::Duration;

use serde_json::json;
use support::callback::CallbackServer;
use support::{assert_failed, example, watchdog};

#[tokio::test]
async fn python_example_reports_to_the_callback_with_token_and_trace() {
    let callback = CallbackServer::start().await;
    let finished = watchdog(
        "STDIO",
        &format!("python3 {}", example("python-stdio/handler.py")),
    )
    .env("EXECUTION_ID", "exec-1")
    .env("CALLBACK_URL", &callback.url)
    .env("CALLBACK_TOKEN", "secret-token")
    .env("TRACE_ID", "trace-9")
    .env("INVOCATION_PAYLOAD", r#"{"input": "hello"}"#)
    .run()
    .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let received = callback.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let call = &received[0];
    assert_eq!(call.path, "/v1/internal/executions/exec-1:complete");
    assert_eq!(call.authorization.as_deref(), Some("Bearer secret-token"));
    assert_eq!(call.trace_id.as_deref(), Some("trace-9"));
    assert_eq!(call.body["success"], true);
    assert_eq!(call.body["output"], json!({"output": "HELLO"}));
    assert_eq!(call.body["error"], serde_json::Value::Null);
    assert_eq!(call.body["exit_code"], 0);
    assert!(call.body["duration_ms"].is_u64());
    // The function's stderr is forwarded line by line.
    assert!(
        finished
            .stderr
            .contains("handling execution with input 'hello'\n"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn node_example_prints_the_result_without_a_callback() {
    let finished = watchdog(
        "STDIO",
        &format!("node {}", example("node-stdio/handler.js")),
    )
    .env("INVOCATION_PAYLOAD", r#"{"input": "hello"}"#)
    .run()
    .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let report = finished.report();
    assert_eq!(
        report["output"],
        json!({"output": "HELLO", "runtime": "node"})
    );
    assert!(
        finished.stderr.contains("handling input of 5 characters"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn the_last_line_is_the_result_and_earlier_lines_are_forwarded_as_logs() {
    let callback = CallbackServer::start().await;
    let script =
        r#"import json; print("step 1"); print("step 2"); print(json.dumps({"ok": True}))"#;
    let finished = watchdog("STDIO", &format!("python3 -c '{script}'"))
        .env("EXECUTION_ID", "e")
        .env("CALLBACK_URL", &callback.url)
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    assert_eq!(
        callback.wait_for(1).await[0].body["output"],
        json!({"ok": true})
    );
    assert!(
        finished.stdout.contains("step 1\nstep 2\n"),
        "{}",
        finished.stdout
    );
}

#[tokio::test]
async fn the_payload_arrives_on_stdin_unchanged_and_execution_id_is_in_the_env() {
    let finished = watchdog(
        "STDIO",
        r#"sh -c 'printf "{\"id\": \"%s\", \"in\": %s}" "$EXECUTION_ID" "$(cat)"'"#,
    )
    .env("EXECUTION_ID", "abc")
    .env("INVOCATION_PAYLOAD", r#"{"list": [1, 2, {"deep": "x y"}]}"#)
    .run()
    .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    assert_eq!(
        finished.report()["output"],
        json!({"id": "abc", "in": {"list": [1, 2, {"deep": "x y"}]}})
    );
}

#[tokio::test]
async fn output_that_is_not_json_is_invalid_output() {
    let finished = watchdog("STDIO", "echo hello world").run().await;
    assert_eq!(finished.code, 1);
    assert_eq!(finished.error_code().as_deref(), Some("INVALID_OUTPUT"));
    let finished = watchdog("STDIO", "true").run().await;
    assert_eq!(finished.error_code().as_deref(), Some("INVALID_OUTPUT"));
}

#[tokio::test]
async fn a_non_zero_exit_is_function_error_with_the_last_stderr_line() {
    let finished = watchdog(
        "STDIO",
        "sh -c 'echo starting >&2; echo ValueError: bad input >&2; exit 3'",
    )
    .run()
    .await;
    assert_eq!(finished.code, 1);
    let report = finished.report();
    assert_eq!(report["error"]["code"], "FUNCTION_ERROR");
    assert_eq!(report["exit_code"], 3);
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exit code 3") && message.contains("ValueError: bad input"),
        "{message}"
    );
    assert!(
        finished
            .stderr
            .contains("starting\nValueError: bad input\n"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn death_by_signal_is_runtime_crashed() {
    let finished = watchdog("STDIO", "sh -c 'kill -KILL $$'").run().await;
    let report = finished.report();
    assert_failed(&report, "RUNTIME_CRASHED", &["SIGKILL"]);
}

#[tokio::test]
async fn a_command_that_cannot_start_is_spawn_error() {
    let finished = watchdog("STDIO", "/no/such/program --flag").run().await;
    assert_eq!(finished.code, 1);
    let report = finished.report();
    assert_failed(&report, "SPAWN_ERROR", &["/no/such/program"]);
}

#[tokio::test]
async fn timeout_stops_the_child_and_its_grandchildren() {
    let finished = watchdog("STDIO", "sh -c 'sleep 300 & sleep 300'")
        .env("TIMEOUT_MS", "300")
        .run() // run() fails the test if any `sleep 300` survives
        .await;
    assert_eq!(finished.code, 1);
    let report = finished.report();
    assert_failed(&report, "TIMEOUT", &["300 ms"]);
}

#[tokio::test]
async fn processes_that_ignore_sigterm_get_sigkill_after_the_grace_period() {
    let finished = watchdog("STDIO", r#"sh -c "trap '' TERM; sleep 300 & sleep 300""#)
        .env("TIMEOUT_MS", "200")
        .env("KILL_GRACE_MS", "300")
        .run()
        .await;
    assert_eq!(finished.error_code().as_deref(), Some("TIMEOUT"));
    // SIGKILL comes only after the grace period, not before.
    assert!(
        finished.elapsed >= Duration::from_millis(500),
        "{:?}",
        finished.elapsed
    );
}

#[tokio::test]
async fn background_processes_left_after_the_function_exits_are_stopped() {
    // The result must not wait for the background `sleep` (it holds stdout open).
    let finished = watchdog("STDIO", r#"sh -c 'sleep 300 & echo "{\"done\": true}"'"#)
        .env("TIMEOUT_MS", "20000")
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    assert_eq!(finished.report()["output"], json!({"done": true}));
}

#[tokio::test]
async fn output_past_max_output_bytes_is_output_too_large_and_stops_the_writer() {
    let finished = watchdog("STDIO", "yes")
        .env("MAX_OUTPUT_BYTES", "10000")
        .run()
        .await;
    assert_eq!(finished.error_code().as_deref(), Some("OUTPUT_TOO_LARGE"));
    // Exactly at the limit is fine: `{"s":"xxx..."}` of 1000 bytes with MAX_OUTPUT_BYTES=1000.
    let exact = r#"sh -c 'printf "{\"s\":\"%s\"}" $(head -c 992 /dev/zero | tr "\0" x)'"#;
    let finished = watchdog("STDIO", exact)
        .env("MAX_OUTPUT_BYTES", "1000")
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
}

#[tokio::test]
async fn a_payload_that_is_not_json_is_invalid_input_reported_to_the_callback() {
    let callback = CallbackServer::start().await;
    let finished = watchdog("STDIO", "cat")
        .env("EXECUTION_ID", "bad-input")
        .env("CALLBACK_URL", &callback.url)
        .env("INVOCATION_PAYLOAD", "{oops")
        .run()
        .await;
    assert_eq!(finished.code, 1);
    let body = &callback.wait_for(1).await[0].body;
    assert_failed(body, "INVALID_INPUT", &["INVOCATION_PAYLOAD"]);
}

#[tokio::test]
async fn a_large_payload_comes_from_payload_url_with_the_token() {
    let callback = CallbackServer::start().await;
    // 2 MB: far past what fits in one environment variable.
    let items: Vec<String> = (0..200_000).map(|i| format!("item-{i}")).collect();
    let payload = serde_json::to_vec(&json!({"items": items})).unwrap();
    assert!(payload.len() > 2_000_000);
    let url = callback.serve_payload("big", "tok-1", payload.clone());
    let finished = watchdog("STDIO", "cat")
        .env("EXECUTION_ID", "big")
        .env("CALLBACK_URL", &callback.url)
        .env("CALLBACK_TOKEN", "tok-1")
        .env("PAYLOAD_URL", &url)
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let body = &callback.wait_for(1).await[0].body;
    assert_eq!(
        body["success"],
        true,
        "{}",
        support::clip(&body.to_string())
    );
    assert_eq!(body["output"]["items"].as_array().unwrap().len(), 200_000);
    assert_eq!(body["output"]["items"][199_999], "item-199999");
    assert_eq!(
        callback.payload_requests(),
        [Some("Bearer tok-1".to_owned())]
    );
}

#[tokio::test]
async fn a_payload_url_that_fails_is_invalid_input() {
    let callback = CallbackServer::start().await;
    let url = callback.serve_payload("p", "right-token", &b"{}"[..]);
    let finished = watchdog("STDIO", "cat")
        .env("EXECUTION_ID", "p")
        .env("CALLBACK_URL", &callback.url)
        .env("CALLBACK_TOKEN", "wrong-token")
        .env("PAYLOAD_URL", &url)
        .run()
        .await;
    assert_eq!(finished.code, 1);
    let body = &callback.wait_for(1).await[0].body;
    assert_failed(body, "INVALID_INPUT", &["401"]);
}
