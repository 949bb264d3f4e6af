//! A server started with `--runtime docker` runs image functions in containers and,
//! beside them, `command`-only functions as host processes: [`RuntimeSelector`] picks
//! the runtime per function (an `image` → docker, else process).

use async_trait::async_trait;

use super::docker::DockerRuntime;
use super::process::ProcessRuntime;
use super::{Instance, Launch, Runtime, RuntimeError, WarmLaunch, WarmStarted};
use crate::registry::FunctionSpec;

/// Docker for functions with an `image`, the process runtime (when available) for the
/// others.
pub struct RuntimeSelector {
    docker: DockerRuntime,
    process: Option<ProcessRuntime>,
}

impl RuntimeSelector {
    /// Picks between `docker` and, if given, `process`.
    pub fn new(docker: DockerRuntime, process: Option<ProcessRuntime>) -> RuntimeSelector {
        RuntimeSelector { docker, process }
    }

    fn pick(&self, function: &FunctionSpec) -> Option<&dyn Runtime> {
        if function.image.is_some() {
            Some(&self.docker)
        } else {
            self.process.as_ref().map(|process| process as &dyn Runtime)
        }
    }
}

#[async_trait]
impl Runtime for RuntimeSelector {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn problems(&self, function: &FunctionSpec) -> Vec<String> {
        match self.pick(function) {
            Some(runtime) => runtime.problems(function),
            None => self.docker.problems(function),
        }
    }

    fn ignored(&self, function: &FunctionSpec) -> Vec<String> {
        self.pick(function)
            .map(|runtime| runtime.ignored(function))
            .unwrap_or_default()
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Instance>, RuntimeError> {
        match self.pick(&launch.function.spec) {
            Some(runtime) => runtime.start(launch).await,
            None => self.docker.start(launch).await,
        }
    }

    async fn start_warm(&self, launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
        match self.pick(&launch.function.spec) {
            Some(runtime) => runtime.start_warm(launch).await,
            None => self.docker.start_warm(launch).await,
        }
    }

    async fn remove_orphans(&self) -> usize {
        let mut removed = self.docker.remove_orphans().await;
        if let Some(process) = &self.process {
            removed += process.remove_orphans().await;
        }
        removed
    }

    async fn drain(&self, limit: std::time::Duration) {
        self.docker.drain(limit).await;
        if let Some(process) = &self.process {
            process.drain(limit).await;
        }
    }
}
