//! Where instances run. A [`Runtime`] starts a one-shot instance for an execution or a
//! warm instance (the watchdog in WARM mode) for a pool, stops them, and removes what an
//! earlier run of the control plane left behind.
//! [`process::ProcessRuntime`] (host processes under the watchdog) is the default;
//! [`docker::DockerRuntime`] runs images; a [`registry::RuntimeRegistry`] holds the
//! ones a server offers and sends each function to the one that runs it.

pub mod cgroup;
pub mod cgroup_dynmods;
mod cgroup_fs;
mod cgroup_instance;
pub mod cgroup_join;
pub mod docker;
pub mod function_user;
pub mod orphans;
pub mod process;
mod process_instance;
mod process_ports;
pub mod registry;
#[cfg(test)]
pub mod scripted;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::logs::LogSink;
use crate::registry::FunctionVersion;

/// What a runtime needs to start one execution's instance.
pub struct Launch {
    /// The execution.
    pub execution_id: Uuid,
    /// The function version it runs.
    pub function: Arc<FunctionVersion>,
    /// The watchdog contract variables (EXECUTION_ID, CALLBACK_URL, TIMEOUT_MS, …) and
    /// the manifest's `env`; the runtime adds what is specific to it.
    pub env: Vec<(String, String)>,
    /// Where the instance's stdout and stderr go.
    pub logs: LogSink,
}

/// What a runtime needs to start a warm instance: the watchdog in WARM mode, serving
/// `POST /invoke` for many executions until it is stopped.
pub struct WarmLaunch {
    /// Unique key of the instance, used in the runtime's labels and markers.
    pub key: Uuid,
    /// The function version it serves.
    pub function: Arc<FunctionVersion>,
    /// The WARM variables chosen by the pool (EXECUTION_MODE=WARM, WARM_RUNTIME,
    /// WARM_CONCURRENCY, TIMEOUT_MS, …) and the manifest's `env`. The runtime adds where
    /// to listen (WARM_HOST, WARM_PORT) and, for HTTP runtimes, RUNTIME_URL.
    pub env: Vec<(String, String)>,
    /// Where the instance's stdout and stderr go.
    pub logs: LogSink,
}

/// A started warm instance.
pub struct WarmStarted {
    /// The instance, for waiting on and stopping it.
    pub instance: Box<dyn Instance>,
    /// Base URL of its WARM server as the control plane reaches it
    /// (`http://127.0.0.1:40123`); `/health` and `/invoke` are below it.
    pub endpoint: String,
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceExit {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// The last non-empty line on its stdout (the watchdog prints its report there when
    /// the callback cannot be delivered).
    pub last_stdout_line: Option<String>,
}

impl std::fmt::Display for InstanceExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => write!(f, "an unknown status"),
        }
    }
}

/// A running instance.
#[async_trait]
pub trait Instance: Send {
    /// Stable id for the execution record (`process-<pid>`, a container id).
    fn id(&self) -> &str;

    /// Waits until the instance has exited and its output is read.
    async fn wait(&mut self) -> InstanceExit;

    /// Stops the instance and everything it started: SIGTERM, then SIGKILL after
    /// `grace`. Returns once nothing of it runs.
    async fn kill(&mut self, grace: Duration);

    /// Whether the instance's memory limit killed something in it (the docker runtime
    /// knows; others answer `false`). May wait briefly for the engine to say.
    async fn oom_killed(&mut self) -> bool {
        false
    }

    /// A reader of how many processes the instance's memory limit has killed so far,
    /// for runtimes that can say at any time (a warm instance outlives the OOM kill of
    /// one call's process). `None` where the runtime cannot.
    fn oom_probe(&self) -> Option<OomProbe> {
        None
    }
}

/// Reads how many processes an instance's memory limit has killed so far.
#[derive(Clone)]
pub struct OomProbe(Arc<dyn Fn() -> u64 + Send + Sync>);

impl OomProbe {
    /// A probe answering what `read` answers.
    pub fn new(read: impl Fn() -> u64 + Send + Sync + 'static) -> OomProbe {
        OomProbe(Arc::new(read))
    }

    /// The kills so far.
    pub fn kills(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for OomProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OomProbe")
    }
}

/// What a runtime can fail at.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The function cannot run on this runtime (for example an image-only function on
    /// the process runtime).
    #[error("{0}")]
    Unsupported(String),
    /// The instance could not be started.
    #[error("could not start the instance: {0}")]
    Spawn(String),
    /// Scratch files could not be prepared.
    #[error("could not prepare the instance's files in {path}: {source}")]
    Scratch {
        /// The directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A place instances run.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `process`, `docker`.
    fn name(&self) -> &'static str;

    /// Whether `function` is of the kind this runtime runs (an image, a host command…);
    /// the registry sends it to the first runtime that answers yes.
    fn runs(&self, function: &crate::registry::FunctionSpec) -> bool {
        let _ = function;
        true
    }

    /// Problems that stop `function` from running here (empty when it can).
    fn problems(&self, function: &crate::registry::FunctionSpec) -> Vec<String>;

    /// Settings of `function` this runtime accepts but does not apply (answered with the
    /// deploy, so nobody believes a limit holds that does not).
    fn ignored(&self, function: &crate::registry::FunctionSpec) -> Vec<String>;

    /// Starts a one-shot instance for one execution.
    async fn start(&self, launch: Launch) -> Result<Box<dyn Instance>, RuntimeError>;

    /// Starts a warm instance for a pool. It may not be ready yet: the pool polls its
    /// `/health`.
    async fn start_warm(&self, launch: WarmLaunch) -> Result<WarmStarted, RuntimeError>;

    /// Stops every instance an earlier run of this control plane left behind (found by
    /// the owner marker); answers how many were stopped.
    async fn remove_orphans(&self) -> usize;

    /// Waits (at most `limit`) for clean-up work still running in the background, such
    /// as removing exited containers. Called once when the server stops.
    async fn drain(&self, limit: Duration) {
        let _ = limit;
    }
}
