//! The watchdog under a pids limit (a function that forks until its container's
//! `pids.max` is reached): thread and process creation fail with EAGAIN, and the
//! watchdog must still report a result and exit with a code, never die of a signal.
//!
//! The limit comes from a cgroup v1 `pids` cgroup created for each test (or a cgroup v2
//! one when the unified hierarchy offers the `pids` controller) and removed afterwards.
//! Needs root and the pids controller (as CI has); fails otherwise.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A pids cgroup that exists for one test.
struct PidsCgroup {
    path: PathBuf,
}

impl PidsCgroup {
    /// Creates the cgroup with `pids.max = max`, or `None` where that is not possible.
    fn create(name: &str, max: u32) -> Option<PidsCgroup> {
        let v1 = PathBuf::from("/sys/fs/cgroup/pids");
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let parent = if v1.join("cgroup.procs").exists() {
            v1
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "pids"))
        {
            v2
        } else {
            return None;
        };
        let path = parent.join(format!(
            "gantry-watchdog-test-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir(&path).ok()?;
        let cgroup = PidsCgroup { path };
        std::fs::write(cgroup.path.join("pids.max"), max.to_string()).ok()?;
        Some(cgroup)
    }

    /// Runs the watchdog inside the cgroup with `vars` as its environment additions.
    fn run_watchdog(&self, vars: &[(&str, &str)]) -> Output {
        // The shell moves itself into the cgroup, then becomes the watchdog.
        let procs = self.path.join("cgroup.procs");
        let script = format!("echo $$ > '{}' && exec \"$0\"", procs.display());
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_watchdog"))
            .env_remove("CALLBACK_URL")
            .envs(vars.iter().copied())
            .output()
            .expect("sh runs")
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Whatever is left (a failed test) is killed, then the cgroup removed once empty.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            if std::fs::remove_dir(&self.path).is_ok() || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A pids cgroup for one test. The tests run as root (as in CI, like the PID-namespace
/// test in signals.rs); without one they fail rather than pass without testing.
fn limited(name: &str, max: u32) -> PidsCgroup {
    PidsCgroup::create(name, max)
        .expect("cannot create a pids cgroup: these tests need root and the pids controller")
}

/// Asserts the watchdog exited with `code` (not a signal) and printed a failed report
/// with `error_code`; returns the report.
fn assert_report(output: &Output, code: i32, error_code: &str) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        None,
        "the watchdog died of a signal; stderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|err| panic!("no report on stdout ({err}): {stdout:?}; stderr: {stderr}"));
    assert_eq!(report["success"], false, "{report}");
    assert_eq!(report["error"]["code"], error_code, "{report}");
    report
}

/// A fork bomb: forks sleeping children until the OS refuses (EAGAIN), then, with the
/// limit still reached, writes to stderr (so the watchdog forwards a log line while no
/// thread or process can be created) and fails.
const FORK_BOMB: &str = r#"python3 -c '
import os, sys, time
children = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children += 1
for _ in range(3):
    print("forked", children, "children, then EAGAIN", file=sys.stderr, flush=True)
    time.sleep(0.1)
sys.exit(3)
'"#;

#[test]
fn fork_bomb_in_stdio_mode_is_a_function_error() {
    let cgroup = limited("stdio", 16);
    let output = cgroup.run_watchdog(&[
        ("EXECUTION_MODE", "STDIO"),
        ("WATCHDOG_CMD", FORK_BOMB),
        ("INVOCATION_PAYLOAD", "{}"),
        ("TIMEOUT_MS", "20000"),
        ("KILL_GRACE_MS", "200"),
    ]);
    let report = assert_report(&output, 1, "FUNCTION_ERROR");
    assert_eq!(report["exit_code"], 3, "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("then EAGAIN"), "{stderr}");
}

#[test]
fn fork_bomb_in_file_mode_is_a_function_error() {
    let cgroup = limited("file", 16);
    let dir = std::env::temp_dir().join(format!("gantry-pids-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.json");
    let output_file = dir.join("output.json");
    let output = cgroup.run_watchdog(&[
        ("EXECUTION_MODE", "FILE"),
        ("WATCHDOG_CMD", FORK_BOMB),
        ("INVOCATION_PAYLOAD", "{}"),
        ("INPUT_FILE", input.to_str().unwrap()),
        ("OUTPUT_FILE", output_file.to_str().unwrap()),
        ("TIMEOUT_MS", "20000"),
        ("KILL_GRACE_MS", "200"),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_report(&output, 1, "FUNCTION_ERROR");
}

#[test]
fn no_room_for_the_function_is_a_spawn_error() {
    // One task: the watchdog itself. Neither its log writer thread nor the function
    // can start; the result still gets out.
    let cgroup = limited("spawn", 1);
    let output = cgroup.run_watchdog(&[
        ("EXECUTION_MODE", "STDIO"),
        ("WATCHDOG_CMD", "cat"),
        ("INVOCATION_PAYLOAD", "{}"),
    ]);
    let report = assert_report(&output, 1, "SPAWN_ERROR");
    assert!(
        report["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("Resource temporarily unavailable")),
        "{report}"
    );
}
