//! Warm instances on the docker runtime against the real Docker engine (it must answer:
//! these tests fail, never skip, when it does not), with a function image built from
//! gantry/runtime-python whose handler counts its calls in the runtime process.
//!
//! `DockerRuntime::start_warm` itself: one hardened, labelled container on gantry-net
//! whose WARM server the host reaches at the endpoint, output in the logs, a SIGTERM
//! drain and removal on stop; a dropped instance and an earlier run's are removed; a
//! missing image is a clear error.
//!
//! The warm pool through `gantry serve --runtime docker --token …`: `min_instances`
//! starts a container before any call, sequential calls reuse it (state kept in the
//! runtime), `idle_timeout_ms` scales to zero, a new version under load fails no call
//! and removes the old containers, and no container of the server is left once it stops.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gantry::logs::{LogHub, LogSink};
use gantry::registry::manifest::from_json;
use gantry::registry::FunctionVersion;
use gantry::runtime::docker::{ContainerDefaults, DockerRuntime};
use gantry::runtime::{Runtime, WarmLaunch, WarmStarted};
use gantry::store::{SqliteStore, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::docker::{
    containers, docker, function_containers, image_exists, make, require_engine, Image,
};
use support::{invoke_full, wait_pool, Server, ServerOptions};
use uuid::Uuid;

const TOKEN: &str = "docker-warm-token";
/// How long a container may take to start, answer its health check or go away.
const DEADLINE: Duration = Duration::from_secs(60);

/// The handler of the test image: counts its calls in the runtime process and answers
/// the count, its pid and the MARKER variable.
const HANDLER: &str = r#""""Test function of tests/docker_warm.rs: state kept across warm calls."""
import os

calls = 0


def handle(event, context):
    global calls
    calls += 1
    print(f"warm call {calls}", flush=True)
    return {
        "calls": calls,
        "pid": os.getpid(),
        "marker": os.environ.get("MARKER"),
        "execution_id": context.execution_id,
    }
"#;

/// The counting function image (FROM gantry/runtime-python, built by `make
/// runtime-images` when missing), removed on drop.
fn counter_image() -> Image {
    require_engine();
    if !image_exists("gantry/runtime-python") {
        make("runtime-images");
    }
    let context = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM gantry/runtime-python\nCOPY handler.py /app/handler.py\n",
    )
    .expect("write the Dockerfile");
    std::fs::write(context.path().join("handler.py"), HANDLER).expect("write handler.py");
    Image::build("warm-counter", context.path())
}

/// An HTTP-mode manifest of the counting image, with `extra` merged in.
fn manifest(name: &str, image: &Image, extra: Value) -> Value {
    let mut manifest = json!({"name": name, "image": image.0, "mode": "HTTP"});
    if let (Some(base), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    manifest
}

/// `docker inspect` of one container.
fn inspect(id: &str) -> Value {
    let (ok, text) = docker(&["inspect", id]);
    assert!(ok, "docker inspect {id} failed: {text}");
    let mut all: Value = serde_json::from_str(&text).expect("docker inspect answers JSON");
    all[0].take()
}

/// Polls until `list()` has `count` entries (at most [`DEADLINE`]); answers them.
async fn wait_count(what: &str, count: usize, list: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let found = list();
        if found.len() == count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} instead of {count} after {DEADLINE:?}: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET {endpoint}/health` until it answers 200 (at most [`DEADLINE`]).
async fn wait_healthy(client: &reqwest::Client, endpoint: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = client.get(format!("{endpoint}/health")).send().await;
        if matches!(&answer, Ok(response) if response.status() == StatusCode::OK) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint}/health never answered 200: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- the runtime ------------------------------------------------------------------

/// A docker runtime of a fresh owner, its store and log hub.
struct Harness {
    runtime: DockerRuntime,
    owner: String,
    store: Arc<SqliteStore>,
    hub: Arc<LogHub>,
    _data: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        require_engine();
        let owner = format!("test-warm-{}", Uuid::new_v4().simple());
        Harness::with_owner(owner).await
    }

    async fn with_owner(owner: String) -> Harness {
        let defaults = ContainerDefaults {
            memory_mb: 256,
            pids: 256,
            cpus: 1.0,
        };
        let runtime = DockerRuntime::connect(owner.clone(), "gantry-net".into(), 0, defaults)
            .await
            .unwrap_or_else(|err| panic!("connect to the engine: {err}"));
        let data = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&data.path().join("data")).expect("open a store"));
        Harness {
            runtime,
            owner,
            store,
            hub: Arc::new(LogHub::default()),
            _data: data,
        }
    }

    /// Version 1 of `manifest`.
    fn version(manifest: Value) -> Arc<FunctionVersion> {
        let spec = from_json(&manifest).expect("a valid manifest");
        Arc::new(FunctionVersion {
            name: spec.name.clone(),
            version: 1,
            content_hash: gantry::registry::content_hash(&spec),
            spec,
            created_at: chrono::Utc::now(),
        })
    }

    /// Starts a warm instance of `function` with the variables the pool passes (WARM
    /// mode, its runtime kind and the manifest's env); answers it, its key and its log.
    async fn start(
        &self,
        function: Arc<FunctionVersion>,
    ) -> (
        Result<WarmStarted, gantry::runtime::RuntimeError>,
        Uuid,
        gantry::logs::LogWriter,
    ) {
        let key = Uuid::new_v4();
        let (logs, writer) =
            LogSink::start(key, "warm", 1 << 20, self.store.clone(), self.hub.clone());
        let mut env: Vec<(String, String)> = [
            ("EXECUTION_MODE", "WARM"),
            ("WARM_RUNTIME", function.spec.mode.as_env()),
            ("WARM_CONCURRENCY", "1"),
            ("TIMEOUT_MS", "10000"),
            ("WARM_IDLE_TIMEOUT_MS", "0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        env.extend(function.spec.env.clone());
        let started = self
            .runtime
            .start_warm(WarmLaunch {
                key,
                function,
                env,
                logs,
            })
            .await;
        (started, key, writer)
    }
}

impl Harness {
    /// Starts a warm instance of `image` under `name` with no extra settings.
    async fn start_plain(
        &self,
        name: &str,
        image: &Image,
    ) -> (WarmStarted, Uuid, gantry::logs::LogWriter) {
        let function = Harness::version(manifest(name, image, json!({})));
        let (answer, key, writer) = self.start(function).await;
        (started(answer), key, writer)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Whatever a failed test left running goes with it.
        let left = containers(&[&format!("gantry.owner={}", self.owner)]);
        if !left.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(left.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// The started instance, or a failure that says why it did not start.
fn started(answer: Result<WarmStarted, gantry::runtime::RuntimeError>) -> WarmStarted {
    match answer {
        Ok(started) => started,
        Err(err) => panic!("start_warm failed: {err}"),
    }
}

/// The containers of warm instance `key`.
fn instance_containers(key: Uuid) -> Vec<String> {
    containers(&[&format!("gantry.instance={key}")])
}

/// `POST {endpoint}/invoke` with a raw payload; answers the callback body.
async fn call_instance(client: &reqwest::Client, endpoint: &str, payload: Value) -> Value {
    let response = client
        .post(format!("{endpoint}/invoke"))
        .header("X-Execution-Id", Uuid::new_v4().to_string())
        .json(&payload)
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {endpoint}/invoke: {err}"));
    assert_eq!(response.status(), StatusCode::OK, "{endpoint}/invoke");
    response.json().await.expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_container_serves_from_its_bridge_address_until_stopped() {
    let image = counter_image();
    let harness = Harness::new().await;
    let function = Harness::version(manifest(
        "warm-counter",
        &image,
        json!({"env": {"MARKER": "one"}, "resources": {"memory_mb": 128, "cpu": 0.5, "pids": 64}}),
    ));
    let (answer, key, writer) = harness.start(function).await;
    let mut warm = started(answer);

    // One container, labelled as a warm instance (never as an execution).
    let ids = instance_containers(key);
    assert_eq!(ids.len(), 1, "one container per instance: {ids:?}");
    let id = &ids[0];
    assert_eq!(warm.instance.id(), format!("docker-{}", &id[..12]));
    let info = inspect(id);
    let labels = &info["Config"]["Labels"];
    assert_eq!(labels["gantry.owner"], harness.owner.as_str(), "{labels}");
    assert_eq!(labels["gantry.function"], "warm-counter", "{labels}");
    assert_eq!(labels["gantry.version"], "1", "{labels}");
    assert_eq!(labels["gantry.instance"], key.to_string(), "{labels}");
    assert!(labels.get("gantry.execution").is_none(), "{labels}");

    // The one-shot hardening and limits, on gantry-net itself (no network sandbox).
    let host = &info["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true, "{host}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host}");
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]), "{host}");
    assert!(host["Tmpfs"].get("/tmp").is_some(), "{host}");
    assert_eq!(host["NetworkMode"], "gantry-net", "{host}");
    assert_eq!(host["Memory"], 128 * 1024 * 1024, "{host}");
    assert_eq!(host["NanoCpus"], 500_000_000, "{host}");
    assert_eq!(host["PidsLimit"], 64, "{host}");
    let env: Vec<&str> = info["Config"]["Env"]
        .as_array()
        .expect("Config.Env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for var in [
        "EXECUTION_MODE=WARM",
        "WARM_RUNTIME=HTTP",
        "WARM_HOST=0.0.0.0",
        "WARM_PORT=8080",
        "RUNTIME_URL=http://127.0.0.1:8081/invoke",
        "MARKER=one",
    ] {
        assert!(env.contains(&var), "{var} missing from {env:?}");
    }

    // The endpoint is the container's address on gantry-net, reached from the host.
    let address = info["NetworkSettings"]["Networks"]["gantry-net"]["IPAddress"]
        .as_str()
        .expect("an address on gantry-net");
    assert_eq!(warm.endpoint, format!("http://{address}:8080"));
    let client = reqwest::Client::new();
    wait_healthy(&client, &warm.endpoint).await;
    let mut pids = Vec::new();
    for n in 1..=3 {
        let report = call_instance(&client, &warm.endpoint, json!({"n": n})).await;
        assert_eq!(report["success"], true, "{report}");
        assert_eq!(
            report["output"]["calls"], n,
            "state kept in the runtime: {report}"
        );
        assert_eq!(report["output"]["marker"], "one", "{report}");
        pids.push(report["output"]["pid"].clone());
    }
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "one runtime process: {pids:?}"
    );

    // SIGTERM drains and the watchdog exits by itself, well before the grace runs out.
    let stopping = Instant::now();
    warm.instance.kill(Duration::from_secs(30)).await;
    let exit = warm.instance.wait().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "stopping took {:?}: the watchdog did not drain on SIGTERM",
        stopping.elapsed()
    );
    assert_eq!(exit.code, Some(0), "a clean exit after SIGTERM: {exit:?}");
    drop(warm);
    harness.runtime.drain(Duration::from_secs(30)).await;
    assert!(
        instance_containers(key).is_empty(),
        "the container is removed once stopped and drained"
    );

    // Its output went to its log.
    writer.finish().await;
    let lines = harness
        .store
        .read_logs(key, 0, 1000)
        .await
        .expect("read the log");
    assert!(
        lines.iter().any(|line| line.line.contains("warm call 3")),
        "the handler's output is in the log: {:?}",
        lines.iter().map(|line| &line.line).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_warm_instance_leaves_no_container() {
    let image = counter_image();
    let harness = Harness::new().await;
    let (warm, key, _writer) = harness.start_plain("dropped", &image).await;
    assert_eq!(instance_containers(key).len(), 1);
    drop(warm);
    wait_count("containers of a dropped instance", 0, || {
        instance_containers(key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_containers_of_an_earlier_run_are_removed_at_start() {
    let image = counter_image();
    let earlier = Harness::new().await;
    let (warm, key, _writer) = earlier.start_plain("orphaned", &image).await;
    // A crash: nothing of the instance runs its clean-up.
    std::mem::forget(warm);
    assert_eq!(instance_containers(key).len(), 1);

    let next = Harness::with_owner(earlier.owner.clone()).await;
    let removed = next.runtime.remove_orphans().await;
    assert!(removed >= 1, "removed {removed}");
    assert!(
        instance_containers(key).is_empty(),
        "the warm container of the earlier run is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_a_clear_start_error() {
    let harness = Harness::new().await;
    let image = Image(format!("gantry-test/missing:{}", Uuid::new_v4().simple()));
    let function = Harness::version(manifest("missing", &image, json!({})));
    let (answer, key, _writer) = harness.start(function).await;
    match answer {
        Ok(started) => panic!("started {} from a missing image", started.endpoint),
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.contains(&image.0) && message.contains("is not present"),
                "{message}"
            );
        }
    }
    assert!(instance_containers(key).is_empty());
}

// --- the pool ---------------------------------------------------------------------

/// The answers one loop of calls got, in order.
type Calls = Vec<(StatusCode, Value)>;

/// `gantry serve --runtime docker` with a token.
async fn docker_server() -> Server {
    require_engine();
    Server::start_with(ServerOptions {
        token: Some(TOKEN.into()),
        args: vec!["--runtime".into(), "docker".into()],
        ..Default::default()
    })
    .await
}

/// The warm containers (running or not) of `function` on `server`.
fn warm_containers(server: &Server, function: &str) -> Vec<String> {
    containers(&[
        &format!("gantry.owner={}", server.owner_id()),
        &format!("gantry.function={function}"),
        "gantry.instance",
    ])
}

/// Polls the pool of `name` until it has `idle` idle instances.
async fn wait_idle(server: &Server, name: &str, idle: u64) -> Value {
    wait_pool(server, name, &format!("{idle} idle instances"), |pool| {
        pool["idle"].as_u64() == Some(idle)
    })
    .await
}

/// Invokes `name` and asserts success; answers the output, the cold start header and
/// the execution record.
async fn invoke_ok(server: &Server, name: &str) -> (Value, Option<String>, Value) {
    let (status, cold, body) = invoke_full(server, name, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{name}: {body}");
    assert_eq!(body["status"], "success", "{name}: {body}");
    let record = server
        .execution(body["executionId"].as_str().expect("executionId"))
        .await;
    (body["output"].clone(), cold, record)
}

/// The `instanceId` a container has (`docker-` and its short id).
fn instance_id(container: &str) -> String {
    format!("docker-{}", &container[..12])
}

/// Stops the server and asserts no container of its owner is left, sandboxes included.
async fn stop_and_assert_clean(mut server: Server) {
    let owner = server.owner_id();
    assert_eq!(server.stop().await, Some(0), "{}", server.stderr());
    let left = containers(&[&format!("gantry.owner={owner}")]);
    assert!(
        left.is_empty(),
        "containers of the stopped server: {left:?}\n{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn min_instances_starts_a_container_before_any_call() {
    let image = counter_image();
    let server = docker_server().await;
    server
        .deploy(manifest(
            "prewarmed",
            &image,
            json!({"warm": {"min_instances": 1}}),
        ))
        .await;
    let ids = wait_count("warm containers of prewarmed", 1, || {
        warm_containers(&server, "prewarmed")
    })
    .await;
    wait_idle(&server, "prewarmed", 1).await;
    assert_eq!(
        warm_containers(&server, "prewarmed"),
        ids,
        "the prewarmed container serves (not a replacement):\n{}",
        server.stderr()
    );
    assert_eq!(inspect(&ids[0])["State"]["Running"], true);

    let (output, cold, record) = invoke_ok(&server, "prewarmed").await;
    assert_eq!(cold.as_deref(), Some("false"), "a prewarmed call: {record}");
    assert_eq!(record["coldStart"], false, "{record}");
    assert_eq!(record["instanceId"], instance_id(&ids[0]), "{record}");
    assert_eq!(output["calls"], 1, "{output}");
    assert_eq!(warm_containers(&server, "prewarmed"), ids);
    stop_and_assert_clean(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_calls_reuse_one_container_and_its_state() {
    let image = counter_image();
    let server = docker_server().await;
    server
        .deploy(manifest("reused", &image, json!({"warm": {}})))
        .await;
    assert!(
        warm_containers(&server, "reused").is_empty(),
        "min_instances 0 starts nothing before a call"
    );
    let mut instances = Vec::new();
    let mut pids = Vec::new();
    for n in 1..=5 {
        let (output, cold, record) = invoke_ok(&server, "reused").await;
        let expected_cold = if n == 1 { "true" } else { "false" };
        assert_eq!(cold.as_deref(), Some(expected_cold), "call {n}: {record}");
        assert_eq!(output["calls"], n, "state kept in the runtime: {output}");
        let ids = warm_containers(&server, "reused");
        assert_eq!(ids.len(), 1, "after call {n}: {ids:?}");
        assert_eq!(record["instanceId"], instance_id(&ids[0]), "{record}");
        instances.push(record["instanceId"].clone());
        pids.push(output["pid"].clone());
    }
    assert!(instances.windows(2).all(|w| w[0] == w[1]), "{instances:?}");
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
    // No one-shot container ran any of them.
    let owner = format!("gantry.owner={}", server.owner_id());
    assert!(containers(&[&owner, "gantry.execution"]).is_empty());
    stop_and_assert_clean(server).await;
}

/// `time` as `docker events` takes it (seconds with nanoseconds: whole seconds would
/// leave out what happened in the current one).
fn event_time(time: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}.{:09}", time.timestamp(), time.timestamp_subsec_nanos())
}

/// Containers of `function` started on `owner` since `since` (a `docker events` time)
/// that were warm instances.
fn warm_starts_since(owner: &str, function: &str, since: &str) -> usize {
    let until = event_time(chrono::Utc::now());
    let (ok, events) = docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        "event=start",
        "--filter",
        &format!("label=gantry.owner={owner}"),
        "--filter",
        &format!("label=gantry.function={function}"),
        "--format",
        "{{json .Actor.Attributes}}",
    ]);
    assert!(ok, "docker events failed: {events}");
    events
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|attributes| attributes.get("gantry.instance").is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_pool_scales_to_zero() {
    let image = counter_image();
    let server = docker_server().await;
    let owner = server.owner_id();
    server
        .deploy(manifest(
            "scaled",
            &image,
            json!({"warm": {"min_instances": 0, "idle_timeout_ms": 500}}),
        ))
        .await;
    let since = event_time(chrono::Utc::now());
    for round in 1..=2 {
        let (output, _, record) = invoke_ok(&server, "scaled").await;
        assert_eq!(output["calls"], 1, "a fresh instance each round: {output}");
        assert!(
            record["instanceId"]
                .as_str()
                .unwrap_or_default()
                .starts_with("docker-"),
            "{record}"
        );
        assert_eq!(
            warm_starts_since(&owner, "scaled", &since),
            round,
            "each call after scaling to zero starts one warm container"
        );
        wait_count("warm containers of scaled once idle", 0, || {
            warm_containers(&server, "scaled")
        })
        .await;
    }
    stop_and_assert_clean(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_under_load_fails_no_call_and_removes_the_old_containers() {
    let image = counter_image();
    let server = Arc::new(docker_server().await);
    let v1 = manifest(
        "hot",
        &image,
        json!({"env": {"MARKER": "v1"}, "warm": {"min_instances": 1}}),
    );
    server.deploy(v1.clone()).await;
    let old = wait_count("warm containers of hot", 1, || {
        warm_containers(&server, "hot")
    })
    .await;
    wait_idle(&server, "hot", 1).await;
    let owner = format!("gantry.owner={}", server.owner_id());
    let version_1 = || containers(&[&owner, "gantry.function=hot", "gantry.version=1"]);
    assert_eq!(version_1(), old, "the prewarmed container runs version 1");

    // Two loops of calls, each recording (status, marker, body) in order.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Calls>>> = Arc::new(Mutex::new(vec![vec![]; 2]));
    let loops: Vec<_> = (0..2)
        .map(|n| {
            let (server, stop, seen) = (server.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let (status, _, body) = invoke_full(&server, "hot", json!({})).await;
                    seen.lock().unwrap()[n].push((status, body));
                }
            })
        })
        .collect();
    let count = |marker: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .flatten()
            .filter(|(_, body)| body["output"]["marker"] == marker)
            .count()
    };
    let deadline = Instant::now() + DEADLINE;
    while count("v1") < 6 {
        assert!(Instant::now() < deadline, "the loops made no v1 calls");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut v2 = v1.clone();
    v2["env"]["MARKER"] = json!("v2");
    let (status, _, body) = server
        .call(server.request(Method::PUT, "/v1/functions/hot").json(&v2))
        .await;
    assert_eq!(status, StatusCode::OK, "replace: {body}");
    assert_eq!(body["version"], 2, "{body}");
    while count("v2") < 10 {
        assert!(
            Instant::now() < deadline,
            "the loops never saw the new version"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in loops {
        task.await.expect("a call loop");
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for calls in &seen {
        for (status, body) in calls {
            assert_eq!(
                *status,
                StatusCode::OK,
                "a call failed during the deploy: {body}"
            );
            assert_eq!(body["status"], "success", "{body}");
        }
        // Once a loop has seen v2, every later call of that loop is v2.
        let markers: Vec<&Value> = calls
            .iter()
            .map(|(_, body)| &body["output"]["marker"])
            .collect();
        let first_v2 = markers.iter().position(|marker| *marker == "v2");
        if let Some(first) = first_v2 {
            assert!(
                markers[first..].iter().all(|marker| *marker == "v2"),
                "a v1 answer after a v2 one: {markers:?}"
            );
        }
    }
    // The prewarmed container and any other the loops made version 1 start are removed
    // once drained; version 2 keeps its minimum.
    wait_count("version 1 containers of hot", 0, version_1).await;
    let now = warm_containers(&server, "hot");
    assert!(!now.is_empty(), "version 2 keeps min_instances");
    for id in now {
        assert_eq!(
            inspect(&id)["Config"]["Labels"]["gantry.version"],
            "2",
            "only version 2 runs now"
        );
    }
    let server = Arc::into_inner(server).expect("the loops are done");
    stop_and_assert_clean(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_leaves_no_warm_container() {
    let image = counter_image();
    let server = docker_server().await;
    for name in ["left-a", "left-b"] {
        server
            .deploy(manifest(
                name,
                &image,
                json!({"warm": {"min_instances": 2}}),
            ))
            .await;
    }
    for name in ["left-a", "left-b"] {
        wait_count("warm containers", 2, || warm_containers(&server, name)).await;
    }
    let (output, _, _) = invoke_ok(&server, "left-a").await;
    assert_eq!(output["calls"], 1, "{output}");
    assert_eq!(function_containers(&server).len(), 4);
    stop_and_assert_clean(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_containers_cannot_call_a_warm_instance() {
    let image = counter_image();
    let server = docker_server().await;
    server
        .deploy(manifest(
            "private",
            &image,
            json!({"warm": {"min_instances": 1}}),
        ))
        .await;
    let ids = wait_count("warm containers of private", 1, || {
        warm_containers(&server, "private")
    })
    .await;
    wait_idle(&server, "private", 1).await;
    let network = inspect(&ids[0])["NetworkSettings"]["Networks"]["gantry-net"].clone();
    let address = network["IPAddress"]
        .as_str()
        .expect("an address on gantry-net");
    let options = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "-f",
            "{{json .Options}}",
            "gantry-net",
        ])
        .output()
        .expect("docker network inspect");
    assert!(
        String::from_utf8_lossy(&options.stdout)
            .contains(r#""com.docker.network.bridge.enable_icc":"false""#),
        "gantry-net isolates its containers: {}",
        String::from_utf8_lossy(&options.stdout)
    );
    // The host (the control plane) reaches the instance...
    let client = reqwest::Client::new();
    wait_healthy(&client, &format!("http://{address}:8080")).await;
    // ...another container on the same network does not, though it reaches the host.
    let probe = |url: String| {
        let image = image.0.clone();
        // Any HTTP answer (an error status included) means the address was reached.
        let fetch = format!(
            "import urllib.request, urllib.error\ntry:\n    urllib.request.urlopen({url:?}, timeout=3)\nexcept urllib.error.HTTPError:\n    pass"
        );
        async move {
            tokio::process::Command::new("docker")
                .args(["run", "--rm", "--network", "gantry-net"])
                .args(["--entrypoint", "python3", &image, "-c", &fetch])
                .output()
                .await
                .expect("docker run")
        }
    };
    let gateway = network["Gateway"].as_str().expect("the network's gateway");
    let port = server.url.rsplit(':').next().expect("the server's port");
    let host = probe(format!(
        "http://{gateway}:{port}/v1/internal/executions/x/payload"
    ))
    .await;
    assert!(
        host.status.success(),
        "the probe container reaches the control plane: {host:?}"
    );
    let instance = probe(format!("http://{address}:8080/health")).await;
    assert!(
        !instance.status.success(),
        "a container reached the warm instance: {instance:?}"
    );
    stop_and_assert_clean(server).await;
}
