//! A restart with a large backlog: the server is SIGKILLed while thousands of executions
//! wait and a few run, and started again. It serves calls while the backlog is still being
//! queued again, and in the end every execution has ended once: none lost, none run
//! twice.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{stdio_function, Server, ServerOptions};

/// Executions enqueued before the crash.
const BACKLOG: usize = 3_000;

/// Reads one series of `/metrics`.
async fn metric(server: &Server, series: &str) -> Option<f64> {
    let (_, _, body) = server.call(server.request(Method::GET, "/metrics")).await;
    body.as_str()?
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn a_restart_with_a_large_backlog_serves_at_once_and_runs_each_execution_once() {
    let mut server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    server
        .deploy(stdio_function(
            "backlog",
            r#"sh -c 'echo "$EXECUTION_ID" >> "$COUNT_FILE"; cat'"#,
            json!({
                "env": {"COUNT_FILE": runs.to_str().unwrap()},
                "concurrency": {"max_in_flight": 4, "max_queue": 100_000},
            }),
        ))
        .await;
    server
        .deploy(stdio_function("echo", "cat", json!({})))
        .await;
    let mut ids = Vec::with_capacity(BACKLOG);
    for chunk in 0..BACKLOG / 100 {
        let calls = (0..100).map(|n| server.enqueue("backlog", json!({"n": chunk * 100 + n})));
        ids.extend(join_all(calls).await);
    }
    server.kill9().await;
    let mut restarted = server.restart(ServerOptions::default()).await;
    let (status, _, body) = restarted
        .call(restarted.request(Method::GET, "/readyz"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, answer) = restarted.invoke("echo", json!({"ping": 1})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let waiting = metric(&restarted, "gantry_queue_depth{function=\"backlog\"}")
        .await
        .unwrap_or(0.0);
    let active = metric(&restarted, "gantry_recovery_active").await;
    assert!(
        waiting > 100.0 || active == Some(1.0),
        "the call was served while the backlog waited (queue depth {waiting}, recovery active {active:?})"
    );

    let ended: BTreeMap<String, String> = restarted
        .wait_all_terminal(&ids, Duration::from_secs(240))
        .await
        .into_iter()
        .map(|(id, record)| (id, record["status"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let counted = support::count_lines(&runs);
    let twice: Vec<_> = counted.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "executions that ran twice: {twice:?}");
    for (id, status) in &ended {
        if status == "success" {
            assert_eq!(counted.get(id), Some(&1), "{id} succeeded once");
        } else {
            // Only those running at the crash may have ended otherwise.
            let record = restarted.execution(id).await;
            assert_eq!(
                record["error"]["code"], "CONTROL_PLANE_RESTARTED",
                "{record}"
            );
        }
    }
    let failed = ended.values().filter(|status| *status != "success").count();
    assert!(failed <= 4, "at most max_in_flight were running: {failed}");
    restarted.stop().await;
}
