//! Warm instances over time on the process runtime: idle timeout and scale to zero,
//! `max_invocations` recycling, death and failed health checks (replacement, the call's
//! RUNTIME_CRASHED or retry), hot deploy under load, cancel, timeout, server shutdown
//! and crash clean-up.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{
    assert_error, invoke_full, pool, processes_with_env, send, wait_pool, warm_function, Server,
    ServerOptions,
};
use tokio::time::Instant;

/// The pid in a process-runtime instance id (`process-<pid>`).
fn pid_of(instance: &Value) -> i32 {
    instance["id"]
        .as_str()
        .and_then(|id| id.strip_prefix("process-"))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("not a process instance: {instance}"))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// Calls `name` with a call that sleeps 1.5 s, and SIGKILLs the watchdog of the instance
/// running it mid-call: the instance dies under the call. (The test can; the function
/// itself cannot signal its watchdog, which runs as another user.)
async fn invoke_killing_its_instance(server: &Server, name: &str) -> (StatusCode, Value) {
    let request = server
        .request(Method::POST, &format!("/v1/functions/{name}:invoke"))
        .json(&json!({"sleep_ms": 1500}));
    let call = tokio::spawn(async move {
        let response = request.send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    });
    let busy = wait_pool(server, name, "a busy instance", |p| p["busy"] == 1).await;
    let instance = busy["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|instance| instance["state"] == "busy")
        .cloned()
        .expect("the busy instance");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid_of(&instance)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    call.await.unwrap()
}

async fn wait_dead(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn idle_instances_stop_down_to_min_and_to_zero() {
    let server = Server::start().await;
    let warm = json!({"min_instances": 0, "idle_timeout_ms": 300});
    server.deploy(warm_function("zero", warm, json!({}))).await;
    let (status, _, body) = invoke_full(&server, "zero", json!(1)).await;
    assert_eq!(status, 200, "{body}");
    let watchdog = body["output"]["watchdog"].as_i64().unwrap() as i32;
    wait_pool(&server, "zero", "no instance", |p| {
        p["instances"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    wait_dead(watchdog, "the idle instance").await;
    server.assert_no_instances().await;
    // Scaled to zero, the next call starts an instance again.
    let (status, cold, body) = invoke_full(&server, "zero", json!(2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cold.as_deref(), Some("true"));

    let warm = json!({"min_instances": 1, "max_instances": 2, "idle_timeout_ms": 300});
    server.deploy(warm_function("one", warm, json!({}))).await;
    let calls = (0..2).map(|_| invoke_full(&server, "one", json!({"sleep_ms": 800})));
    for (status, _, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    let settled = wait_pool(&server, "one", "one instance left", |p| {
        p["instances"]
            .as_array()
            .is_some_and(|list| list.len() == 1)
    })
    .await;
    assert_eq!(settled["idle"], 1, "min_instances stays: {settled}");
}

#[tokio::test]
async fn max_invocations_recycles_an_instance() {
    let server = Server::start().await;
    let warm = json!({"min_instances": 1, "max_invocations": 2});
    server
        .deploy(warm_function("recycled", warm, json!({})))
        .await;
    let mut watchdogs = Vec::new();
    for n in 0..3 {
        let (status, _, body) = invoke_full(&server, "recycled", json!(n)).await;
        assert_eq!(status, 200, "{body}");
        watchdogs.push(body["output"]["watchdog"].as_i64().unwrap() as i32);
    }
    assert_eq!(
        watchdogs[0], watchdogs[1],
        "two calls on the first instance"
    );
    assert_ne!(watchdogs[1], watchdogs[2], "the third call on a fresh one");
    wait_dead(watchdogs[0], "the recycled instance").await;
}

#[tokio::test]
async fn a_dead_instance_fails_its_call_and_is_replaced() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "fragile",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    let before = wait_pool(&server, "fragile", "an idle instance", |p| p["idle"] == 1).await;
    let (status, _, body) = invoke_full(&server, "fragile", json!({"n": 0})).await;
    assert_eq!(status, 200, "{body}");
    let runtime = body["output"]["pid"].as_i64().unwrap() as i32;
    let (status, body) = invoke_killing_its_instance(&server, "fragile").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "RUNTIME_CRASHED", "{body}");
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_error(&record, "error", "RUNTIME_CRASHED");
    assert_eq!(record["instanceId"], before["instances"][0]["id"]);
    // min_instances brings a new instance without any call.
    let after = wait_pool(&server, "fragile", "a replacement", |p| {
        p["idle"] == 1 && p["instances"][0]["id"] != before["instances"][0]["id"]
    })
    .await;
    wait_dead(
        pid_of(&before["instances"][0]),
        "the dead instance's watchdog",
    )
    .await;
    // Its runtime outlived the watchdog; the pool stopped it too.
    wait_dead(runtime, "the dead instance's runtime").await;
    let (status, _, body) = invoke_full(&server, "fragile", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["instanceId"], after["instances"][0]["id"]);
}

#[tokio::test]
async fn the_retry_policy_reruns_a_call_whose_instance_died() {
    let server = Server::start().await;
    let retry = json!({"retry": {"max_attempts": 2, "initial_backoff_ms": 10}});
    server
        .deploy(warm_function("retried", json!({"min_instances": 1}), retry))
        .await;
    let (status, body) = invoke_killing_its_instance(&server, "retried").await;
    assert_eq!(status, 200, "the second attempt succeeds: {body}");
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["attempt"], 2, "{record}");
    assert_eq!(record["status"], "success", "{record}");
}

#[tokio::test]
async fn an_instance_failing_its_health_checks_is_replaced() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--health-interval-ms".into(), "100".into()],
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(warm_function(
            "frozen",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    let before = wait_pool(&server, "frozen", "an idle instance", |p| p["idle"] == 1).await;
    let pid = pid_of(&before["instances"][0]);
    // A stopped watchdog answers nothing, though its process lives.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    wait_pool(&server, "frozen", "a replacement", |p| {
        p["idle"] == 1 && p["instances"][0]["id"] != before["instances"][0]["id"]
    })
    .await;
    wait_dead(pid, "the frozen instance").await;
    let (status, _, body) = invoke_full(&server, "frozen", json!(1)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn hot_deploy_under_load_fails_no_call() {
    let server = Arc::new(Server::start().await);
    let warm = json!({"min_instances": 1, "max_instances": 2, "concurrency_per_instance": 2});
    let v1 = warm_function("hot", warm.clone(), json!({"env": {"VERSION": "1"}}));
    server.deploy(v1).await;
    let before = wait_pool(&server, "hot", "an idle instance", |p| p["idle"] == 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (server, stop) = (server.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let input = json!({"worker": worker, "n": n, "sleep_ms": 20});
                let (status, _, body) = invoke_full(&server, "hot", input).await;
                assert_eq!(status, 200, "a call failed during the deploy: {body}");
                seen.push(body["output"]["version"].as_str().unwrap().to_owned());
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = warm_function("hot", warm, json!({"env": {"VERSION": "2"}}));
    let (status, body) = send(&server, Method::PUT, "/v1/functions/hot", Some(v2)).await;
    assert_eq!(status, 200, "{body}");
    // New calls reach version 2 while the old instance drains.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = invoke_full(&server, "hot", json!({"probe": true})).await;
        assert_eq!(status, 200, "{body}");
        if body["output"]["version"] == "2" {
            break;
        }
        assert!(Instant::now() < deadline, "version 2 never answered");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut versions = HashSet::new();
    let mut calls = 0;
    for worker in load {
        let seen = worker.await.expect("no call failed");
        calls += seen.len();
        versions.extend(seen);
    }
    assert!(calls > 20, "the load ran: {calls} calls");
    assert_eq!(versions, HashSet::from(["1".to_owned(), "2".to_owned()]));
    wait_dead(
        pid_of(&before["instances"][0]),
        "the old version's instance",
    )
    .await;
    let after = pool(&server, "hot").await;
    for instance in after["instances"].as_array().unwrap() {
        assert_eq!(instance["version"], 2, "{after}");
    }
}

#[tokio::test]
async fn cancel_and_timeout_stop_the_instance_and_the_pool_recovers() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "slow",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    wait_pool(&server, "slow", "an idle instance", |p| p["idle"] == 1).await;
    let id = server.enqueue("slow", json!({"sleep_ms": 30000})).await;
    server
        .wait_status(&id, "running", Duration::from_secs(10))
        .await;
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("/v1/executions/{id}:cancel"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_error(&body, "cancelled", "CANCELLED");
    let request = server
        .request(Method::POST, "/v1/functions/slow:invoke")
        .header("X-Timeout-Ms", "300")
        .json(&json!({"sleep_ms": 5000}));
    let (status, _, body) = server.call(request).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "TIMEOUT", "{body}");
    wait_pool(&server, "slow", "an idle instance again", |p| {
        p["idle"] == 1
    })
    .await;
    let (status, _, body) = invoke_full(&server, "slow", json!(1)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn shutdown_stops_every_instance_and_a_restart_after_a_crash_removes_old_ones() {
    let mut server = Server::start().await;
    let warm = json!({"min_instances": 2, "max_instances": 2});
    server.deploy(warm_function("kept", warm, json!({}))).await;
    wait_pool(&server, "kept", "two idle instances", |p| p["idle"] == 2).await;
    let (status, _, body) = invoke_full(&server, "kept", json!(1)).await;
    assert_eq!(status, 200, "{body}");
    let id = body["executionId"].as_str().unwrap().to_owned();
    assert_eq!(server.stop().await, Some(0));
    server.assert_no_instances().await;
    // The write-behind record of the sync call was committed before the exit.
    let mut restarted = server.restart(ServerOptions::default()).await;
    let record = restarted.execution(&id).await;
    assert_eq!(record["status"], "success", "{record}");
    // The restart prewarms the pool again.
    let before = wait_pool(&restarted, "kept", "two idle instances", |p| p["idle"] == 2).await;
    let old: Vec<i32> = before["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(pid_of)
        .collect();
    restarted.kill9().await;
    assert!(
        old.iter().all(|&pid| alive(pid)),
        "instances outlive a kill -9 of the server"
    );
    let again = restarted.restart(ServerOptions::default()).await;
    for pid in old {
        wait_dead(pid, "an instance of the crashed server").await;
    }
    wait_pool(&again, "kept", "two fresh idle instances", |p| {
        p["idle"] == 2
    })
    .await;
    let owner = format!("GANTRY_OWNER={}", again.owner_id());
    assert_eq!(
        processes_with_env(&owner).len(),
        4,
        "two watchdogs and their runtimes, nothing of the crashed run"
    );
}

#[tokio::test]
async fn a_call_whose_client_went_away_still_runs_and_is_recorded() {
    use tokio::io::AsyncWriteExt;

    let mut server = Server::start().await;
    server
        .deploy(warm_function(
            "abandoned",
            json!({"min_instances": 1, "max_instances": 1, "concurrency_per_instance": 5}),
            json!({}),
        ))
        .await;
    wait_pool(&server, "abandoned", "an idle instance", |p| p["idle"] == 1).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let body = r#"{"sleep_ms": 1500}"#;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "POST /v1/functions/abandoned:invoke HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            server.token.as_deref().unwrap_or_default(),
            body.len()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    // The calls run (the function sleeps 1.5 s)...
    wait_pool(&server, "abandoned", "five calls in flight", |p| {
        p["inFlight"] == 5
    })
    .await;
    // ...when their clients go away.
    drop(sockets);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, list) = server
            .list_executions(&[("function", "abandoned"), ("status", "success")])
            .await;
        assert_eq!(status, 200, "{list}");
        if list["executions"].as_array().map(Vec::len) == Some(5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned calls were not all recorded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.stop().await,
        Some(0),
        "the server stops: {}",
        server.stderr()
    );
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_call_right_after_an_idle_instance_died_runs_elsewhere_or_fails_cleanly() {
    let server = Server::start().await;
    server
        .deploy(warm_function(
            "resilient",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    let before = wait_pool(&server, "resilient", "an idle instance", |p| p["idle"] == 1).await;
    let (status, _, body) = invoke_full(&server, "resilient", json!(0)).await;
    assert_eq!(status, 200, "{body}");
    // The whole instance dies while idle; the pool may not have noticed yet.
    for pid in [
        pid_of(&before["instances"][0]),
        body["output"]["pid"].as_i64().unwrap() as i32,
    ] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // A call in that moment either finds another instance (a refused connection means
    // it was never delivered) or, if its request went out on a connection the dead
    // instance had open, fails as RUNTIME_CRASHED: it is never lost or left hanging.
    let (status, _, body) = invoke_full(&server, "resilient", json!(1)).await;
    assert!(
        status == 200 || (status == 502 && body["error"]["code"] == "RUNTIME_CRASHED"),
        "{status}: {body}"
    );
    wait_pool(&server, "resilient", "a replacement", |p| {
        p["idle"] == 1 && p["instances"][0]["id"] != before["instances"][0]["id"]
    })
    .await;
    for n in 2..=4 {
        let (status, _, body) = invoke_full(&server, "resilient", json!(n)).await;
        assert_eq!(status, 200, "call {n} on the replacement: {body}");
    }
}
