//! Crash safety of the control plane (durability): `kill -9` with running
//! and queued executions, a clean stop and restart, and SIGTERM with a running execution.
//! After each restart no process of the earlier run survives and no execution is lost.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{
    process_has_env, process_identity, stdio_function, still_alive, Server, ServerOptions,
};

/// Generous bound for anything that should take a few seconds on a loaded machine.
const LONG: Duration = Duration::from_secs(60);

/// A STDIO function running `gate.sh`: slow until `gate` exists, then fast.
fn gate_function(name: &str, gate: &Path, extra: Value) -> Value {
    let mut manifest = stdio_function(
        name,
        "sh gate.sh",
        json!({ "env": { "GATE_FILE": gate.display().to_string() } }),
    );
    for (key, value) in extra.as_object().expect("extra is an object") {
        manifest[key] = value.clone();
    }
    manifest
}

/// The outcome of [`crash_with_two_running`].
struct Crashed {
    /// The killed server (kept: dropping a `Server` kills its data directory's processes).
    _old: Server,
    /// The server restarted on the same data directory.
    server: Server,
    /// The two executions that were running at the crash.
    running: Vec<String>,
    /// The four that were queued.
    queued: Vec<String>,
    /// Holds the gate, which stays open.
    _gate: tempfile::TempDir,
}

/// Enqueues 6 executions of a `max_in_flight: 2` function with the gate closed, waits
/// until 2 run (with their processes) and 4 wait, SIGKILLs the server, opens the gate
/// and restarts.
async fn crash_with_two_running(retry: Option<Value>) -> Crashed {
    let temp = support::function_tempdir();
    let gate = temp.path().join("gate");
    let mut server = Server::start().await;
    let mut extra = json!({ "concurrency": { "max_in_flight": 2 } });
    if let Some(retry) = retry {
        extra["retry"] = retry;
    }
    server.deploy(gate_function("slow", &gate, extra)).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(server.enqueue("slow", json!({ "n": n })).await);
    }
    // The first two admitted run; the other four wait for a slot.
    let (running, queued) = (ids[..2].to_vec(), ids[2..].to_vec());
    for id in &running {
        server.wait_status(id, "running", LONG).await;
        // The function sleeps (its `$(cat)` subshell comes and goes).
        server.wait_process(id, "sleep", LONG).await;
    }
    for id in &queued {
        assert_eq!(server.execution(id).await["status"], "queued", "{id}");
    }
    let mut old = BTreeMap::new();
    for (pid, cmdline) in server.instance_processes() {
        let execution = running
            .iter()
            .find(|id| process_has_env(pid, &format!("EXECUTION_ID={id}")));
        assert!(
            execution.is_some(),
            "{pid} {cmdline} is no running execution's"
        );
        if let Some(identity) = process_identity(pid) {
            old.insert(identity, cmdline);
        }
    }
    // Per execution: the watchdog, `sh gate.sh` and `sleep`.
    assert!(old.len() >= 6, "{old:?}");

    server.kill9().await;
    // The instances are not tied to the server's life: the watchdogs and functions sit in
    // process groups of their own, so a SIGKILLed server leaves them running. Cleaning
    // them up is the restarted server's job.
    let orphans: Vec<_> = old
        .keys()
        .filter(|identity| still_alive(**identity))
        .collect();
    assert_eq!(
        orphans.len(),
        old.len(),
        "the old run's processes outlive a kill -9 of the server: {old:?}"
    );

    std::fs::write(&gate, "open").expect("open the gate");
    let restarted = server.restart(ServerOptions::default()).await;
    // Recovery runs before the server listens: the old run's processes are gone now.
    let survivors: Vec<_> = old
        .iter()
        .filter(|(identity, _)| still_alive(**identity))
        .collect();
    assert!(
        survivors.is_empty(),
        "processes of the old run survived the restart: {survivors:?}"
    );
    Crashed {
        _old: server,
        server: restarted,
        running,
        queued,
        _gate: temp,
    }
}

/// Lists every execution of `slow` and checks each one's status against `expected`.
async fn assert_all_accounted(server: &Server, expected: &BTreeMap<String, &str>) {
    let (status, body) = server
        .list_executions(&[("function", "slow"), ("limit", "1000")])
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = body["executions"].as_array().expect("executions");
    assert_eq!(
        listed.len(),
        expected.len(),
        "executions were lost or added: {listed:?}"
    );
    for execution in listed {
        let id = execution["id"].as_str().expect("id");
        assert_eq!(
            Some(&execution["status"].as_str().unwrap_or_default()),
            expected.get(id),
            "execution {id}: {execution}"
        );
    }
}

#[tokio::test]
async fn kill9_fails_running_and_reruns_queued() {
    let crashed = crash_with_two_running(None).await;
    let (server, running, queued) = (&crashed.server, &crashed.running, &crashed.queued);
    let mut expected = BTreeMap::new();
    for id in running {
        let execution = server.wait_terminal(id, LONG).await;
        assert_eq!(execution["status"], "error", "{execution}");
        assert_eq!(
            execution["error"]["code"], "CONTROL_PLANE_RESTARTED",
            "{execution}"
        );
        assert_eq!(execution["attempt"], 1, "{execution}");
        expected.insert(id.clone(), "error");
    }
    for id in queued {
        let execution = server.wait_terminal(id, LONG).await;
        assert_eq!(execution["status"], "success", "{execution}");
        assert_eq!(
            execution["output"]["echo"], execution["input"],
            "{execution}"
        );
        expected.insert(id.clone(), "success");
    }
    assert_all_accounted(server, &expected).await;
    server.assert_no_instances().await;
}

#[tokio::test]
async fn kill9_reruns_running_when_retries_allow() {
    let retry = json!({ "max_attempts": 2, "initial_backoff_ms": 10 });
    let crashed = crash_with_two_running(Some(retry)).await;
    let (server, running, queued) = (&crashed.server, &crashed.running, &crashed.queued);
    let mut expected = BTreeMap::new();
    for id in running {
        let execution = server.wait_terminal(id, LONG).await;
        assert_eq!(execution["status"], "success", "{execution}");
        assert_eq!(execution["attempt"], 2, "a second attempt ran: {execution}");
        assert_eq!(
            execution["output"]["echo"], execution["input"],
            "{execution}"
        );
        expected.insert(id.clone(), "success");
    }
    for id in queued {
        let execution = server.wait_terminal(id, LONG).await;
        assert_eq!(execution["status"], "success", "{execution}");
        assert_eq!(execution["attempt"], 1, "it never ran before: {execution}");
        expected.insert(id.clone(), "success");
    }
    assert_all_accounted(server, &expected).await;
    server.assert_no_instances().await;
}

#[tokio::test]
async fn clean_restart_keeps_functions_executions_and_logs() {
    let mut server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let changed = stdio_function("echo", "python3 echo.py", json!({ "description": "v2" }));
    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/echo")
                .json(&changed),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    let (status, body) = server.invoke("echo", json!({ "keep": "me" })).await;
    assert_eq!(status, 200, "{body}");
    let id = body["executionId"]
        .as_str()
        .expect("executionId")
        .to_owned();
    let before = server.execution(&id).await;
    let logs_before = server.log_lines(&id).await;
    assert!(
        logs_before.iter().any(|line| line["line"]
            .as_str()
            .is_some_and(|text| text.contains("echo got input"))),
        "{logs_before:?}"
    );

    assert_eq!(
        server.stop().await,
        Some(0),
        "a clean stop exits 0: {}",
        server.stderr()
    );
    server.assert_no_instances().await;

    let server = server.restart(ServerOptions::default()).await;
    let (status, _, function) = server
        .call(server.request(Method::GET, "/v1/functions/echo"))
        .await;
    assert_eq!(status, 200, "{function}");
    assert_eq!(function["version"], 2, "{function}");
    assert_eq!(function["spec"]["description"], "v2", "{function}");
    let (status, _, versions) = server
        .call(server.request(Method::GET, "/v1/functions/echo/versions"))
        .await;
    assert_eq!(status, 200, "{versions}");
    let versions = versions["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_ne!(versions[0]["contentHash"], versions[1]["contentHash"]);

    let after = server.execution(&id).await;
    assert_eq!(after, before, "the record survives unchanged");
    assert_eq!(after["status"], "success");
    assert_eq!(after["output"], json!({ "echo": { "keep": "me" } }));
    assert_eq!(server.log_lines(&id).await, logs_before);
    // The recovered server still runs the function.
    let (status, body) = server.invoke("echo", json!(2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({ "echo": 2 }));
    server.assert_no_instances().await;
}

#[tokio::test]
async fn sigterm_stops_running_instances_after_the_grace() {
    let temp = support::function_tempdir();
    let gate = temp.path().join("gate");
    let options = ServerOptions {
        args: vec!["--shutdown-grace-ms".into(), "500".into()],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    server
        .deploy(gate_function(
            "slow",
            &gate,
            json!({ "concurrency": { "max_in_flight": 1 } }),
        ))
        .await;
    let running = server.enqueue("slow", json!("running")).await;
    let waiting = server.enqueue("slow", json!("waiting")).await;
    server.wait_status(&running, "running", LONG).await;
    server.wait_process(&running, "sleep", LONG).await;
    assert_eq!(server.execution(&waiting).await["status"], "queued");
    // A synchronous call waits behind them; the stopping server answers it 503.
    let sync_call = server
        .request(Method::POST, "/v1/functions/slow:invoke")
        .json(&json!("sync"))
        .send();
    let sync_call = tokio::spawn(async move {
        let response = sync_call
            .await
            .expect("the server answers the waiting call");
        let id = response
            .headers()
            .get("x-execution-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        (response.status(), id, response.json::<Value>().await.ok())
    });
    let deadline = std::time::Instant::now() + LONG;
    while server.list_executions(&[("function", "slow")]).await.1["executions"]
        .as_array()
        .map_or(0, Vec::len)
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync call never arrived"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The instance would run for minutes: the server waits its 500 ms grace, stops it
    // and exits 0 without recording a result (the next start does, by policy).
    assert_eq!(server.stop().await, Some(0), "{}", server.stderr());
    assert!(
        server.instance_processes().is_empty(),
        "the stopped server left processes: {:?}",
        server.instance_processes()
    );

    let (status, sync_id, body) = sync_call.await.expect("the sync call task");
    assert_eq!(status, 503, "{body:?}");
    assert_eq!(
        body.as_ref().map(|body| body["error"]["code"].clone()),
        Some(json!("SHUTTING_DOWN")),
        "{body:?}"
    );
    let sync_id = sync_id.expect("X-Execution-Id on the 503");

    std::fs::write(&gate, "open").expect("open the gate");
    let server = server.restart(options).await;
    let execution = server.wait_terminal(&running, LONG).await;
    assert_eq!(execution["status"], "error", "{execution}");
    assert_eq!(
        execution["error"]["code"], "CONTROL_PLANE_RESTARTED",
        "{execution}"
    );
    let execution = server.wait_terminal(&waiting, LONG).await;
    assert_eq!(
        execution["status"], "success",
        "the queued one runs after the restart: {execution}"
    );
    assert_eq!(execution["output"], json!({ "echo": "waiting" }));
    let execution = server.wait_terminal(&sync_id, LONG).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["output"], json!({ "echo": "sync" }));
    server.assert_no_instances().await;
}

#[tokio::test]
async fn sigterm_lets_a_running_execution_finish_within_the_grace() {
    let options = ServerOptions {
        args: vec!["--shutdown-grace-ms".into(), "30000".into()],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    let command = r#"sh -c 'sleep 1; echo "{\"done\": true}"'"#;
    server
        .deploy(stdio_function("short", command, json!({})))
        .await;
    let id = server.enqueue("short", json!(null)).await;
    server.wait_status(&id, "running", LONG).await;
    assert_eq!(server.stop().await, Some(0), "{}", server.stderr());
    server.assert_no_instances().await;

    let server = server.restart(options).await;
    let execution = server.execution(&id).await;
    assert_eq!(
        execution["status"], "success",
        "recorded before the exit: {execution}"
    );
    assert_eq!(execution["output"], json!({ "done": true }));
    server.assert_no_instances().await;
}

#[test]
fn sigterm_right_after_the_listening_line_stops_cleanly() {
    let data = support::function_tempdir();
    let mut server = support::serve_command(support::gantry_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("data"))
        .spawn()
        .expect("start gantry serve");
    let said = support::said_until_listening(server.stderr.take().unwrap());
    assert!(said.contains("listening on "), "{said}");
    // A supervisor may signal as soon as it sees the line: the stop must be the clean
    // one (exit 0), not the signal's default action.
    let stopped = support::sigterm_and_wait(&mut server);
    assert!(stopped.success(), "{stopped}: {said}");
}
