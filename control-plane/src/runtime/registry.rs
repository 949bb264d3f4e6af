//! The runtimes a server offers, as one [`Runtime`]: each function goes to the first
//! registered runtime that runs its kind of function, else to the primary one (which
//! then says why it cannot run it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Instance, Launch, Runtime, RuntimeError, WarmLaunch, WarmStarted};
use crate::registry::FunctionSpec;

/// Every runtime of this server, the primary (`--runtime`) first.
pub struct RuntimeRegistry {
    runtimes: Vec<Arc<dyn Runtime>>,
}

impl RuntimeRegistry {
    /// A registry whose primary runtime is `primary`.
    pub fn new(primary: Arc<dyn Runtime>) -> RuntimeRegistry {
        RuntimeRegistry {
            runtimes: vec![primary],
        }
    }

    /// Adds `runtime` after those already registered.
    pub fn with(mut self, runtime: Arc<dyn Runtime>) -> RuntimeRegistry {
        self.runtimes.push(runtime);
        self
    }

    /// The names of the registered runtimes, the primary first.
    pub fn names(&self) -> Vec<&'static str> {
        self.runtimes.iter().map(|runtime| runtime.name()).collect()
    }

    fn pick(&self, function: &FunctionSpec) -> &dyn Runtime {
        self.runtimes
            .iter()
            .find(|runtime| runtime.runs(function))
            .unwrap_or(&self.runtimes[0])
            .as_ref()
    }
}

#[async_trait]
impl Runtime for RuntimeRegistry {
    fn name(&self) -> &'static str {
        self.runtimes[0].name()
    }

    fn runs(&self, function: &FunctionSpec) -> bool {
        self.runtimes.iter().any(|runtime| runtime.runs(function))
    }

    fn problems(&self, function: &FunctionSpec) -> Vec<String> {
        self.pick(function).problems(function)
    }

    fn ignored(&self, function: &FunctionSpec) -> Vec<String> {
        self.pick(function).ignored(function)
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Instance>, RuntimeError> {
        self.pick(&launch.function.spec).start(launch).await
    }

    async fn start_warm(&self, launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
        self.pick(&launch.function.spec).start_warm(launch).await
    }

    async fn remove_orphans(&self) -> usize {
        let mut removed = 0;
        for runtime in &self.runtimes {
            removed += runtime.remove_orphans().await;
        }
        removed
    }

    async fn drain(&self, limit: Duration) {
        for runtime in &self.runtimes {
            runtime.drain(limit).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::parse_manifest;

    /// A runtime that runs functions with (or without) an image and names itself in
    /// its problems, so a test sees which one was asked.
    struct Kind {
        name: &'static str,
        images: bool,
    }

    #[async_trait]
    impl Runtime for Kind {
        fn name(&self) -> &'static str {
            self.name
        }

        fn runs(&self, function: &FunctionSpec) -> bool {
            function.image.is_some() == self.images
        }

        fn problems(&self, _function: &FunctionSpec) -> Vec<String> {
            vec![self.name.to_owned()]
        }

        fn ignored(&self, _function: &FunctionSpec) -> Vec<String> {
            Vec::new()
        }

        async fn start(&self, _launch: Launch) -> Result<Box<dyn Instance>, RuntimeError> {
            Err(RuntimeError::Unsupported(self.name.to_owned()))
        }

        async fn start_warm(&self, _launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
            Err(RuntimeError::Unsupported(self.name.to_owned()))
        }

        async fn remove_orphans(&self) -> usize {
            1
        }
    }

    fn registry(with_process: bool) -> RuntimeRegistry {
        let docker = RuntimeRegistry::new(Arc::new(Kind {
            name: "docker",
            images: true,
        }));
        if with_process {
            docker.with(Arc::new(Kind {
                name: "process",
                images: false,
            }))
        } else {
            docker
        }
    }

    fn spec(yaml: &str) -> FunctionSpec {
        parse_manifest(yaml).expect("manifest")
    }

    #[tokio::test]
    async fn each_function_goes_to_the_runtime_that_runs_its_kind() {
        let registry = registry(true);
        let image = spec("name: a\nimage: example/a:1\n");
        let command = spec("name: b\ncommand: ./run.sh\n");
        assert_eq!(registry.problems(&image), ["docker"]);
        assert_eq!(registry.problems(&command), ["process"]);
        assert_eq!(registry.name(), "docker");
        assert_eq!(registry.names(), ["docker", "process"]);
        assert_eq!(registry.remove_orphans().await, 2);
    }

    #[test]
    fn a_function_no_runtime_runs_is_answered_by_the_primary() {
        let registry = registry(false);
        let command = spec("name: b\ncommand: ./run.sh\n");
        assert!(!registry.runs(&command));
        assert_eq!(registry.problems(&command), ["docker"]);
    }
}
