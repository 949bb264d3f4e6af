//! A container of the docker runtime, running one execution or a warm instance: creates
//! and starts it with its output streamed into the logs, waits for it, stops it, tells
//! whether its memory limit killed something, and always removes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    InspectContainerOptions, StartContainerOptions, StopContainerOptionsBuilder,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::removal::Removals;
use super::{is_connection_error, is_not_found, unreachable, DockerRuntime, OOM_EVENT_WAIT};
use crate::domain::LogStream;
use crate::logs::LogSink;
use crate::runtime::{Instance, InstanceExit, RuntimeError};

/// Whether the engine reported an OOM kill in the container.
#[derive(Default)]
struct OomWatch {
    seen: AtomicBool,
    notify: Notify,
}

/// A started container of the docker runtime (see [`DockerInstance::create`]).
pub(super) struct DockerInstance {
    /// The engine's full container id.
    pub(super) container: String,
    /// `docker-` and the short container id, for execution records.
    id: String,
    docker: Docker,
    oom: Arc<OomWatch>,
    oom_task: JoinHandle<()>,
    demux: Option<JoinHandle<()>>,
    stdout_task: Option<JoinHandle<Option<String>>>,
    stderr_task: Option<JoinHandle<Option<String>>>,
    exit: Option<InstanceExit>,
    removed: bool,
    /// Where the removal runs once the container has exited: after the result, off the
    /// caller's path, and awaited by [`crate::runtime::Runtime::drain`] when the server stops.
    removals: Removals,
    /// The network sandbox the container joined, removed with it.
    sandbox: Option<String>,
}

/// The tasks that watch a started container: its OOM events, the demultiplexing of its
/// attach stream and the copies of its stdout and stderr into the logs.
struct Watchers {
    oom: Arc<OomWatch>,
    oom_task: JoinHandle<()>,
    demux: JoinHandle<()>,
    stdout_task: JoinHandle<Option<String>>,
    stderr_task: JoinHandle<Option<String>>,
}

impl DockerInstance {
    /// Creates the container `name` from `body`, attaches its stdout and stderr to
    /// `logs` and starts it. `sandbox` (a network sandbox it joins) is removed with it;
    /// `removals` runs the removal once it has exited. A container that fails to start,
    /// or may have been created when the engine stopped answering, is removed in the
    /// background at once; the error says why (a missing image, an unreachable engine).
    pub(super) async fn create(
        docker: &Docker,
        removals: Removals,
        name: &str,
        body: ContainerCreateBody,
        logs: &LogSink,
        sandbox: Option<String>,
    ) -> Result<DockerInstance, RuntimeError> {
        let image = body.image.clone().unwrap_or_default();
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = match docker.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(err) => {
                if is_connection_error(&err) {
                    // The engine may have created it before the connection broke: it is
                    // removed by name once the engine answers again.
                    removals.remove_later(vec![name.to_owned()]);
                }
                return Err(RuntimeError::Spawn(if is_not_found(&err) {
                    format!("image {image} is not present on the Docker engine; build it first (there is no registry to pull from)")
                } else if is_connection_error(&err) {
                    unreachable(&err)
                } else {
                    format!("the Docker engine refused the container: {err}")
                }));
            }
        };
        let id = created.id;
        match Self::watch_and_start(docker, &id, logs).await {
            Ok(watchers) => Ok(DockerInstance {
                id: format!("docker-{}", &id[..id.len().min(12)]),
                container: id,
                docker: docker.clone(),
                oom: watchers.oom,
                oom_task: watchers.oom_task,
                demux: Some(watchers.demux),
                stdout_task: Some(watchers.stdout_task),
                stderr_task: Some(watchers.stderr_task),
                exit: None,
                removed: false,
                removals,
                sandbox,
            }),
            Err(err) => {
                removals.remove_later(vec![id]);
                Err(RuntimeError::Spawn(if is_connection_error(&err) {
                    unreachable(&err)
                } else {
                    format!("the Docker engine could not start the container: {err}")
                }))
            }
        }
    }

    /// Watches the created container `id` for OOM kills, streams its output into `logs`
    /// and starts it.
    async fn watch_and_start(
        docker: &Docker,
        id: &str,
        logs: &LogSink,
    ) -> Result<Watchers, DockerError> {
        let oom = Arc::new(OomWatch::default());
        let filters = HashMap::from([("container", vec![id]), ("event", vec!["oom"])]);
        let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        let watch = oom.clone();
        let oom_task = tokio::spawn(async move {
            if let Some(Ok(_)) = events.next().await {
                watch.seen.store(true, Ordering::SeqCst);
                watch.notify.notify_waiters();
            }
        });
        let options = AttachContainerOptionsBuilder::new()
            .stream(true)
            .logs(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attach = match docker.attach_container(id, Some(options)).await {
            Ok(attach) => attach,
            Err(err) => {
                oom_task.abort();
                return Err(err);
            }
        };
        let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
        let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
        let mut output = attach.output;
        let demux = tokio::spawn(async move {
            while let Some(Ok(chunk)) = output.next().await {
                let _ = match chunk {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out_w.write_all(&message).await
                    }
                    LogOutput::StdErr { message } => err_w.write_all(&message).await,
                    LogOutput::StdIn { .. } => Ok(()),
                };
            }
        });
        let stdout_task = tokio::spawn(logs.clone().copy_lines(LogStream::Stdout, out_r));
        let stderr_task = tokio::spawn(logs.clone().copy_lines(LogStream::Stderr, err_r));
        if let Err(err) = docker
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            oom_task.abort();
            demux.abort();
            return Err(err);
        }
        Ok(Watchers {
            oom,
            oom_task,
            demux,
            stdout_task,
            stderr_task,
        })
    }

    /// Removes the container (and its network sandbox) in the background,
    /// tracked by `removals` so that [`crate::runtime::Runtime::drain`] waits for it.
    fn remove_later(&mut self) {
        let containers = std::iter::once(self.container.clone())
            .chain(self.sandbox.take())
            .collect();
        self.removals.remove_later(containers);
        self.removed = true;
    }

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
        self.remove_later();
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
            if tokio::runtime::Handle::try_current().is_ok() {
                self.remove_later();
            }
        }
    }
}
