//! One instance of the process runtime: its watchdog child, the tasks copying its
//! output, and what stops everything it started: its cgroup where the server has them,
//! else the marker scan of [`super::orphans`].

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::task::JoinHandle;

use super::cgroup::Cgroup;
use super::orphans;
use super::process_ports::PortLease;
use super::{Instance, InstanceExit, OomProbe};

/// A started watchdog and what belongs to it.
pub(super) struct ProcessInstance {
    pub id: String,
    pub child: Child,
    pub stdout_task: Option<JoinHandle<Option<String>>>,
    pub stderr_task: Option<JoinHandle<Option<String>>>,
    pub exit: Option<InstanceExit>,
    pub markers: Arc<Vec<String>>,
    pub scratch: PathBuf,
    /// Ports of its WARM server and HTTP runtime, held until the instance is gone.
    pub _ports: Vec<PortLease>,
    /// Its cgroup, removed once the instance is gone.
    pub cgroup: Option<Cgroup>,
    /// Whether its memory limit killed a process, remembered when the cgroup goes.
    pub oom_seen: bool,
}

impl ProcessInstance {
    /// Kills whatever is left in the cgroup and removes it, keeping its OOM count.
    async fn empty_cgroup(&mut self) {
        let Some(cgroup) = self.cgroup.take() else {
            return;
        };
        self.oom_seen |= cgroup.oom_kills() > 0;
        if let Err(err) = cgroup.destroy_async().await {
            tracing::warn!(instance = %self.id, "{err}");
        }
    }
}

#[async_trait]
impl Instance for ProcessInstance {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wait(&mut self) -> InstanceExit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let status = self.child.wait().await;
        // The instance ends with its watchdog: what the function left running (which
        // may hold the output pipes open) goes before the output is read to its end.
        self.empty_cgroup().await;
        let last_stdout_line = match self.stdout_task.take() {
            Some(task) => task.await.ok().flatten(),
            None => None,
        };
        if let Some(task) = self.stderr_task.take() {
            let _ = task.await;
        }
        let exit = match status {
            Ok(status) => InstanceExit {
                code: status.code(),
                signal: status.signal(),
                last_stdout_line,
            },
            Err(_) => InstanceExit {
                code: None,
                signal: None,
                last_stdout_line,
            },
        };
        self.exit = Some(exit.clone());
        let _ = tokio::fs::remove_dir_all(&self.scratch).await;
        exit
    }

    async fn kill(&mut self, grace: Duration) {
        if self.cgroup.is_some() {
            // The watchdog forwards SIGTERM to the function's group; after the grace
            // period everything in the cgroup is killed, wherever it went.
            if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                let _ = tokio::time::timeout(grace, self.child.wait()).await;
            }
            self.empty_cgroup().await;
        } else {
            // Whatever still carries the execution's markers after the grace period
            // gets SIGKILL.
            orphans::stop_marked(&self.markers, grace).await;
        }
        let _ = self.child.start_kill();
        self.wait().await;
    }

    async fn oom_killed(&mut self) -> bool {
        self.oom_seen
            || self
                .cgroup
                .as_ref()
                .is_some_and(|cgroup| cgroup.oom_kills() > 0)
    }

    fn oom_probe(&self) -> Option<OomProbe> {
        let cgroup = self.cgroup.clone()?;
        Some(OomProbe::new(move || cgroup.oom_kills()))
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        // Never leave a process behind, even on a path that forgot to wait.
        let _ = self.child.start_kill();
        match self.cgroup.take() {
            Some(cgroup) => {
                // Emptying may take a moment; not on the async runtime's thread.
                let id = self.id.clone();
                std::thread::spawn(move || {
                    if let Err(err) = cgroup.destroy() {
                        tracing::warn!(instance = %id, "{err}");
                    }
                });
            }
            None => {
                let pids = orphans::find_marked(&self.markers);
                orphans::signal_all(&pids, Signal::SIGKILL);
            }
        }
    }
}
