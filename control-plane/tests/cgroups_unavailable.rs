//! The process runtime where cgroups are not available (forced with
//! `GANTRY_TEST_NO_CGROUPS=1`) or turned off (`--cgroups off`): the server says so at
//! start, deploy warns that the limits are not enforced, and functions still run.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{stdio_function, Server, ServerOptions};

fn warnings(deployed: &serde_json::Value) -> Vec<String> {
    deployed["warnings"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|w| w.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn check_without_cgroups(server: &Server, reason: &str) {
    let log = server.stderr();
    assert!(
        log.contains("process runtime without cgroups") && log.contains(reason),
        "{log}"
    );
    let listening = log
        .lines()
        .find(|line| line.contains("listening on"))
        .unwrap();
    assert!(listening.contains("no cgroups"), "{listening}");
    let deployed = server
        .deploy(stdio_function(
            "limited",
            "python3 echo.py",
            json!({"resources": {"memory_mb": 64, "cpu": 0.5, "pids": 10}}),
        ))
        .await;
    let warnings = warnings(&deployed);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for (warning, field) in warnings.iter().zip(["memory_mb", "cpu", "pids"]) {
        assert!(
            warning.starts_with(&format!("resources.{field} is not enforced"))
                && warning.contains("without cgroups"),
            "{warnings:?}"
        );
    }
    let (status, body) = server.invoke("limited", json!({"a": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_host_without_cgroups_is_announced_and_limits_are_warned_about() {
    let server = Server::start_with(ServerOptions {
        env: vec![("GANTRY_TEST_NO_CGROUPS".into(), "1".into())],
        ..ServerOptions::default()
    })
    .await;
    check_without_cgroups(&server, "GANTRY_TEST_NO_CGROUPS").await;
}

#[tokio::test]
async fn cgroups_turned_off_are_announced_and_limits_are_warned_about() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--cgroups".into(), "off".into()],
        ..ServerOptions::default()
    })
    .await;
    check_without_cgroups(&server, "--cgroups off").await;
}
