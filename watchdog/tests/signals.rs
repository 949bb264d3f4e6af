//! PID 1 duties: SIGTERM/SIGINT are forwarded to the function's process group, and
//! orphaned descendants are reaped (also as PID 1 of a new PID namespace).

mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use support::{assert_no_leftovers, watchdog, watchdog_bin, MarkerGuard, Watchdog, MARKER_VAR};

/// A function that waits for a signal and reports which one it got.
const WAITS_FOR_SIGNAL: &str = r#"python3 -c '
import json, signal, sys, time
got = []
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda n, f: got.append(signal.Signals(n).name))
print("ready", file=sys.stderr, flush=True)
while not got:
    time.sleep(0.01)
print(json.dumps({"got": got[0]}))
'"#;

/// Starts `run`, waits for its function to print "ready" on stderr, sends `signal` to
/// the watchdog, and returns the exit code and the report it printed. Checks that no
/// process is left behind.
async fn signal_when_ready(run: Watchdog, signal: Signal) -> (Option<i32>, serde_json::Value) {
    let Watchdog {
        mut command,
        marker,
    } = run;
    let _cleanup = MarkerGuard(marker.clone());
    let mut child = command.spawn().unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "ready");
    kill(Pid::from_raw(child.id().unwrap() as i32), signal).unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = serde_json::from_slice(output.stdout.trim_ascii()).expect("a report on stdout");
    assert_no_leftovers(&marker).await;
    (output.status.code(), report)
}

#[tokio::test]
async fn sigterm_and_sigint_are_forwarded_to_the_function() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let (code, report) = signal_when_ready(watchdog("STDIO", WAITS_FOR_SIGNAL), signal).await;
        assert_eq!(
            report["output"],
            json!({"got": signal.as_str()}),
            "{report}"
        );
        assert_eq!(code, Some(0));
    }
}

#[tokio::test]
async fn a_function_that_ignores_a_forwarded_sigterm_is_killed_after_the_grace_period() {
    let run = watchdog(
        "STDIO",
        r#"sh -c "trap '' TERM; echo ready >&2; sleep 300""#,
    )
    .env("KILL_GRACE_MS", "300");
    let (code, report) = signal_when_ready(run, Signal::SIGTERM).await;
    assert_eq!(code, Some(1));
    assert_eq!(report["error"]["code"], "RUNTIME_CRASHED", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("SIGKILL"), "{report}");
}

#[tokio::test]
async fn orphans_are_reaped_by_the_watchdog_as_pid_1_of_a_pid_namespace() {
    // The function double-forks a short-lived process (re-parented to PID 1 when its
    // parent exits), waits for it to die, then counts zombies in the namespace.
    let function = r#"sh -c '
        (sleep 0.2 &)
        sleep 1
        zombies=$(grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | wc -l)
        echo "{\"zombies\": $zombies, \"parent\": $PPID}"
    '"#;
    let marker = uuid::Uuid::new_v4().to_string();
    let _cleanup = MarkerGuard(marker.clone());
    let output = tokio::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(watchdog_bin())
        .env("EXECUTION_MODE", "STDIO")
        .env("WATCHDOG_CMD", function)
        .env(MARKER_VAR, &marker)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .unwrap()
        .expect("unshare runs (the tests run as root, as in CI)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout {stdout}, stderr {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        report["output"],
        json!({"zombies": 0, "parent": 1}),
        "{report}"
    );
    assert_no_leftovers(&marker).await;
}

#[tokio::test]
async fn outside_a_namespace_the_watchdog_adopts_orphans_and_reaps_them() {
    // As a child subreaper the watchdog adopts the orphaned `sleep 2` (rather than the
    // host's init), then reaps it when it exits: no zombie child of the watchdog remains.
    // (Two seconds leave the scan of /proc time to find it on a loaded machine.)
    let function = r#"sh -c '
        (exec sleep 2 &)
        sleep 0.2
        adopter=none
        for d in /proc/[0-9]*; do
            [ "$(tr "\0" " " < $d/cmdline 2>/dev/null)" = "sleep 2 " ] || continue
            set -- $(cat $d/stat); adopter=$4
        done
        sleep 2.5
        zombies=0
        for s in /proc/[0-9]*/stat; do
            set -- $(cat "$s" 2>/dev/null) || continue
            [ "$4" = "$PPID" ] && [ "$3" = Z ] && zombies=$((zombies + 1))
        done
        echo "{\"adopted\": $([ "$adopter" = "$PPID" ] && echo true || echo false), \"zombies\": $zombies}"
    '"#;
    let finished = watchdog("STDIO", function).run().await;
    assert_eq!(finished.code, 0, "{finished:?}");
    assert_eq!(
        finished.report()["output"],
        json!({"adopted": true, "zombies": 0})
    );
}
