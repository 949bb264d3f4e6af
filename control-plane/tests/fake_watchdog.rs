//! The control plane's own safety nets, exercised with a fake watchdog
//! (`fixtures/fake-watchdog.sh`, started with `--watchdog`): one that hangs without
//! reporting and ignores SIGTERM (the control plane's deadline stops it), one that exits
//! 75 after printing its report on stdout (the report is used), and one that exits 3
//! without a report (RUNTIME_CRASHED).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{executable_fixture, stdio_function, Server, ServerOptions};

/// Generous bound for anything that should take a few seconds on a loaded machine.
const LONG: Duration = Duration::from_secs(60);

/// A server whose "watchdog" is the fake, and the directory holding the fake.
async fn server_with_fake_watchdog() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = executable_fixture("fake-watchdog.sh", dir.path());
    let server = Server::start_with(ServerOptions {
        args: vec!["--watchdog".into(), fake.display().to_string()],
        ..ServerOptions::default()
    })
    .await;
    (server, dir)
}

/// A function the fake watchdog treats per `mode` (its command is never run).
fn fake_function(name: &str, mode: &str, extra: Value) -> Value {
    let mut manifest = stdio_function(name, "true", json!({ "env": { "FAKE_MODE": mode } }));
    for (key, value) in extra.as_object().expect("extra is an object") {
        manifest[key] = value.clone();
    }
    manifest
}

#[tokio::test]
async fn a_hanging_watchdog_is_stopped_at_the_control_plane_deadline() {
    let (server, _dir) = server_with_fake_watchdog().await;
    server
        .deploy(fake_function(
            "hangs",
            "hang",
            json!({ "resources": { "timeout_ms": 500 } }),
        ))
        .await;
    let started = Instant::now();
    let id = server.enqueue("hangs", json!({})).await;
    server.wait_process(&id, "sleep", LONG).await;
    let execution = server.wait_terminal(&id, LONG).await;
    // timeout 0.5 s + the watchdog's kill grace 2 s + margin 1 s, then a 1 s stop grace.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(execution["status"], "timeout", "{execution}");
    assert_eq!(execution["error"]["code"], "TIMEOUT", "{execution}");
    // SIGTERM was ignored: the group was SIGKILLed, the fake and its `sleep` alike.
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_report_printed_before_exit_75_is_used() {
    let (server, _dir) = server_with_fake_watchdog().await;
    server
        .deploy(fake_function("prints", "report75", json!({})))
        .await;
    let (status, body) = server.invoke("prints", json!({ "n": 7 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({ "reported": { "n": 7 } }), "{body}");
    let execution = server
        .execution(body["executionId"].as_str().expect("executionId"))
        .await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["exitCode"], 0, "{execution}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn an_exit_without_a_report_is_a_runtime_crash() {
    let (server, _dir) = server_with_fake_watchdog().await;
    server
        .deploy(fake_function("fails", "exit3", json!({})))
        .await;
    let (status, body) = server.invoke("fails", json!({})).await;
    assert_eq!(status, 502, "{body}");
    let id = body["executionId"].as_str().expect("executionId");
    let execution = server.execution(id).await;
    assert_eq!(execution["status"], "error", "{execution}");
    assert_eq!(execution["error"]["code"], "RUNTIME_CRASHED", "{execution}");
    let message = execution["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("exit code 3"), "{message}");
    // What the fake wrote on stderr is the execution's log.
    let lines = server.log_lines(id).await;
    assert!(
        lines
            .iter()
            .any(|line| line["line"] == "fake watchdog: failing without a report"),
        "{lines:?}"
    );
    server.assert_no_instances().await;
}
