//! The one place that calls `waitpid`: reaps every child of the watchdog, its own and
//! orphans re-parented to it (as PID 1 or as a child subreaper), and hands each exit
//! status to the [`super::Process`] that owns that pid.
//!
//! Spawning happens with the registry locked, so a child that exits at once is never
//! reaped before its owner is registered; a pid nobody owns is an orphan and is dropped.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use super::ExitStatus;

type Registry = HashMap<i32, oneshot::Sender<ExitStatus>>;

fn registry() -> MutexGuard<'static, Registry> {
    static CHILDREN: OnceLock<Mutex<Registry>> = OnceLock::new();
    CHILDREN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the watchdog the reaper of its descendants and starts the reaping task.
///
/// Idempotent (every spawn calls it); must run inside the tokio runtime.
pub fn start() -> std::io::Result<()> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = STARTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *started {
        return Ok(());
    }
    // Orphaned grandchildren come to us rather than to the host's init, so they are
    // reaped here and a timed-out process group can be seen to be empty.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut sigchld = signal(SignalKind::child())?;
    *started = true;
    tokio::spawn(async move {
        loop {
            reap_exited();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}

/// Spawns with the registry locked and registers the new pid before anyone can reap it.
pub(super) fn spawn_registered<T>(
    spawn: impl FnOnce() -> std::io::Result<(T, i32)>,
) -> std::io::Result<(T, oneshot::Receiver<ExitStatus>)> {
    let mut children = registry();
    let (value, pid) = spawn()?;
    let (tx, rx) = oneshot::channel();
    children.insert(pid, tx);
    Ok((value, rx))
}

/// Collects every exited child without blocking.
fn reap_exited() {
    let mut children = registry();
    loop {
        let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => {
                (pid, ExitStatus::Signal(signal as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) => continue,
            Ok(_) => continue,
            Err(_) => return,
        };
        if let Some(owner) = children.remove(&status.0.as_raw()) {
            let _ = owner.send(status.1);
        }
    }
}
