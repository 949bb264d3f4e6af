//! Invocations in every one-shot mode the process runtime runs (HTTP, the default, FILE
//! and STDIO with a command given as a list), and idempotency under concurrent calls.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{counting_function, stdio_function, Server};

fn function(name: &str, extra: Value) -> Value {
    let default_mode = extra.get("mode").is_none();
    let mut manifest = stdio_function(name, "unused", extra);
    if default_mode {
        // No mode: the default, HTTP.
        manifest.as_object_mut().unwrap().remove("mode");
    }
    manifest
}

#[tokio::test]
async fn an_http_function_is_the_default_mode() {
    let server = Server::start().await;
    let created = server
        .deploy(function("web", json!({"command": "python3 http_echo.py"})))
        .await;
    assert_eq!(created["spec"]["mode"], "HTTP");
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/web:invoke")
                .header("X-Trace-Id", "web-trace")
                .json(&json!({"q": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["echo"], json!({"q": "hi"}));
    assert_eq!(body["output"]["trace"], "web-trace");
    assert_eq!(body["output"]["execution"], body["executionId"]);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_file_function_and_a_command_list() {
    let server = Server::start().await;
    server
        .deploy(function(
            "files",
            json!({"mode": "FILE", "command": ["python3", "file_echo.py"]}),
        ))
        .await;
    let (status, body) = server.invoke("files", json!([1, "two"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"echo": [1, "two"]}));

    // A list keeps an argument with spaces whole.
    server
        .deploy(function(
            "spaced",
            json!({"mode": "STDIO", "command": ["sh", "-c", "cat >/dev/null; echo '{\"a b\": 1}'"]}),
        ))
        .await;
    let (status, body) = server.invoke("spaced", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"a b": 1}));
    server.assert_no_instances().await;
}

#[tokio::test]
async fn concurrent_calls_with_one_idempotency_key_run_once() {
    let server = Server::start().await;
    let dir = support::function_tempdir();
    let count_file = dir.path().join("runs.txt");
    server.deploy(counting_function("count", &count_file)).await;
    let call = |key: &'static str| {
        server.call(
            server
                .request(Method::POST, "/v1/functions/count:invoke")
                .header("Idempotency-Key", key)
                .json(&json!({"key": key})),
        )
    };
    let answers = futures_util::future::join_all((0..6).map(|_| call("same"))).await;
    let mut ids = Vec::new();
    for (status, headers, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["output"]["runs"], 1, "{body}");
        assert_eq!(
            headers["x-execution-id"].to_str().unwrap(),
            body["executionId"]
        );
        ids.push(body["executionId"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one execution for one key: {ids:?}");

    // Keys are per function: the same key on another function is another execution.
    server
        .deploy(counting_function("count-too", &count_file))
        .await;
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/count-too:invoke")
                .header("Idempotency-Key", "same")
                .json(&json!(null)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["executionId"].as_str().unwrap(), ids[0]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let runs = std::fs::read_to_string(&count_file).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}");
    server.assert_no_instances().await;
}
