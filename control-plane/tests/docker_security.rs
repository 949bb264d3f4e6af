//! `--runtime docker` against a function written by a stranger (real engine; these tests
//! run as root, as CI does): the user's code runs as an unprivileged user, cannot read
//! the watchdog's credentials, cannot forge its result, cannot use the API through the
//! gateway, cannot reach the link-local metadata range, and is held by default limits
//! when its manifest sets none. Host commands are refused unless the server allows them,
//! and file secrets arrive as 0400 files of the function's user.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::docker::{assert_no_containers, busybox_image, derived_image, docker, Image};
use support::{error_message, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests need root (to build a fake metadata address and check the firewall); CI runs them as root"
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/docker-security")
        .join(name)
}

fn function(name: &str, image: &str, command: &str, extra: Value) -> Value {
    let mut manifest = json!({"name": name, "mode": "STDIO", "image": image, "command": command});
    for (key, value) in extra.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    manifest
}

/// A fake metadata service: a link-local address on the host's loopback interface,
/// answering HTTP 200 to anyone who reaches it. (Not 169.254.169.254 itself, which a
/// cloud host may need meanwhile; the firewall rule covers the whole range.) The address
/// goes when dropped.
struct FakeMetadata {
    address: String,
    port: u16,
    url: String,
}

impl FakeMetadata {
    async fn start() -> FakeMetadata {
        let address = format!(
            "169.254.{}.{}",
            100 + std::process::id() % 100,
            1 + std::process::id() % 250
        );
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip")
        };
        let _ = ip(&["addr", "del", &format!("{address}/32"), "dev", "lo"]);
        let added = ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"]);
        assert!(added.status.success(), "ip addr add: {added:?}");
        let listener = tokio::net::TcpListener::bind(format!("{address}:0"))
            .await
            .expect("listen on the fake metadata address");
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://{address}:{port}/latest/meta-data/");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await;
                    let answer =
                        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nsecrets";
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        FakeMetadata { address, port, url }
    }
}

impl Drop for FakeMetadata {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.address), "dev", "lo"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_function_in_a_container_gets_nowhere() {
    require_root();
    let base = busybox_image("docker-security");
    let image = derived_image(
        "docker-security-spy",
        &base,
        &[("spy.sh", &fixture("spy.sh"))],
        &[],
    );
    let metadata = FakeMetadata::start().await;
    // The fake service is reachable from an ordinary container: the test can fail.
    let port = metadata.port.to_string();
    let (reached, text) = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/busybox",
        &image.0,
        "nc",
        "-w",
        "5",
        &metadata.address,
        &port,
    ]);
    assert!(reached, "a plain container reaches it: {text}");

    let server = Server::start_with(ServerOptions {
        args: vec!["--runtime".into(), "docker".into()],
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(function(
            "spy",
            &image.0,
            "/bin/busybox sh /spy.sh",
            json!({"env": {"METADATA_URL": metadata.url}}),
        ))
        .await;
    let (status, body) = server.invoke("spy", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &body["output"];
    assert_eq!(
        seen["uid"], 65534,
        "an image without USER runs as 65534: {seen}"
    );
    assert_ne!(
        seen["environ"], 0,
        "it read the watchdog's environment: {seen}"
    );
    assert_eq!(
        seen["token_vars"], 0,
        "credentials in its environment: {seen}"
    );
    assert_eq!(seen["forge"], 401, "a result without the token: {seen}");
    assert_eq!(seen["guess"], 403, "a result with a guessed token: {seen}");
    assert_eq!(seen["api"], 404, "the gateway serves no API: {seen}");
    assert_eq!(
        seen["metrics"], 404,
        "the gateway serves no metrics: {seen}"
    );
    assert_eq!(seen["metadata"], 0, "it reached the metadata range: {seen}");
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(
        record["status"], "success",
        "its genuine result stands: {record}"
    );
    assert_ne!(record["output"], "forged");
    assert_no_containers(&server, "the spy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn default_limits_hold_when_the_manifest_sets_none() {
    let base = busybox_image("docker-limits");
    let user = derived_image("docker-limits-user", &base, &[], &["USER 4242:4242"]);
    let server = Server::start_with(ServerOptions {
        args: vec![
            "--runtime".into(),
            "docker".into(),
            "--docker-pids".into(),
            "64".into(),
        ],
        ..ServerOptions::default()
    })
    .await;
    // The image's own USER is the one its code runs as.
    server
        .deploy(function(
            "named",
            &user.0,
            "/bin/busybox sh -c 'cat >/dev/null; echo \"{\\\"uid\\\": $(/bin/busybox id -u)}\"'",
            json!({}),
        ))
        .await;
    let (status, body) = server.invoke("named", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["uid"], 4242, "{body}");

    // What a container gets when the manifest says nothing.
    server
        .deploy(function(
            "idle",
            &base.0,
            "/bin/busybox sleep 30",
            json!({}),
        ))
        .await;
    let id = server.enqueue("idle", json!(null)).await;
    server
        .wait_status(&id, "running", Duration::from_secs(30))
        .await;
    let owner = format!("gantry.execution={id}");
    let containers = support::docker::containers(&[&owner]);
    assert_eq!(containers.len(), 1, "{containers:?}");
    let (ok, text) = docker(&["inspect", &containers[0]]);
    assert!(ok, "{text}");
    let inspected: Value = serde_json::from_str(&text).unwrap();
    let host = &inspected[0]["HostConfig"];
    assert_eq!(host["Memory"], 256 * 1024 * 1024, "{host}");
    assert_eq!(host["PidsLimit"], 64, "the server's --docker-pids: {host}");
    assert_eq!(host["NanoCpus"], 1_000_000_000i64, "{host}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host}");
    assert_eq!(
        host["CapAdd"],
        json!(["SETUID", "SETGID", "KILL", "CHOWN"]),
        "{host}"
    );
    assert_eq!(host["ReadonlyRootfs"], true);
    assert!(
        host["SecurityOpt"]
            .to_string()
            .contains("no-new-privileges"),
        "{host}"
    );
    let (status, _, _) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{id}:cancel")))
        .await;
    assert!(status.is_success());

    // A memory hog and a fork bomb without limits of their own are stopped by the defaults.
    server
        .deploy(function(
            "hog",
            &base.0,
            "/bin/busybox sh -c 'x=$(/bin/busybox head -c 400000000 /dev/zero | /bin/busybox tr \"\\0\" x); echo null'",
            json!({"resources": {"timeout_ms": 30000}}),
        ))
        .await;
    let (status, body) = server.invoke("hog", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "OOM_KILLED", "{body}");
    server
        .deploy(function(
            "forks",
            &base.0,
            "/bin/busybox sh -c 'i=0; while [ $i -lt 300 ]; do /bin/busybox sleep 30 & i=$((i+1)); done; echo null'",
            json!({"resources": {"timeout_ms": 20000}}),
        ))
        .await;
    let (status, body) = server.invoke("forks", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(error_message(&body).contains("can't fork"), "{body}");
    assert_no_containers(&server, "the limited runs").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_commands_need_the_servers_consent() {
    let strict = Server::start_with(ServerOptions {
        args: vec!["--runtime".into(), "docker".into()],
        ..ServerOptions::default()
    })
    .await;
    let host = support::stdio_function("host", "python3 echo.py", json!({}));
    let (status, body) = strict.try_deploy(host.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).contains("--allow-host-commands"),
        "{body}"
    );

    let lenient = Server::start_with(ServerOptions {
        args: vec![
            "--runtime".into(),
            "docker".into(),
            "--allow-host-commands".into(),
        ],
        ..ServerOptions::default()
    })
    .await;
    lenient.deploy(host).await;
    let (status, body) = lenient.invoke("host", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"echo": {"n": 1}}));
    lenient.assert_no_instances().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn file_secrets_are_0400_files_of_the_functions_user() {
    let base = busybox_image("docker-secret-file");
    let image: Image = derived_image(
        "docker-secret-file-fn",
        &base,
        &[("secret_file.sh", &fixture("secret_file.sh"))],
        &[],
    );
    let server = Server::start_with(ServerOptions {
        args: vec!["--runtime".into(), "docker".into()],
        ..ServerOptions::default()
    })
    .await;
    let value = "-----BEGIN KEY----- abc123 -----END KEY-----";
    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/secrets/tls")
                .json(&json!({ "value": value })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server
        .deploy(function(
            "keyed",
            &image.0,
            "/bin/busybox sh /secret_file.sh",
            json!({"secrets": {"TLS_KEY": {"secret": "tls", "file": true}}}),
        ))
        .await;
    let (status, body) = server.invoke("keyed", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &body["output"];
    assert_eq!(seen["path"], "/run/secrets/TLS_KEY", "{seen}");
    assert_eq!(
        seen["stat"], "400 65534",
        "mode 0400, owned by the function's user: {seen}"
    );
    let reversed: String = value.chars().rev().collect();
    assert_eq!(seen["reversed"], reversed, "{seen}");
    assert_no_containers(&server, "the file secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_that_does_not_isolate_is_refused() {
    require_root();
    let base = busybox_image("docker-open-network");
    let name = format!("gantry-test-open-{}", uuid::Uuid::new_v4().simple());
    let (ok, text) = docker(&["network", "create", &name]);
    assert!(ok, "{text}");
    // In use, so the server cannot re-create it isolated.
    let (ok, holder) = docker(&[
        "run",
        "-d",
        "--network",
        &name,
        "--entrypoint",
        "/bin/busybox",
        &base.0,
        "sleep",
        "60",
    ]);
    assert!(ok, "{holder}");
    let (code, stderr) = support::serve_exits(
        &[
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "docker",
            "--docker-network",
            &name,
        ],
        &[],
    )
    .await;
    let _ = docker(&["rm", "-f", holder.trim()]);
    let _ = docker(&["network", "rm", &name]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("does not isolate its containers"),
        "{stderr}"
    );
}
