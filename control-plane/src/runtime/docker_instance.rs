//! A container running one execution for the docker runtime: waits for it, stops it,
//! tells whether its memory limit killed something, and always removes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    InspectContainerOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::docker::{is_not_found, DockerRuntime, OOM_EVENT_WAIT};
use super::{Instance, InstanceExit};

/// Whether the engine reported an OOM kill in the container.
#[derive(Default)]
pub(super) struct OomWatch {
    pub(super) seen: AtomicBool,
    pub(super) notify: Notify,
}

pub(super) struct DockerInstance {
    pub(super) container: String,
    pub(super) id: String,
    pub(super) docker: Docker,
    pub(super) oom: Arc<OomWatch>,
    pub(super) oom_task: JoinHandle<()>,
    pub(super) demux: Option<JoinHandle<()>>,
    pub(super) stdout_task: Option<JoinHandle<Option<String>>>,
    pub(super) stderr_task: Option<JoinHandle<Option<String>>>,
    pub(super) exit: Option<InstanceExit>,
    pub(super) removed: bool,
    /// Where the removal runs once the container has exited: after the result, off the
    /// caller's path, and awaited by [`super::Runtime::drain`] when the server stops.
    pub(super) removals: TaskTracker,
    /// The network sandbox the container joined, removed with it.
    pub(super) sandbox: Option<String>,
}

impl DockerInstance {
    /// The container's exit code once it has stopped (`None` if the engine cannot say).
    async fn wait_exit(&self) -> Option<i32> {
        let mut stream = self
            .docker
            .wait_container(&self.container, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(response)) => i32::try_from(response.status_code).ok(),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => {
                i32::try_from(code).ok()
            }
            Some(Err(err)) => {
                tracing::warn!(container = %self.container, "waiting for the container: {err}");
                // Poll the state instead (the engine may be back).
                self.docker
                    .inspect_container(&self.container, None::<InspectContainerOptions>)
                    .await
                    .ok()
                    .and_then(|info| info.state)
                    .and_then(|state| state.exit_code)
                    .and_then(|code| i32::try_from(code).ok())
            }
            None => None,
        }
    }
}

#[async_trait]
impl Instance for DockerInstance {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wait(&mut self) -> InstanceExit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let code = self.wait_exit().await;
        if let Ok(info) = self
            .docker
            .inspect_container(&self.container, None::<InspectContainerOptions>)
            .await
        {
            if info.state.and_then(|state| state.oom_killed) == Some(true) {
                self.oom.seen.store(true, Ordering::SeqCst);
            }
        }
        if let Some(demux) = self.demux.take() {
            // The attach stream ends with the container; bounded in case it does not.
            let _ = tokio::time::timeout(Duration::from_secs(2), demux).await;
        }
        let last_stdout_line = match self.stdout_task.take() {
            Some(task) => task.await.ok().flatten(),
            None => None,
        };
        if let Some(task) = self.stderr_task.take() {
            let _ = task.await;
        }
        let (docker, container) = (self.docker.clone(), self.container.clone());
        let sandbox = self.sandbox.take();
        self.removals.spawn(async move {
            DockerRuntime::remove(&docker, &container).await;
            if let Some(sandbox) = sandbox {
                DockerRuntime::remove(&docker, &sandbox).await;
            }
        });
        self.removed = true;
        self.oom_task.abort();
        let exit = InstanceExit {
            code,
            signal: None,
            last_stdout_line,
        };
        self.exit = Some(exit.clone());
        exit
    }

    async fn kill(&mut self, grace: Duration) {
        if self.exit.is_none() {
            let seconds = i32::try_from(grace.as_millis().div_ceil(1000)).unwrap_or(i32::MAX);
            let options = StopContainerOptionsBuilder::new().t(seconds).build();
            if let Err(err) = self
                .docker
                .stop_container(&self.container, Some(options))
                .await
            {
                if !is_not_found(&err) {
                    tracing::warn!(container = %self.container, "cannot stop the container: {err}");
                }
                DockerRuntime::remove(&self.docker, &self.container).await;
            }
        }
        self.wait().await;
    }

    async fn oom_killed(&mut self) -> bool {
        if self.oom.seen.load(Ordering::SeqCst) {
            return true;
        }
        if self.exit.is_none() {
            let notified = self.oom.notify.notified();
            if self.oom.seen.load(Ordering::SeqCst) {
                return true;
            }
            let _ = tokio::time::timeout(OOM_EVENT_WAIT, notified).await;
        }
        self.oom.seen.load(Ordering::SeqCst)
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        self.oom_task.abort();
        if !self.removed {
            // Never leave a container behind, even on a path that forgot to wait.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let docker = self.docker.clone();
                let id = self.container.clone();
                let sandbox = self.sandbox.take();
                handle.spawn(async move {
                    DockerRuntime::remove(&docker, &id).await;
                    if let Some(sandbox) = sandbox {
                        DockerRuntime::remove(&docker, &sandbox).await;
                    }
                });
            }
        }
    }
}
