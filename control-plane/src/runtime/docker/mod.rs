//! The docker runtime: each execution runs in a container of its own on a Docker engine
//! (Engine API over its unix socket, through bollard). The image's ENTRYPOINT is the
//! watchdog; the manifest's `command`, when set, replaces its WATCHDOG_CMD. Containers
//! carry `gantry.*` labels (owner, function, version, and execution or instance), the
//! manifest's limits (or the server's defaults), a read-only root filesystem with a
//! tmpfs `/tmp`, `no-new-privileges`, only the capabilities the watchdog needs to run
//! the user's code as an unprivileged user, and sit on a private bridge network whose
//! gateway reaches the control plane. Every container is force-removed after its
//! execution (or, for a warm instance, once stopped), whatever the outcome. Warm
//! instances are in [`warm`].

mod instance;
pub mod network;
mod removal;
mod sandbox;
mod warm;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use gantry_protocol::env;

use self::instance::DockerInstance;
use self::network as docker_network;
use self::removal::Removals;
use self::sandbox::Sandboxes;
use super::{Instance, Launch, Runtime, RuntimeError, WarmLaunch, WarmStarted};
use crate::logs::LogSink;
use crate::registry::{FunctionSpec, FunctionVersion, Mode};

/// Label naming the data directory (server) that created a container.
pub const OWNER_LABEL: &str = "gantry.owner";
/// Label on the network the runtime creates.
pub const NETWORK_LABEL: &str = "gantry.network";
/// The private bridge network containers run on.
pub const DEFAULT_NETWORK: &str = "gantry-net";
/// Where the engine listens unless `DOCKER_HOST` says otherwise.
pub const SOCKET: &str = "unix:///var/run/docker.sock";
/// Docker refuses memory limits below this (MiB).
const MIN_MEMORY_MB: u64 = 6;
/// How long a failed execution waits for the engine's OOM event (it may trail the
/// watchdog's report of its killed function by a few milliseconds).
const OOM_EVENT_WAIT: Duration = Duration::from_millis(300);
/// The port HTTP-mode runtimes listen on inside their container.
const HTTP_RUNTIME_URL: &str = "http://127.0.0.1:8080/invoke";

/// Limits of a container whose manifest sets none (`--docker-memory-mb`, …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContainerDefaults {
    /// Memory limit, MiB.
    pub memory_mb: u64,
    /// Process limit.
    pub pids: u64,
    /// CPUs.
    pub cpus: f64,
}

/// The capabilities a container keeps: the watchdog (root in the container) needs them
/// to run the user's code as another user, stop it, and hand it its secret files.
/// Everything else is dropped, and `no-new-privileges` keeps the user's code from
/// gaining any of them.
const KEPT_CAPABILITIES: &[&str] = &["SETUID", "SETGID", "KILL", "CHOWN"];
/// The user the function runs as when its image names none.
const DEFAULT_FUNCTION_USER: &str = "65534:65534";

/// Runs executions as containers on the local Docker engine.
pub struct DockerRuntime {
    docker: Docker,
    owner: String,
    network: String,
    gateway: IpAddr,
    defaults: ContainerDefaults,
    /// Removals of exited containers, which run after the result is answered.
    removals: Removals,
    /// Network sandboxes kept ready (see [`sandbox`]); set up by the
    /// start-up orphan removal, so that removal does not take them.
    sandboxes: tokio::sync::OnceCell<Option<Arc<Sandboxes>>>,
    keep_ready: usize,
}

/// The engine's address: `DOCKER_HOST` when set, else the default unix socket.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| SOCKET.to_owned())
}

/// The message for an engine that does not answer.
fn unreachable(err: &DockerError) -> String {
    format!(
        "the Docker engine at {} is unreachable: {err}",
        engine_address()
    )
}

fn is_not_found(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `err` is the engine not answering (rather than refusing something).
fn is_connection_error(err: &DockerError) -> bool {
    !matches!(
        err,
        DockerError::DockerResponseServerError { .. }
            | DockerError::DockerContainerWaitError { .. }
    )
}

impl DockerRuntime {
    /// Connects to the engine, checks it answers, creates the private `network` if it is
    /// missing and verifies its firewall (see [`network`]). The error says
    /// what failed (for `gantry serve` to print).
    /// `keep_ready` network sandboxes are kept started ahead of calls (0: none).
    pub async fn connect(
        owner: String,
        network: String,
        keep_ready: usize,
        defaults: ContainerDefaults,
    ) -> Result<DockerRuntime, String> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|err| unreachable(&err))?
            .negotiate_version()
            .await
            .map_err(|err| unreachable(&err))?;
        docker.ping().await.map_err(|err| unreachable(&err))?;
        let inspected = docker_network::ensure_network(&docker, &network).await?;
        docker_network::guard(&inspected).await?;
        let gateway = docker_network::gateway(&inspected)?;
        Ok(DockerRuntime {
            removals: Removals::new(docker.clone()),
            docker,
            owner,
            network,
            gateway,
            defaults,
            sandboxes: tokio::sync::OnceCell::new(),
            keep_ready,
        })
    }

    /// The network's gateway: the host address containers reach the control plane on.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// The network containers run on.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The labels of a container of `function`: the owner's, the function's, and `role`
    /// (`gantry.execution` or `gantry.instance`, with its id).
    fn labels(&self, function: &FunctionVersion, role: (&str, String)) -> HashMap<String, String> {
        HashMap::from([
            (OWNER_LABEL.to_owned(), self.owner.clone()),
            ("gantry.function".to_owned(), function.name.clone()),
            ("gantry.version".to_owned(), function.version.to_string()),
            (role.0.to_owned(), role.1),
        ])
    }

    /// The container's environment: the variables `spec` implies (WATCHDOG_CMD, the FILE
    /// paths, RUNTIME_URL = `runtime_url` unless the manifest sets it), then `vars` in
    /// order. A variable set twice keeps its last value.
    fn container_env(
        spec: &FunctionSpec,
        runtime_url: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<String> {
        let mut all: Vec<(String, String)> = Vec::new();
        if let Some(command) = &spec.command {
            all.push((env::WATCHDOG_CMD.to_owned(), command.to_line()));
        }
        match spec.mode {
            Mode::File => {
                all.push((env::INPUT_FILE.to_owned(), "/tmp/input.json".to_owned()));
                all.push((env::OUTPUT_FILE.to_owned(), "/tmp/output.json".to_owned()));
            }
            Mode::Http if !spec.env.contains_key(env::RUNTIME_URL) => {
                all.push((env::RUNTIME_URL.to_owned(), runtime_url.to_owned()));
            }
            _ => {}
        }
        all.extend(vars);
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<String> = all
            .into_iter()
            .rev()
            .filter(|(key, _)| seen.insert(key.clone()))
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        unique.reverse();
        unique
    }

    /// Creates and starts a container of `function` with the runtime's hardening and
    /// limits, `env` and `role`'s label, streaming its output into `logs`; in
    /// `sandbox`'s network namespace when given (the sandbox is then removed with it).
    async fn start_container(
        &self,
        name: &str,
        function: &FunctionVersion,
        role: (&str, String),
        env: Vec<String>,
        logs: &LogSink,
        sandbox: Option<String>,
    ) -> Result<DockerInstance, RuntimeError> {
        let spec = &function.spec;
        let image = spec.image.clone().ok_or_else(|| {
            RuntimeError::Unsupported("the docker runtime needs an `image`".into())
        })?;
        let mut env = env;
        if let Some(run_as) = self.function_user(&image).await? {
            env.push(format!("{}={run_as}", env::RUN_AS));
        }
        let body = ContainerCreateBody {
            image: Some(image),
            // The watchdog runs as root in the container, with only KEPT_CAPABILITIES,
            // and the user's code as the image's user (see `function_user`).
            user: Some("0:0".to_owned()),
            env: Some(env),
            labels: Some(self.labels(function, role)),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(self.host_config(spec, sandbox.as_deref())),
            ..Default::default()
        };
        DockerInstance::create(
            &self.docker,
            self.removals.clone(),
            name,
            body,
            logs,
            sandbox,
        )
        .await
    }

    /// The user the image's code runs as (the watchdog's RUN_AS): the image's USER,
    /// else 65534; `None` when the image insists on root.
    async fn function_user(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        let inspected = self.docker.inspect_image(image).await.map_err(|err| {
            RuntimeError::Spawn(if is_not_found(&err) {
                format!("image {image} is not present on the Docker engine; build it first (there is no registry to pull from)")
            } else if is_connection_error(&err) {
                unreachable(&err)
            } else {
                format!("cannot inspect the image {image}: {err}")
            })
        })?;
        let user = inspected
            .config
            .and_then(|config| config.user)
            .unwrap_or_default();
        Ok(match user.trim() {
            "" => Some(DEFAULT_FUNCTION_USER.to_owned()),
            "root" | "0" | "0:0" | "root:root" => None,
            named => Some(named.to_owned()),
        })
    }

    fn host_config(&self, spec: &FunctionSpec, sandbox: Option<&str>) -> HostConfig {
        let resources = &spec.resources;
        let memory_mb = resources.memory_mb.unwrap_or(self.defaults.memory_mb);
        let memory = i64::try_from(memory_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
        let cpus = resources.cpu.unwrap_or(self.defaults.cpus);
        let pids = resources.pids.unwrap_or(self.defaults.pids);
        let mut tmpfs = HashMap::from([("/tmp".to_owned(), "rw,size=64m".to_owned())]);
        if spec.secrets.values().any(|reference| reference.as_file()) {
            tmpfs.insert(
                crate::secrets::SECRETS_DIR.to_owned(),
                "rw,noexec,nosuid,nodev,size=1m,mode=0711".to_owned(),
            );
        }
        HostConfig {
            memory: Some(memory),
            // No swap beyond the memory limit: a hog is OOM-killed, not slowed down.
            memory_swap: Some(memory),
            nano_cpus: Some((cpus * 1e9) as i64),
            pids_limit: Some(i64::try_from(pids).unwrap_or(i64::MAX)),
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(
                KEPT_CAPABILITIES
                    .iter()
                    .map(|cap| (*cap).to_owned())
                    .collect(),
            ),
            network_mode: Some(match sandbox {
                Some(id) => format!("container:{id}"),
                None => self.network.clone(),
            }),
            ..Default::default()
        }
    }

    /// A ready network sandbox, if any.
    fn take_sandbox(&self) -> Option<String> {
        self.sandboxes.get().and_then(Option::as_ref)?.take()
    }

    /// Force-removes the container `id` now, once; a failure is logged (the next start's
    /// orphan sweep removes what is left).
    async fn remove(docker: &Docker, id: &str) {
        if let Err(err) = removal::remove_once(docker, id).await {
            tracing::warn!(container = id, "cannot remove the container: {err}");
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn runs(&self, function: &FunctionSpec) -> bool {
        function.image.is_some()
    }

    fn problems(&self, function: &FunctionSpec) -> Vec<String> {
        let mut problems = Vec::new();
        if function.image.is_none() {
            problems.push(
                "`image` is required: this server runs functions as Docker containers (start it with --allow-host-commands to also run `command`-only functions on the host)".to_owned(),
            );
        }
        if let Some(mb) = function.resources.memory_mb {
            if mb < MIN_MEMORY_MB {
                problems.push(format!(
                    "resources.memory_mb is {mb}; Docker needs at least {MIN_MEMORY_MB}"
                ));
            }
        }
        if let Some(cpu) = function.resources.cpu {
            let available = std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0);
            if cpu.is_nan() || cpu <= 0.0 || cpu > available {
                problems.push(format!(
                    "resources.cpu is {cpu}; it must be above 0 and at most {available} (this host's CPUs)"
                ));
            }
        }
        if function.working_dir.is_some() {
            problems.push(
                "`working_dir` is a host directory; the docker runtime uses the image's WORKDIR"
                    .to_owned(),
            );
        }
        problems
    }

    fn ignored(&self, _function: &FunctionSpec) -> Vec<String> {
        Vec::new()
    }

    async fn start_warm(&self, launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
        self.warm(launch).await
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Instance>, RuntimeError> {
        if let Some(sandbox) = self.take_sandbox() {
            match self.start_in(&launch, Some(sandbox.clone())).await {
                Ok(instance) => return Ok(instance),
                Err(err) => {
                    // The sandbox may have died: fall back to a network of its own.
                    tracing::warn!(
                        "starting in network sandbox {sandbox} failed ({err}); retrying without"
                    );
                    self.removals.remove_later(vec![sandbox]);
                }
            }
        }
        self.start_in(&launch, None).await
    }

    async fn remove_orphans(&self) -> usize {
        let removed = self.remove_labelled().await;
        let sandboxes = Sandboxes::new(
            self.docker.clone(),
            self.network.clone(),
            self.owner.clone(),
            self.keep_ready,
            self.removals.clone(),
        )
        .await;
        let _ = self.sandboxes.set(sandboxes);
        removed
    }

    async fn drain(&self, limit: Duration) {
        if let Some(Some(sandboxes)) = self.sandboxes.get() {
            sandboxes.clear().await;
        }
        if !self.removals.finish(limit).await {
            tracing::warn!(
                "container removals still running at exit; the next start removes what is left"
            );
        }
        if let Some(Some(sandboxes)) = self.sandboxes.get() {
            // Sandboxes that finished starting while the removals ran.
            sandboxes.clear().await;
        }
    }
}

impl DockerRuntime {
    /// Creates, attaches and starts the container of one execution, in `sandbox`'s
    /// network namespace when given (the sandbox is then removed with it).
    async fn start_in(
        &self,
        launch: &Launch,
        sandbox: Option<String>,
    ) -> Result<Box<dyn Instance>, RuntimeError> {
        let spec = &launch.function.spec;
        let mode = (
            env::EXECUTION_MODE.to_owned(),
            spec.mode.as_env().to_owned(),
        );
        let vars = std::iter::once(mode).chain(launch.env.iter().cloned());
        // A name of its own for each container: a container whose creation the engine's
        // loss interrupted is removed by name, which must not take a later attempt's.
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let instance = self
            .start_container(
                &format!("gantry-{}-{}", launch.execution_id, &attempt[..8]),
                &launch.function,
                ("gantry.execution", launch.execution_id.to_string()),
                Self::container_env(spec, HTTP_RUNTIME_URL, vars),
                &launch.logs,
                sandbox,
            )
            .await?;
        Ok(Box::new(instance))
    }

    /// Removes every container labelled with this server's owner id.
    async fn remove_labelled(&self) -> usize {
        let filters = HashMap::from([("label", vec![format!("{OWNER_LABEL}={}", self.owner)])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = match self.docker.list_containers(Some(options)).await {
            Ok(containers) => containers,
            Err(err) => {
                tracing::warn!("cannot list the containers an earlier run left: {err}");
                return 0;
            }
        };
        let mut removed = 0;
        for container in containers {
            if let Some(id) = container.id {
                Self::remove(&self.docker, &id).await;
                removed += 1;
            }
        }
        removed
    }
}
