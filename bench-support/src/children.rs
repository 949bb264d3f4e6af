//! The processes a bench has started, stopped with it when the bench itself is stopped
//! by SIGINT, SIGTERM or SIGHUP, so that an interrupted run leaves no server behind.
//!
//! The signals are caught (signal-hook's self-pipe), not blocked: a blocked signal
//! stays blocked in every child, which then could not be stopped with it either.

use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::process::is_alive;
use crate::BenchResult;

/// The pids of the children started with [`spawn`] and not yet reaped by
/// [`crate::process::terminate`].
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// How long the children get to exit after SIGTERM before they are SIGKILLed.
const GRACE: Duration = Duration::from_secs(10);

fn children() -> MutexGuard<'static, Vec<u32>> {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes SIGINT, SIGTERM and SIGHUP stop every child started with [`spawn`] (SIGTERM,
/// then SIGKILL after 10 s) before the bench exits with status 128 + the signal's number.
/// Call it at the start of `main`. The children start with the default handling of
/// every signal (a caught signal's handler does not survive `exec`).
pub fn stop_children_on_signal() -> BenchResult<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            let stopped = stop_all(GRACE);
            let name = Signal::try_from(signal).map_or("a signal", Signal::as_str);
            eprintln!("{name}: stopped {stopped} process(es) the bench had started");
            std::process::exit(128 + signal);
        })?;
    Ok(())
}

/// Starts `command`, and remembers its pid for [`stop_children_on_signal`] until
/// [`crate::process::terminate`] reaps it.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    // Held across the spawn, so a signal cannot come between the start and the record.
    let mut children = children();
    let child = command.spawn()?;
    children.push(child.id());
    Ok(child)
}

/// Forgets `pid`, reaped by its owner.
pub(crate) fn forget(pid: u32) {
    children().retain(|&known| known != pid);
}

/// SIGTERMs the remembered children that are still this process's, waits up to `grace`
/// for them to exit and SIGKILLs the rest; answers how many there were. Holds the list
/// to the end, so no child starts meanwhile.
fn stop_all(grace: Duration) -> usize {
    let children = children();
    // A pid reaped by its owner without `terminate` could since name someone else's
    // process: only those whose parent is still this process are signalled.
    let ours: Vec<u32> = children
        .iter()
        .copied()
        .filter(|&pid| is_child(pid))
        .collect();
    signal_all(&ours, Signal::SIGTERM);
    let started = Instant::now();
    while started.elapsed() < grace && ours.iter().any(|&pid| is_alive(pid)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stubborn: Vec<u32> = ours.iter().copied().filter(|&pid| is_alive(pid)).collect();
    signal_all(&stubborn, Signal::SIGKILL);
    ours.len()
}

fn signal_all(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Whether process `pid` is a child of this process (its `stat`'s parent field).
fn is_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The fields after the command's closing parenthesis: state, then the parent's pid.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        .is_some_and(|parent| parent == std::process::id())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::{forget, is_child, spawn, stop_all};
    use crate::process::{is_alive, terminate};

    #[test]
    fn a_spawned_child_is_ours_until_it_is_reaped() {
        let child = spawn(Command::new("sleep").arg("30").stdin(Stdio::null())).expect("runs");
        let pid = child.id();
        assert!(is_child(pid));
        assert!(super::children().contains(&pid));
        terminate(child, Duration::from_secs(10), "sleep").expect("stopped");
        assert!(!super::children().contains(&pid));
        assert!(!is_child(pid));
        assert!(!is_child(1), "init is nobody's child here");
        forget(pid); // forgetting twice is harmless
    }

    #[test]
    fn stop_all_kills_a_child_that_ignores_sigterm() {
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; echo ready; exec sleep 30"]);
        let mut child = spawn(command.stdin(Stdio::null()).stdout(Stdio::piped())).expect("runs");
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)
            .expect("ready");
        let pid = child.id();
        // Other tests' children may be listed too: they are stopped as well, which the
        // other test of this module tolerates (it only checks the list).
        assert!(stop_all(Duration::from_millis(200)) >= 1);
        child.wait().expect("reaped");
        assert!(!is_alive(pid));
        forget(pid);
    }
}
