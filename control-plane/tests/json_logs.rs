//! `gantry serve --log-format json`: every line the server writes on stderr is one JSON
//! object, and a line about an execution names it and its trace in its span.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{stdio_function, Server, ServerOptions};

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_execution_and_its_trace() {
    let server = Server::start_with(ServerOptions {
        token: Some("json-logs-token".into()),
        args: vec!["--log-format".into(), "json".into()],
        ..ServerOptions::default()
    })
    .await;
    // Fails once, then succeeds: the retry is logged while the execution is handled.
    let temp = support::function_tempdir();
    let marker = temp.path().join("failed-once");
    server
        .deploy(stdio_function(
            "flaky",
            r#"sh -c 'if [ -e "$MARKER" ]; then cat; else touch "$MARKER"; exit 3; fi'"#,
            json!({
                "env": {"MARKER": marker.to_str().unwrap()},
                "retry": {"max_attempts": 2, "initial_backoff_ms": 10},
            }),
        ))
        .await;
    let request = server
        .request(Method::POST, "/v1/functions/flaky:invoke")
        .header("X-Trace-Id", "trace-of-the-flaky-call")
        .json(&json!({"n": 1}));
    let (status, _, body) = server.call(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["executionId"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(10);
    let retry_line = loop {
        let log = server.stderr();
        let lines: Vec<Value> = log
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
            })
            .collect();
        assert!(
            lines.iter().any(|line| line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("listening on http://"))),
            "the start-up lines are log records too:\n{log}"
        );
        let found = lines.into_iter().find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("retrying in"))
        });
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no retry line in:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retry_line["span"]["name"], "execution", "{retry_line}");
    assert_eq!(retry_line["span"]["id"], id.as_str(), "{retry_line}");
    assert_eq!(
        retry_line["span"]["trace_id"], "trace-of-the-flaky-call",
        "{retry_line}"
    );
    assert_eq!(retry_line["level"], "INFO", "{retry_line}");
}
