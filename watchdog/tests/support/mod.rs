//! Shared test support: run the real watchdog binary, a real callback server on port 0,
//! and a check that no process started by a test outlives it.

#![allow(dead_code, missing_docs)]

pub mod callback;
pub mod warm;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

/// Every variable the watchdog reads: cleared so the test's own environment never leaks in.
pub const WATCHDOG_VARS: &[&str] = &[
    "EXECUTION_MODE",
    "WATCHDOG_CMD",
    "EXECUTION_ID",
    "CALLBACK_URL",
    "CALLBACK_TOKEN",
    "INVOCATION_PAYLOAD",
    "PAYLOAD_URL",
    "TIMEOUT_MS",
    "KILL_GRACE_MS",
    "RUNTIME_URL",
    "HEALTH_URL",
    "READY_TIMEOUT_MS",
    "INPUT_FILE",
    "OUTPUT_FILE",
    "WARM_PORT",
    "WARM_HOST",
    "WARM_IDLE_TIMEOUT_MS",
    "WARM_MAX_INVOCATIONS",
    "WARM_RUNTIME",
    "WARM_CONCURRENCY",
    "MAX_OUTPUT_BYTES",
    "TRACE_ID",
    "TRACEPARENT",
    "TRACESTATE",
    "RUN_AS",
    "WARM_TOKEN",
    "SECRET_FILES",
    "SECRETS_DIR",
    "PORT",
    "CGROUP_PROCS",
];

/// Fails the test unless it runs as root, which tests that switch users need (CI runs
/// the suite as root).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (as CI has): it runs the function or the watchdog as another user"
    );
}

/// A fresh directory under the system temp dir, removed with its contents when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates it with `mode` (0o1777 lets a function of another user write in it, as
    /// in /tmp).
    pub fn new(mode: u32) -> Scratch {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("gantry-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        Scratch(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory itself.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Name of the variable that tags every process a test starts.
pub const MARKER_VAR: &str = "GANTRY_TEST_MARKER";

pub fn watchdog_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_watchdog"))
}

/// A file under `watchdog/tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A file under the repository's `examples/`.
pub fn example(path: &str) -> String {
    format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free a moment ago, for a runtime the watchdog starts (and restarts).
///
/// It is chosen below the kernel's ephemeral range: a port from that range, released for
/// the runtime to bind, can be taken meanwhile as the local port of any outgoing
/// connection, and a restarted runtime would then fail to bind it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    for attempt in 0u32..1000 {
        let port = low + (RandomState::new().hash_one(attempt) % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// A watchdog about to run, with a fresh marker in its environment.
pub struct Watchdog {
    pub command: Command,
    pub marker: String,
}

/// A watchdog in `mode` running `user_command`.
pub fn watchdog(mode: &str, user_command: &str) -> Watchdog {
    watchdog_via(&[], mode, user_command)
}

/// A watchdog in `mode` running `user_command`, started through `wrapper` (a program
/// and its arguments, such as `setpriv` with its options) when it is not empty.
pub fn watchdog_via(wrapper: &[&str], mode: &str, user_command: &str) -> Watchdog {
    let marker = uuid::Uuid::new_v4().to_string();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(watchdog_bin());
            command
        }
        None => Command::new(watchdog_bin()),
    };
    for var in WATCHDOG_VARS {
        command.env_remove(var);
    }
    command
        .env("EXECUTION_MODE", mode)
        .env("WATCHDOG_CMD", user_command)
        .env(MARKER_VAR, &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Watchdog { command, marker }
}

/// What a one-shot watchdog did.
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub marker: String,
}

/// At most 2000 characters of `text`, for failure messages.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(2000) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("code", &self.code)
            .field("stdout", &clip(&self.stdout))
            .field("stderr", &clip(&self.stderr))
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl Finished {
    /// The report printed on stdout (its last line).
    pub fn report(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty());
        let line = line.unwrap_or_else(|| panic!("no report on stdout; stderr: {}", self.stderr));
        serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("report {line:?} is not JSON: {err}"))
    }

    /// The report's error code, or `None` on success.
    pub fn error_code(&self) -> Option<String> {
        error_code(&self.report())
    }
}

/// Asserts that `report` is a failure with `code` whose message mentions every fragment.
#[track_caller]
pub fn assert_failed(report: &Value, code: &str, mentions: &[&str]) {
    assert_eq!(report["success"], false, "{report}");
    assert_eq!(report["error"]["code"], code, "{report}");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    for fragment in mentions {
        assert!(
            message.contains(fragment),
            "{message:?} should mention {fragment:?}"
        );
    }
}

/// `report.error.code`.
pub fn error_code(report: &Value) -> Option<String> {
    report["error"]["code"].as_str().map(str::to_owned)
}

impl Watchdog {
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Watchdog {
        self.command.env(name, value);
        self
    }

    /// Runs a one-shot watchdog to completion (at most 60 s) and checks it left nothing behind.
    pub async fn run(mut self) -> Finished {
        let _cleanup = MarkerGuard(self.marker.clone());
        let started = Instant::now();
        let child = self.command.spawn().expect("start the watchdog");
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the watchdog finishes within 60 s")
            .expect("wait for the watchdog");
        let finished = Finished {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
            marker: self.marker.clone(),
        };
        assert_no_leftovers(&self.marker).await;
        finished
    }
}

/// Processes (other than zombies) whose environment carries `marker`.
pub fn processes_with_marker(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARKER_VAR}={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline));
        }
    }
    found
}

/// Kills every process tagged with `marker` when dropped, so a failing test (whose
/// watchdog gets SIGKILL and cannot stop its children) leaves nothing running either.
pub struct MarkerGuard(pub String);

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        kill_marked(&self.0);
    }
}

fn kill_marked(marker: &str) {
    for (pid, _) in processes_with_marker(marker) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Fails the test if any process tagged with `marker` is still alive after 3 s.
pub async fn assert_no_leftovers(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let alive = processes_with_marker(marker);
        if alive.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for (pid, _) in &alive {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
            panic!("processes left behind: {alive:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
