//! Execution lifecycle on the process runtime with the real watchdog: a watchdog that
//! dies, function timeouts (with a grandchild that ignores SIGTERM), concurrent HTTP- and
//! FILE-mode executions, a command that cannot start, and cancel. After each, no process
//! of the function survives.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use support::{assert_error, examples_dir, sigkill, stdio_function, Server};

/// Generous bound for anything that should take a few seconds on a loaded machine.
const LONG: Duration = Duration::from_secs(60);

/// A function of `examples/{dir}` in `mode` running `command`.
fn example_function(name: &str, mode: &str, dir: &str, command: &str) -> Value {
    json!({
        "name": name,
        "mode": mode,
        "command": command,
        "working_dir": examples_dir().join(dir).display().to_string(),
    })
}

#[tokio::test]
async fn a_killed_watchdog_fails_the_execution_and_its_function_is_stopped() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("sleepy", "sleep 120", json!({})))
        .await;
    let id = server.enqueue("sleepy", json!(null)).await;
    server.wait_status(&id, "running", LONG).await;
    let processes = server.wait_process(&id, "sleep", LONG).await;
    let watchdog = processes
        .iter()
        .find(|(_, cmdline)| cmdline.contains("watchdog"))
        .map(|(pid, _)| *pid)
        .unwrap_or_else(|| panic!("no watchdog among {processes:?}"));

    let killed = Instant::now();
    sigkill(watchdog);
    let execution = server.wait_terminal(&id, LONG).await;
    // Well before the control plane's own deadline (30 s timeout + grace).
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "noticed after {:?}",
        killed.elapsed()
    );
    let message = assert_error(&execution, "error", "RUNTIME_CRASHED");
    assert!(message.contains("signal 9"), "{message}");
    // The function ran in a process group of its own, which the watchdog can no longer
    // stop: the control plane does.
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_function_timeout_kills_the_whole_group() {
    let server = Server::start().await;
    let timeout = json!({ "resources": { "timeout_ms": 300 } });
    server
        .deploy(stdio_function("sleeps", "sleep 10", timeout.clone()))
        .await;
    // The grandchild and the shell both ignore SIGTERM: only SIGKILL stops them.
    server
        .deploy(stdio_function(
            "stubborn",
            r#"sh -c 'trap "" TERM; sleep 60 & sleep 60'"#,
            timeout,
        ))
        .await;
    for name in ["sleeps", "stubborn"] {
        let started = Instant::now();
        let (status, body) = server.invoke(name, json!({})).await;
        assert_eq!(status, 504, "{name}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} took {:?}",
            started.elapsed()
        );
        let id = body["executionId"].as_str().expect("executionId");
        let execution = server.execution(id).await;
        assert_eq!(execution["status"], "timeout", "{execution}");
        assert_eq!(execution["error"]["code"], "TIMEOUT", "{execution}");
        server.assert_no_instances().await;
    }
}

#[tokio::test]
async fn concurrent_http_and_file_executions_get_their_own_results() {
    let server = Server::start().await;
    server
        .deploy(example_function(
            "upper",
            "HTTP",
            "python-http",
            "python3 app.py",
        ))
        .await;
    server
        .deploy(example_function(
            "size",
            "FILE",
            "shell-file",
            "sh handler.sh",
        ))
        .await;
    let http = (0..5).map(|n| server.invoke("upper", json!({ "input": format!("call {n}") })));
    let file = (0..5).map(|n| server.invoke("size", json!({ "n": n, "pad": "x".repeat(n) })));
    let (http, file) = tokio::join!(join_all(http), join_all(file));
    for (n, (status, body)) in http.into_iter().enumerate() {
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["output"],
            json!({ "result": format!("CALL {n}") }),
            "{body}"
        );
    }
    for (n, (status, body)) in file.into_iter().enumerate() {
        assert_eq!(status, 200, "{body}");
        let input = json!({ "n": n, "pad": "x".repeat(n) });
        assert_eq!(body["output"]["received"], input, "{body}");
        // Each FILE execution reads its own scratch input, named after its id.
        let id = body["executionId"].as_str().expect("executionId");
        let lines = server.log_lines(id).await;
        let read = lines
            .iter()
            .filter_map(|line| line["line"].as_str())
            .find(|line| line.starts_with("read "))
            .unwrap_or_else(|| panic!("no `read` line in {lines:?}"));
        assert!(read.contains(id), "{read}");
        let bytes = body["output"]["bytes"].as_u64().expect("bytes");
        assert!(read.starts_with(&format!("read {bytes} bytes")), "{read}");
    }
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_a_spawn_error() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "missing",
            "gantry-no-such-command --flag",
            json!({}),
        ))
        .await;
    let (status, body) = server.invoke("missing", json!({})).await;
    assert_eq!(status, 502, "{body}");
    let execution = server
        .execution(body["executionId"].as_str().expect("executionId"))
        .await;
    let message = assert_error(&execution, "error", "SPAWN_ERROR");
    assert!(message.contains("gantry-no-such-command"), "{message}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn cancel_stops_a_running_instance() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("sleepy", "sleep 120", json!({})))
        .await;
    let id = server.enqueue("sleepy", json!(null)).await;
    server.wait_status(&id, "running", LONG).await;
    server.wait_process(&id, "sleep", LONG).await;
    let (status, _, body) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{id}:cancel")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(body["error"]["code"], "CANCELLED", "{body}");
    server.assert_no_instances().await;
    // A late report cannot change a terminal record.
    assert_eq!(server.execution(&id).await["status"], "cancelled");
}
