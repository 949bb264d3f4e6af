//! `gantry serve --runtime docker` against the real Docker engine (it must answer: these
//! tests fail, never skip, when it does not; `.ci/run` starts it). A test image is built
//! FROM scratch with the static watchdog and a static busybox, and removed at the end.
//! One server runs every scenario in turn; after each, no container of its owner is
//! left (`docker ps -a --filter label=gantry.owner=<owner>`).

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::docker::{assert_no_containers, assert_ran_in_container, busybox_image, docker};
use support::{serve_exits, Server, ServerOptions};

fn function(name: &str, image: &str, command: &str, extra: Value) -> Value {
    let mut manifest = json!({"name": name, "mode": "STDIO", "image": image, "command": command});
    for (key, value) in extra.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    manifest
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_runtime_end_to_end() {
    let image = busybox_image("docker-runtime");
    let tag = image.0.clone();
    let server = Server::start_with(ServerOptions {
        token: Some("docker-test-token".into()),
        args: vec![
            "--runtime".into(),
            "docker".into(),
            "--allow-host-commands".into(),
        ],
        ..Default::default()
    })
    .await;

    // Sync success: the payload comes back through `busybox cat`.
    server
        .deploy(function("echo", &tag, "/bin/busybox cat", json!({})))
        .await;
    let (status, body) = server.invoke("echo", json!({"a": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"a": 1}), "{body}");
    assert_ran_in_container(&server, &body).await;
    assert_no_containers(&server, "success").await;

    // A failing function.
    server
        .deploy(function(
            "fails",
            &tag,
            "/bin/busybox sh -c 'echo broken >&2; exit 3'",
            json!({}),
        ))
        .await;
    let (status, body) = server.invoke("fails", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    let lines = server
        .log_lines(body["executionId"].as_str().unwrap())
        .await;
    assert!(
        lines
            .iter()
            .any(|line| line["stream"] == "stderr" && line["line"] == "broken"),
        "the container's stderr is in the execution's logs: {lines:?}"
    );
    assert_no_containers(&server, "a failure").await;

    // A timeout kills the container.
    server
        .deploy(function(
            "sleepy",
            &tag,
            "/bin/busybox sleep 60",
            json!({"resources": {"timeout_ms": 1000}}),
        ))
        .await;
    let started = std::time::Instant::now();
    let (status, body) = server.invoke("sleepy", json!(null)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["status"], "timeout", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_no_containers(&server, "a timeout").await;

    // A cancel stops and removes the running container.
    let id = server.enqueue("sleepy", json!(null)).await;
    server
        .wait_status(&id, "running", Duration::from_secs(10))
        .await;
    let (status, _, body) = server
        .call(server.request(
            reqwest::Method::POST,
            &format!("/v1/executions/{id}:cancel"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_no_containers(&server, "a cancel").await;

    // A `command`-only function runs beside them on the process runtime (this server
    // allows host commands; by default they are refused, see docker_security.rs).
    server
        .deploy(support::stdio_function("host", "cat", json!({})))
        .await;
    let (status, body) = server.invoke("host", json!({"on": "host"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"on": "host"}), "{body}");
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert!(
        record["instanceId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("process-"),
        "{record}"
    );

    // A memory hog is OOM-killed and reported as such.
    server
        .deploy(function(
            "hog",
            &tag,
            "/bin/busybox sh -c 'x=$(/bin/busybox head -c 200000000 /dev/zero | /bin/busybox tr \"\\0\" x); echo null'",
            json!({"resources": {"memory_mb": 32, "timeout_ms": 20000}}),
        ))
        .await;
    let (status, body) = server.invoke("hog", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], "OOM_KILLED", "{body}");
    assert_no_containers(&server, "an OOM kill").await;

    // A fork bomb hits the pids limit: the function fails, the machine survives.
    server
        .deploy(function(
            "forks",
            &tag,
            "/bin/busybox sh -c 'i=0; while [ $i -lt 200 ]; do /bin/busybox sleep 30 & i=$((i+1)); done; echo null'",
            json!({"resources": {"pids": 16, "timeout_ms": 10000}}),
        ))
        .await;
    let (status, body) = server.invoke("forks", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    // The shell's failed fork is the function's failure; the watchdog itself survives.
    assert_eq!(body["error"]["code"], "FUNCTION_ERROR", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("can't fork"),
        "{body}"
    );
    assert_no_containers(&server, "a fork bomb").await;

    // The root filesystem is read-only; /tmp is writable.
    server
        .deploy(function("rootfs", &tag, "/bin/busybox touch /x", json!({})))
        .await;
    let (status, body) = server.invoke("rootfs", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    server
        .deploy(function(
            "tmp",
            &tag,
            "/bin/busybox sh -c '/bin/busybox touch /tmp/x && echo true'",
            json!({}),
        ))
        .await;
    let (status, body) = server.invoke("tmp", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!(true), "{body}");
    assert_no_containers(&server, "the read-only checks").await;

    // Limits the engine cannot apply are refused at deploy, each named.
    let mut bad = function("bad-limits", &tag, "/bin/busybox cat", json!({}));
    bad["resources"] = json!({"cpu": 4096, "memory_mb": 2, "pids": 0});
    let (status, body) = server.try_deploy(bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_FUNCTION", "{body}");
    let problems = body["error"]["details"].to_string();
    for field in ["resources.cpu", "resources.memory_mb", "resources.pids"] {
        assert!(problems.contains(field), "{field} not named: {problems}");
    }

    // A missing image is a clear error, not a hang.
    server
        .deploy(function(
            "ghost",
            "gantry-test/does-not-exist:nope",
            "/bin/busybox cat",
            json!({}),
        ))
        .await;
    let (_, body) = server.invoke("ghost", json!(null)).await;
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], "SPAWN_ERROR", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is not present on the Docker engine") && message.contains("build it"),
        "{body}"
    );
    assert_no_containers(&server, "a missing image").await;

    // A restart removes containers an earlier run left behind (labelled with its owner).
    let mut server = server;
    server.stop().await;
    let owner_label = format!("gantry.owner={}", server.owner_id());
    let (created, log) = docker(&["create", "--label", &owner_label, &tag]);
    assert!(created, "docker create failed: {log}");
    let restarted = server
        .restart(ServerOptions {
            token: Some("docker-test-token".into()),
            args: vec!["--runtime".into(), "docker".into()],
            ..Default::default()
        })
        .await;
    assert_no_containers(&restarted, "a restart (orphans)").await;
    // A clean stop also removes the network sandboxes kept ready: nothing of ours is left.
    let owner = restarted.owner_id();
    let mut restarted = restarted;
    assert_eq!(restarted.stop().await, Some(0));
    let (ok, left) = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=gantry.owner={owner}"),
    ]);
    assert!(
        ok && left.trim().is_empty(),
        "containers left after the stop: {left}"
    );
    drop(image);
}

#[tokio::test]
async fn docker_runtime_refuses_to_start_without_an_engine() {
    let (code, stderr) = serve_exits(
        &["--runtime", "docker", "--listen", "127.0.0.1:0"],
        &[
            ("GANTRY_TOKEN", "t"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the Docker engine at unix:///nonexistent/docker.sock is unreachable"),
        "{stderr}"
    );
}
