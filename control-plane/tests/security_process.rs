//! The process runtime against a function written by a stranger, on a server running
//! as root (as CI runs it): the function runs as `nobody`, finds no credential in any
//! process it can read, cannot complete its own or another execution with a forged
//! result, and cannot call a warm instance without that instance's credential; its
//! scratch root outside the data directory goes when the server stops. Also the data
//! directory: private whatever the umask, and nothing left outside it by a refused start.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    processes_with_env, stdio_function, wait_pool, warm_function, Server, ServerOptions,
};
use tokio::io::{AsyncBufReadExt, BufReader};

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (the server then runs functions as nobody); CI runs it as root"
    );
}

/// The WARM_PORT of a warm instance the server runs (read from its watchdog as root).
fn warm_port(server: &Server) -> u16 {
    processes_with_env(&format!("GANTRY_OWNER={}", server.owner_id()))
        .into_iter()
        .find_map(|(pid, _)| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ.split(|b| *b == 0).find_map(|var| {
                std::str::from_utf8(var)
                    .ok()?
                    .strip_prefix("WARM_PORT=")?
                    .parse()
                    .ok()
            })
        })
        .expect("a warm instance runs")
}

#[tokio::test]
async fn a_hostile_function_on_the_process_runtime_gets_nowhere() {
    require_root();
    let mut server = Server::start_with(ServerOptions {
        token: Some("gty_operator-token-held-by-the-server".into()),
        ..ServerOptions::default()
    })
    .await;
    let genuine = r#"sh -c 'cat >/dev/null; sleep 3; printf "%s" "{\"genuine\": 1}"'"#;
    server
        .deploy(stdio_function("victim", genuine, json!({})))
        .await;
    server
        .deploy(stdio_function("attacker", "python3 attacker.py", json!({})))
        .await;
    server
        .deploy(warm_function(
            "warm",
            json!({"min_instances": 1, "max_instances": 1}),
            json!({}),
        ))
        .await;
    wait_pool(&server, "warm", "an idle instance", |p| p["idle"] == 1).await;
    let (status, before) = server.invoke("warm", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{before}");

    let victim = server.enqueue("victim", json!(null)).await;
    server
        .wait_status(&victim, "running", Duration::from_secs(30))
        .await;
    let input = json!({"victim": victim, "warm_port": warm_port(&server)});
    let (status, body) = server.invoke("attacker", input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &body["output"];
    assert_eq!(seen["uid"], 65534, "functions run as nobody: {seen}");
    assert_eq!(
        seen["credentials"],
        json!([]),
        "credentials it read: {seen}"
    );
    assert_eq!(seen["own"], 401, "its own result without the token: {seen}");
    assert_eq!(
        seen["victim"], 403,
        "another's result with a guessed token: {seen}"
    );
    assert_eq!(
        seen["warm"], 401,
        "the warm instance without its credential: {seen}"
    );
    let attacker = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_ne!(attacker["output"], "forged");

    let done = server.wait_terminal(&victim, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"genuine": 1}), "{done}");
    // The attacker's call never ran on the instance: the next call is its second.
    let (_, after) = server.invoke("warm", json!({"n": 2})).await;
    assert_eq!(after["output"]["count"], 2, "{after}");

    // The functions' scratch root is outside the data directory; it goes with the server.
    let scratch_root = support::scratch_root(&server.owner_id());
    assert!(scratch_root.is_dir(), "{}", scratch_root.display());
    assert_eq!(server.stop().await, Some(0), "{}", server.stderr());
    assert!(!scratch_root.exists(), "{} is left", scratch_root.display());
}

/// Every mode under `dir` that is not 0700 (directories) or 0600 (files).
fn loose_modes(dir: &Path) -> Vec<String> {
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != wanted {
            loose.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            loose.extend(loose_modes(&path));
        }
    }
    loose
}

/// `gantry serve` on `data` under `umask 000`; answers its URL, its admin token and the
/// child (killed on drop).
async fn serve_with_open_umask(data: &Path) -> (String, String, tokio::process::Child) {
    let script = r#"umask 000; exec "$0" serve --listen 127.0.0.1:0 --data-dir "$1""#;
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", script])
        .arg(support::gantry_bin())
        .arg(data)
        .env("GANTRY_WATCHDOG", support::watchdog_bin())
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SECRET_KEY")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the server starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    (url, token, child)
}

#[tokio::test]
async fn the_data_directory_is_private_whatever_the_umask() {
    let temp = support::function_tempdir();
    let data = temp.path().join("data");
    // An existing directory with loose modes is tightened too.
    std::fs::create_dir_all(data.join("run")).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("notes"), "x").unwrap();
    std::fs::set_permissions(data.join("notes"), std::fs::Permissions::from_mode(0o666)).unwrap();

    let (url, token, mut child) = serve_with_open_umask(&data).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{url}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let put = client
        .put(format!("{url}/v1/secrets/db"))
        .bearer_auth(&token)
        .json(&json!({"value": "private-value-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let manifest = stdio_function("echo", "python3 echo.py", json!({}));
    assert_eq!(post("/v1/functions", manifest).await.unwrap().status(), 201);
    let invoked = post("/v1/functions/echo:invoke", json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(invoked.status(), StatusCode::OK);

    let loose = loose_modes(&data);
    assert!(loose.is_empty(), "not private: {loose:?}");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for file in [
        "gantry.db",
        "gantry.db-wal",
        "admin-token",
        "secret-key",
        "owner-id",
    ] {
        assert!(data.join(file).exists(), "{file} exists");
    }
    let _ = child.kill().await;
    let owner = std::fs::read_to_string(data.join("owner-id")).unwrap();
    support::remove_what_a_killed_server_leaves(owner.trim());
}

/// What a server of data directory `owner` keeps outside it: its function user's scratch
/// root and its cgroups.
fn outside_the_data_directory(owner: &str) -> Vec<PathBuf> {
    let mut paths = support::cgroup_parents(owner);
    paths.push(support::scratch_root(owner));
    paths
}

/// Starts a server with `args` and `env` that must be refused for `reason`, and checks
/// that it left nothing outside its data directory.
async fn assert_refused_leaving_nothing(args: &[&str], env: &[(&str, &str)], reason: &str) {
    let temp = support::function_tempdir();
    let data = temp.path().join("data");
    let mut vars = vec![("GANTRY_TOKEN", "t")];
    vars.extend_from_slice(env);
    let (code, stderr) = support::serve_exits_in(&data, args, &vars).await;
    assert!(code.is_some_and(|code| code != 0), "{reason}: {stderr}");
    assert!(stderr.contains(reason), "{reason}: {stderr}");
    let owner = std::fs::read_to_string(data.join("owner-id")).unwrap();
    let left: Vec<PathBuf> = outside_the_data_directory(owner.trim())
        .into_iter()
        .filter(|path| path.exists())
        .collect();
    assert!(left.is_empty(), "{reason}: left {left:?}");
}

#[tokio::test]
async fn a_refused_start_leaves_nothing_outside_its_data_directory() {
    require_root();
    // Refused after the runtimes are set up: the address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    assert_refused_leaving_nothing(&["--listen", &taken], &[], "cannot listen").await;
    // Refused while they are: the host processes' runtime is set up, Docker's fails.
    assert_refused_leaving_nothing(
        &[
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "docker",
            "--allow-host-commands",
        ],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        "unreachable",
    )
    .await;
    // Refused by a setting, before anything is set up.
    assert_refused_leaving_nothing(
        &[
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "http://127.0.0.1:9",
        ],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "authorization:x")],
        "OTEL_EXPORTER_OTLP_HEADERS",
    )
    .await;
}
