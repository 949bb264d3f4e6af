//! Start-up of where functions run: the watchdog on this host, the user functions run
//! as, the Docker engine and its network, and the address instances call back on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::Failure;
use crate::config::{RuntimeKind, ServeArgs};
use crate::runtime::cgroup::{Cgroups, Controller, Limits};
use crate::runtime::cgroup_dynmods::{self, DynmodsError, DynmodsMode};
use crate::runtime::cgroup_join::JoinBy;
use crate::runtime::docker::{ContainerDefaults, DockerRuntime};
use crate::runtime::function_user::{self, FunctionUser};
use crate::runtime::process::{locate_watchdog, ProcessRuntime};
use crate::runtime::registry::RuntimeRegistry;
use crate::runtime::Runtime;

/// Longest a refused start waits for its runtimes to undo their setup (cgroups, the
/// function user's scratch root); nothing has run in them yet, so it is quick.
pub(super) const REFUSED_START_DRAIN: Duration = Duration::from_secs(5);

/// The runtime and what start-up needs to know about it.
pub(super) struct RuntimeSetup {
    /// Where instances run: every runtime this server offers.
    pub runtime: Arc<RuntimeRegistry>,
    watchdog: Option<PathBuf>,
    function_user: Option<FunctionUser>,
    /// How host processes are contained (`cgroups v1`, `no cgroups`), when they run.
    containment: Option<&'static str>,
    /// The Docker network's gateway and name, with the docker runtime.
    docker_network: Option<(std::net::IpAddr, String)>,
}

impl RuntimeSetup {
    /// Finds the watchdog, resolves the function user and connects to Docker as the
    /// flags ask.
    pub async fn new(args: &ServeArgs, owner: &str) -> Result<RuntimeSetup, Failure> {
        let host_processes = args.runtime == RuntimeKind::Process || args.allow_host_commands;
        let watchdog = match locate_watchdog(args.watchdog.as_deref()) {
            Ok(path) => Some(path),
            // The docker runtime runs the watchdog baked into images.
            Err(_) if !host_processes && args.watchdog.is_none() => None,
            Err(message) => return Err(Failure::config(message)),
        };
        let mut containment = None;
        let (mut process, function_user) = match (&watchdog, host_processes) {
            (Some(watchdog), true) => {
                let (process, user) = process_runtime(args, owner, watchdog.clone())?;
                containment = Some(process.containment());
                (Some(Arc::new(process) as Arc<dyn Runtime>), user)
            }
            _ => (None, None),
        };
        let (primary, docker_network): (Arc<dyn Runtime>, _) = match args.runtime {
            RuntimeKind::Docker => {
                let docker = match docker_runtime(args, owner).await {
                    Ok(docker) => docker,
                    Err(failure) => {
                        // The host processes' runtime is set up already: undo it.
                        if let Some(process) = &process {
                            process.drain(REFUSED_START_DRAIN).await;
                        }
                        return Err(failure);
                    }
                };
                let network = (docker.gateway(), docker.network().to_owned());
                (Arc::new(docker), Some(network))
            }
            RuntimeKind::Process => match process.take() {
                Some(process) => (process, None),
                None => return Err(Failure::config("no runtime is available")),
            },
        };
        // Beside docker, `command`-only functions run as host processes when allowed.
        let runtime = process
            .into_iter()
            .fold(RuntimeRegistry::new(primary), RuntimeRegistry::with);
        Ok(RuntimeSetup {
            runtime: Arc::new(runtime),
            watchdog,
            function_user,
            containment,
            docker_network,
        })
    }

    /// The watchdog on this host and the user its functions run as, for the start-up
    /// line.
    pub fn describe(&self) -> String {
        let watchdog = self
            .watchdog
            .as_ref()
            .map_or_else(|| "none".to_owned(), |path| path.display().to_string());
        let mut described = format!("watchdog {watchdog}");
        if let Some(user) = self.function_user {
            described.push_str(&format!(", functions run as uid {}", user.uid));
        }
        if let Some(containment) = self.containment {
            described.push_str(&format!(", {containment}"));
        }
        described
    }

    /// The base URL instances reach this server on, and the listener that serves them
    /// (the callback and payload routes only): on loopback for host processes, on the
    /// network's gateway with the docker runtime (unless this server already listens on
    /// every address); none when it is told where it is reachable.
    pub async fn advertise(
        &self,
        args: &ServeArgs,
        local: SocketAddr,
    ) -> Result<(String, Option<TcpListener>), Failure> {
        if let Some(url) = &args.advertise_url {
            return Ok((url.clone(), None));
        }
        let Some((gateway, network)) = &self.docker_network else {
            // Host processes call back on a loopback listener of their own, so a flood of
            // API connections cannot crowd out their results.
            let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|err| {
                Failure::fatal(format!("cannot listen on 127.0.0.1 for instances: {err}"))
            })?;
            let address = listener
                .local_addr()
                .map_err(|err| Failure::fatal(err.to_string()))?;
            return Ok((format!("http://{address}"), Some(listener)));
        };
        let address = SocketAddr::new(*gateway, local.port());
        let listener = if local.ip().is_unspecified() || local.ip() == *gateway {
            None
        } else {
            Some(TcpListener::bind(address).await.map_err(|err| {
                Failure::fatal(format!(
                    "cannot listen on {address} (the gateway of the Docker network {network}): {err}; set GANTRY_ADVERTISE_URL (--advertise-url) to an address containers reach"
                ))
            })?)
        };
        Ok((format!("http://{address}"), listener))
    }
}

/// The docker runtime on the engine the flags name, with its network ready.
async fn docker_runtime(args: &ServeArgs, owner: &str) -> Result<DockerRuntime, Failure> {
    let defaults = ContainerDefaults {
        memory_mb: args.docker_memory_mb,
        pids: args.docker_pids,
        cpus: args.docker_cpus,
    };
    DockerRuntime::connect(
        owner.to_owned(),
        args.docker_network.clone(),
        args.docker_sandboxes,
        defaults,
    )
    .await
    .map_err(|message| {
        Failure::fatal(format!(
            "{message}; start the engine or use --runtime process"
        ))
    })
}

/// The process runtime: as the server's user, or, for a server running as root, with
/// the user's code run as the function user and its scratch files outside the data
/// directory.
fn process_runtime(
    args: &ServeArgs,
    owner: &str,
    watchdog: PathBuf,
) -> Result<(ProcessRuntime, Option<FunctionUser>), Failure> {
    let user: Option<FunctionUser> = function_user::resolve(args.function_user.as_deref())
        .map_err(|err| Failure::config(format!("GANTRY_FUNCTION_USER (--function-user): {err}")))?;
    if user.is_none() && nix::unistd::Uid::effective().is_root() {
        tracing::warn!("functions run as root (--function-user names root)");
    }
    let scratch_root = match user {
        None => args.data_dir.join("run"),
        Some(_) => {
            function_user::shared_scratch_root(&std::env::temp_dir(), owner).map_err(|err| {
                Failure::fatal(format!(
                    "cannot prepare the functions' scratch directory: {err}"
                ))
            })?
        }
    };
    let nonzero = |limit: u64| (limit > 0).then_some(limit);
    let runtime = ProcessRuntime::new(watchdog, owner.to_owned(), scratch_root, user)
        .with_default_limits(Limits {
            memory_mb: nonzero(args.process_memory_mb),
            pids: nonzero(args.process_pids),
            cpu: None,
        });
    Ok((contained(runtime, args, owner), user))
}

/// `runtime` with its instances in cgroups, where the host offers them and they are not
/// turned off; the log says which.
fn contained(runtime: ProcessRuntime, args: &ServeArgs, owner: &str) -> ProcessRuntime {
    match Cgroups::setup(args.cgroups, owner) {
        Ok(cgroups) => {
            // Outside the log line: a disabled level would skip its arguments.
            let joins = favor_joins(args.cgroup_favordynmods);
            let cgroups = Arc::new(cgroups);
            let runtime = runtime.with_cgroups(cgroups.clone());
            let join_by = runtime.join_by().map_or("", JoinBy::describe);
            tracing::info!(
                "process runtime: every instance runs in a cgroup of its own, cgroups {}, {join_by}; {joins}",
                cgroups.describe()
            );
            let defaults = [
                (
                    args.process_memory_mb,
                    Controller::Memory,
                    "--process-memory-mb",
                ),
                (args.process_pids, Controller::Pids, "--process-pids"),
            ];
            for (limit, controller, flag) in defaults {
                if limit > 0 && !cgroups.has(controller) {
                    tracing::warn!(
                        "process runtime: the default limit {flag} is not enforced: the {} cgroup controller is not available",
                        controller.name()
                    );
                }
            }
            runtime
        }
        Err(reason) => {
            without_cgroups(&reason.to_string());
            runtime
        }
    }
}

/// Turns on fast cgroup joins where `mode` and the server's rights allow, and says how
/// joins go, for the start-up line.
fn favor_joins(mode: DynmodsMode) -> String {
    if mode == DynmodsMode::Off {
        return "cgroup joins as the host has them (--cgroup-favordynmods off)".to_owned();
    }
    if !nix::unistd::Uid::effective().is_root() {
        return "cgroup joins as the host has them (favordynmods needs root)".to_owned();
    }
    match cgroup_dynmods::favor_dynamic_changes() {
        Ok(dir) => format!("fast cgroup joins (favordynmods, on {})", dir.display()),
        Err(err @ DynmodsError::Unified) => format!("cgroup joins as the host has them ({err})"),
        Err(err) => {
            tracing::warn!(
                "process runtime: a cold start after a quiet moment waits about 10 ms for the kernel to let its instance join its cgroup ({err}); --cgroup-favordynmods off skips this attempt"
            );
            "cgroup joins as the host has them".to_owned()
        }
    }
}

fn without_cgroups(reason: &str) {
    tracing::warn!(
        "process runtime without cgroups ({reason}): a process that leaves its execution's process group and environment can outlive it, and no memory, process or CPU limit is enforced (neither the manifests' resources nor --process-memory-mb and --process-pids)"
    );
}
