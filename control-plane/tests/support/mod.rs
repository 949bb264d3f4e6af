//! Shared test support: the real `gantry serve` on port 0 with a temporary data
//! directory, real watchdog processes, an HTTP client, and a check that no process the
//! server started outlives it.

#![allow(dead_code, missing_docs, unused_imports)]

mod api;
mod cluster;
pub mod docker;
/// A throwaway PostgreSQL server, the one the store's own tests use.
#[path = "../../src/store/postgres/test_server.rs"]
pub mod postgres;
mod procs;
mod schedules;
mod warm;

pub use api::*;
pub use cluster::*;
pub use procs::*;
pub use schedules::*;
pub use warm::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Settings of the caller's shell that a test's server must not pick up.
pub const CALLER_SETTINGS: &[&str] = &[
    "GANTRY_TOKEN",
    "GANTRY_TOKEN_FILE",
    "GANTRY_SECRET_KEY",
    "GANTRY_URL",
];

/// The `gantry` binary under test.
pub fn gantry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gantry"))
}

/// The watchdog binary, built once per test run (it is another package's binary, which
/// `cargo test -p gantry-control-plane` does not build by itself).
pub fn watchdog_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "gantry-watchdog",
                    "--bin",
                    "watchdog",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build for the watchdog");
            assert!(status.success(), "building the watchdog failed");
            gantry_bin()
                .parent()
                .expect("gantry has a directory")
                .join("watchdog")
        })
        .clone()
}

/// A temporary directory the functions may write to: when the server runs as root they
/// run as `nobody`, who cannot enter the test's own 0700 temporary directories.
pub fn function_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("open the temp dir to the function user");
    dir
}

/// A file under `control-plane/tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// How to start a server.
#[derive(Clone, Default)]
pub struct ServerOptions {
    pub token: Option<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

/// A running `gantry serve`.
pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    _temp: Option<Arc<tempfile::TempDir>>,
    temp_shared: Option<Arc<tempfile::TempDir>>,
    pub client: reqwest::Client,
    /// Started with `--runtime docker`: its containers are removed on drop too.
    docker: bool,
}

impl Server {
    /// A server on a fresh data directory with default options.
    pub async fn start() -> Server {
        Server::start_with(ServerOptions::default()).await
    }

    /// A server on a fresh data directory.
    pub async fn start_with(options: ServerOptions) -> Server {
        // Functions may write beside the data directory (which stays private).
        let temp = Arc::new(function_tempdir());
        let data_dir = temp.path().join("data");
        Server::launch(data_dir, Some(temp), options).await
    }

    /// A server on the data directory `data_dir` (which the caller prepared).
    pub async fn start_in(data_dir: PathBuf, options: ServerOptions) -> Server {
        Server::launch(data_dir, None, options).await
    }

    /// Starts another server on this one's data directory (after it stopped or was killed).
    pub async fn restart(&mut self, options: ServerOptions) -> Server {
        let temp = self.temp_shared.clone();
        Server::launch(self.data_dir.clone(), temp, options).await
    }

    async fn launch(
        data_dir: PathBuf,
        temp: Option<Arc<tempfile::TempDir>>,
        options: ServerOptions,
    ) -> Server {
        let mut command = Command::new(gantry_bin());
        command.arg("serve");
        if !options.args.iter().any(|arg| arg == "--listen") {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&options.args)
            .env("GANTRY_WATCHDOG", watchdog_bin())
            .env("GANTRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in CALLER_SETTINGS {
            command.env_remove(var);
        }
        if let Some(token) = &options.token {
            command.env("GANTRY_TOKEN", token);
        }
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start gantry serve");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let log_copy = log.clone();
        tokio::spawn(async move {
            let mut url_tx = Some(url_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Some(tx) = url_tx.take() {
                        let url = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let _ = tx.send(url);
                    }
                }
                let mut log = log_copy.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(30), url_rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "gantry serve did not start (exit {status:?}); its stderr:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        // Without a token of its own, the server made an admin token in its data
        // directory: the one the CLI on this machine uses too.
        let token = options.token.clone().or_else(|| {
            std::fs::read_to_string(data_dir.join("admin-token"))
                .ok()
                .map(|text| text.trim().to_owned())
        });
        Server {
            url,
            data_dir,
            token,
            child: Some(child),
            stderr: log,
            _temp: temp.clone(),
            temp_shared: temp,
            client: reqwest::Client::new(),
            docker: options.args.iter().any(|arg| arg == "docker"),
        }
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("server running") as i32
    }

    /// SIGKILL: a crash.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then waits (at most 30 s) for a clean exit; answers the exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("the server stops within 30 s after SIGTERM")
            .expect("wait for the server");
        status.code()
    }

    /// A request to `path` with the server's token, if any.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and answers status, headers and the JSON body (`Null` if none).
    pub async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    /// `POST /v1/functions` and asserts 201.
    pub async fn deploy(&self, manifest: Value) -> Value {
        let (status, _, body) = self
            .call(self.request(Method::POST, "/v1/functions").json(&manifest))
            .await;
        assert_eq!(status, StatusCode::CREATED, "deploy failed: {body}");
        body
    }

    /// `POST /v1/functions/{name}:invoke`.
    pub async fn invoke(&self, name: &str, input: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                self.request(Method::POST, &format!("/v1/functions/{name}:invoke"))
                    .json(&input),
            )
            .await;
        (status, body)
    }

    /// `POST /v1/functions/{name}:enqueue`; asserts 202 and answers the execution id.
    pub async fn enqueue(&self, name: &str, input: Value) -> String {
        let (status, _, body) = self
            .call(
                self.request(Method::POST, &format!("/v1/functions/{name}:enqueue"))
                    .json(&input),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "enqueue failed: {body}");
        body["executionId"]
            .as_str()
            .expect("executionId")
            .to_owned()
    }

    /// `GET /v1/executions/{id}`.
    pub async fn execution(&self, id: &str) -> Value {
        let (status, _, body) = self
            .call(self.request(Method::GET, &format!("/v1/executions/{id}")))
            .await;
        assert_eq!(status, StatusCode::OK, "get execution failed: {body}");
        body
    }

    /// Polls execution `id` until it is terminal (at most `within`).
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let execution = self.execution(id).await;
            let status = execution["status"].as_str().unwrap_or_default();
            if ["success", "error", "timeout", "cancelled"].contains(&status) {
                return execution;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} still {status} after {within:?}: {execution}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until every execution of `ids` is terminal, all within `within`; answers
    /// each final record by id.
    pub async fn wait_all_terminal(
        &self,
        ids: &[String],
        within: Duration,
    ) -> std::collections::BTreeMap<String, Value> {
        let deadline = Instant::now() + within;
        let mut ended = std::collections::BTreeMap::new();
        for id in ids {
            let left = deadline.saturating_duration_since(Instant::now());
            ended.insert(id.clone(), self.wait_terminal(id, left).await);
        }
        ended
    }

    /// Polls execution `id` until its status is `status` (at most `within`).
    pub async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let execution = self.execution(id).await;
            if execution["status"] == status {
                return execution;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} never reached {status}: {execution}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The owner id that marks every process this data directory's server starts.
    pub fn owner_id(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("owner-id"))
            .expect("the server wrote owner-id")
            .trim()
            .to_owned()
    }

    /// Live processes (not zombies) started by servers of this data directory.
    pub fn instance_processes(&self) -> Vec<(u32, String)> {
        processes_with_env(&format!("GANTRY_OWNER={}", self.owner_id()))
    }

    /// Fails unless no process started by this data directory's servers is alive within 5 s.
    pub async fn assert_no_instances(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.instance_processes();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes of the function survived: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        // Whatever a failed test left running dies with it.
        if let Ok(owner) = std::fs::read_to_string(self.data_dir.join("owner-id")) {
            for (pid, _) in processes_with_env(&format!("GANTRY_OWNER={}", owner.trim())) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            remove_what_a_killed_server_leaves(owner.trim());
            if self.docker {
                let filter = format!("label=gantry.owner={}", owner.trim());
                let listed = std::process::Command::new("docker")
                    .args(["ps", "-aq", "--filter", &filter])
                    .output();
                if let Ok(listed) = listed {
                    let ids = String::from_utf8_lossy(&listed.stdout).into_owned();
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    if !ids.is_empty() {
                        let _ = std::process::Command::new("docker")
                            .args(["rm", "-f"])
                            .args(&ids)
                            .output();
                    }
                }
            }
        }
    }
}

/// Removes what the server of data directory `owner`, killed at the end of a test,
/// could not: its cgroups (killing what is left in them) and its function users'
/// scratch root, which a stopped server removes itself.
pub fn remove_what_a_killed_server_leaves(owner: &str) {
    remove_cgroups(owner);
    let _ = std::fs::remove_dir_all(scratch_root(owner));
}

/// The root of the scratch directories of the function users of data directory
/// `owner`'s server, in the temp directory.
pub fn scratch_root(owner: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gantry-{owner}"))
}

/// Where the server of data directory `owner` would keep its parent cgroups: under
/// every hierarchy of a v1 host, and at the root of a v2 one (whether or not they exist).
pub fn cgroup_parents(owner: &str) -> Vec<PathBuf> {
    let name = format!("gantry-{owner}");
    let mut parents: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|hierarchies| hierarchies.flatten().map(|entry| entry.path().join(&name)))
        .into_iter()
        .flatten()
        .collect();
    parents.push(Path::new("/sys/fs/cgroup").join(name));
    parents
}

/// Kills what is left in the cgroups of data directory `owner` and removes them (the
/// server, killed at the end of a test, cannot).
fn remove_cgroups(owner: &str) {
    for parent in cgroup_parents(owner).into_iter().filter(|dir| dir.is_dir()) {
        let children: Vec<PathBuf> = std::fs::read_dir(&parent)
            .map(|entries| entries.flatten().map(|entry| entry.path()))
            .into_iter()
            .flatten()
            .filter(|path| path.is_dir())
            .collect();
        for child in children {
            let deadline = Instant::now() + Duration::from_secs(2);
            while std::fs::remove_dir(&child).is_err() && Instant::now() < deadline {
                let procs = std::fs::read_to_string(child.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .lines()
                    .filter_map(|line| line.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir(&parent);
    }
}

impl Server {
    /// Starts another server on this one's (stopped) data directory with `options`,
    /// expecting it to exit at once; answers its exit code and stderr.
    pub async fn restart_exits(&self, options: ServerOptions) -> (Option<i32>, String) {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend(options.args.iter().map(String::as_str));
        let env: Vec<(&str, &str)> = options
            .env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        serve_exits_in(&self.data_dir, &args, &env).await
    }
}

/// Runs `gantry serve` with `args` and `env`, expecting it to exit at once; answers its
/// exit code and stderr.
pub async fn serve_exits(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let temp = tempfile::tempdir().unwrap();
    serve_exits_in(&temp.path().join("data"), args, env).await
}

/// [`serve_exits`] on the data directory `data_dir`.
pub async fn serve_exits_in(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut command = Command::new(gantry_bin());
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_TOKEN_FILE")
        .env_remove("GANTRY_SECRET_KEY")
        .env_remove("GANTRY_LISTEN")
        .env_remove("GANTRY_RUNTIME")
        .env("GANTRY_WATCHDOG", watchdog_bin())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("gantry serve exits instead of serving")
        .expect("run gantry serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A STDIO function running `tests/fixtures/count.py`, which appends one line per run
/// to `count_file` and answers how many runs it has seen.
pub fn counting_function(name: &str, count_file: &Path) -> Value {
    stdio_function(
        name,
        "python3 count.py",
        json!({"env": {"COUNT_FILE": count_file.to_str().expect("a UTF-8 path")}}),
    )
}

/// A STDIO function running `command` (a shell line) with `extra` merged into the manifest.
pub fn stdio_function(name: &str, command: &str, extra: Value) -> Value {
    let mut manifest = json!({
        "name": name,
        "mode": "STDIO",
        "command": command,
        "working_dir": format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR")),
    });
    if let (Some(base), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    manifest
}

/// How many times each line occurs in the file at `path` (none when it is missing):
/// functions that append their execution id per run count their runs this way.
pub fn count_lines(path: &Path) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counted = std::collections::BTreeMap::new();
    for line in text.lines() {
        *counted.entry(line.to_owned()).or_default() += 1;
    }
    counted
}
