//! Finding and stopping host processes by their markers.
//!
//! Every process the process runtime starts carries `GANTRY_OWNER=<data dir id>` and
//! `EXECUTION_ID=<id>` in its environment, and so do the function's processes, which
//! inherit it even though the watchdog puts them in a process group of their own. A scan
//! of `/proc/*/environ` therefore finds everything an execution (or a whole earlier run
//! of the control plane) started, even after the watchdog itself was SIGKILLed. The
//! watchdog hides its own environment (it holds the execution's token), so it also
//! carries the markers in its `argv[0]`, which `/proc/*/cmdline` shows to everyone.
//! A process that clears its environment (`env -i`) escapes the scan: where the server
//! has cgroups, an instance's cgroup finds it instead ([`super::cgroup`]), and this scan
//! only covers what ran without them.

use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, getpgrp, Pid};

/// Pids (other than this process) whose environment holds every `KEY=VALUE` in `markers`.
pub fn find_marked(markers: &[String]) -> Vec<i32> {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        // A process that is not dumpable (the watchdog) hides its environment from
        // other users, and from its own user without CAP_SYS_PTRACE: its argv[0] says.
        let marked = |path: &str, read: fn(Vec<u8>) -> Vec<u8>| {
            std::fs::read(entry.path().join(path))
                .map(read)
                .is_ok_and(|marks| has_all(&marks, markers))
        };
        if marked("environ", |environ| environ) || marked("cmdline", argv0_marks) {
            if let Ok(pid) = i32::try_from(pid) {
                found.push(pid);
            }
        }
    }
    found
}

/// The `argv[0]` a marked process is started with: a name and its markers, so that
/// [`find_marked`] finds it in `/proc/<pid>/cmdline`.
pub fn marked_argv0(name: &str, markers: &[String]) -> String {
    std::iter::once(name)
        .chain(markers.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the NUL-separated `marks` hold every one of `markers`.
fn has_all(marks: &[u8], markers: &[String]) -> bool {
    markers
        .iter()
        .all(|marker| marks.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
}

/// The words of the first argument in a `/proc/<pid>/cmdline`, NUL-separated like an
/// environment.
fn argv0_marks(cmdline: Vec<u8>) -> Vec<u8> {
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    argv0.split(|&b| b == b' ').collect::<Vec<_>>().join(&0u8)
}

/// Sends `signal` to each pid and to its process group (never to this process's group).
pub fn signal_all(pids: &[i32], signal: Signal) {
    let own_group = getpgrp();
    for &pid in pids {
        let pid = Pid::from_raw(pid);
        if let Ok(group) = getpgid(Some(pid)) {
            if group != own_group && group.as_raw() > 1 {
                let _ = killpg(group, signal);
            }
        }
        let _ = kill(pid, signal);
    }
}

/// How long [`stop_marked`] waits for SIGKILLed processes to be gone.
const KILLED_WAIT: Duration = Duration::from_secs(2);

/// Stops every process carrying `markers`: SIGTERM, then SIGKILL to whatever is left
/// after `grace`, and returns once none is alive (zombies aside; at most 2 s after the
/// SIGKILL). Answers how many processes were found at first.
pub async fn stop_marked(markers: &[String], grace: Duration) -> usize {
    let pids = alive_marked(markers).await;
    if pids.is_empty() {
        return 0;
    }
    signal_all(&pids, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let alive = alive_marked(markers).await;
        if alive.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline + KILLED_WAIT {
            tracing::warn!(pids = ?alive, "processes are still alive 2 s after SIGKILL");
            break;
        }
        // SIGKILL once the grace is over; again for any process forked since.
        if tokio::time::Instant::now() >= deadline {
            signal_all(&alive, Signal::SIGKILL);
        }
    }
    pids.len()
}

/// Live (not zombie) processes carrying `markers`.
async fn alive_marked(markers: &[String]) -> Vec<i32> {
    let scan = markers.to_vec();
    tokio::task::spawn_blocking(move || {
        find_marked(&scan)
            .into_iter()
            .filter(|pid| !is_zombie(*pid))
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Whether `pid` has exited and only waits to be reaped.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[tokio::test]
    async fn finds_and_stops_marked_processes_and_their_groups() {
        let marker = format!("GANTRY_TEST_MARKER={}", uuid::Uuid::new_v4());
        let (key, value) = marker.split_once('=').unwrap();
        // A shell in its own group that starts a grandchild ignoring SIGTERM.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .env(key, value)
            .process_group(0)
            .spawn()
            .unwrap();
        let markers = vec![marker];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while find_marked(&markers).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "processes never appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = stop_marked(&markers, Duration::from_millis(200)).await;
        assert!(stopped >= 2, "found {stopped}");
        let _ = child.wait();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<i32> = find_marked(&markers)
                .into_iter()
                .filter(|pid| !is_zombie(*pid))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "survivors: {left:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn finds_processes_marked_in_their_first_argument() {
        let markers = vec![
            format!("GANTRY_TEST_MARKER={}", uuid::Uuid::new_v4()),
            "EXECUTION_ID=e1".to_owned(),
        ];
        let mut child = std::process::Command::new("sleep")
            .arg0(marked_argv0("gantry-watchdog", &markers))
            .arg("30")
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while find_marked(&markers).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never found");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(find_marked(&markers[..1]).contains(&(child.id() as i32)));
        assert!(find_marked(&[format!("{}x", markers[0])]).is_empty());
        stop_marked(&markers, Duration::from_millis(200)).await;
        let _ = child.wait();
    }
}
