//! The process runtime: each execution runs the watchdog as a host child process, in a
//! process group of its own, with the function's command, env and working directory.
//! The child gets a clean environment (nothing of the server's, tokens included),
//! per-execution scratch files for FILE mode and a free port for HTTP mode. Where the
//! server has cgroups, each instance also runs in a cgroup of its own
//! ([`super::cgroup`]), which holds its limits and stops everything it started.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_protocol::env;
use tokio::process::Command;

use super::cgroup::{Cgroup, Cgroups, Controller, Limits};
use super::cgroup_join::{self, JoinBy};
use super::function_user::{self, FunctionUser};
use super::orphans;
use super::process_instance::ProcessInstance;
use super::process_ports::{PortLease, PortLeases};
use super::{Instance, Launch, Runtime, RuntimeError, WarmLaunch, WarmStarted};
use crate::domain::LogStream;
use crate::logs::LogSink;
use crate::registry::{FunctionSpec, Mode};

/// Variable that marks every process started by one data directory's control plane.
pub const OWNER_VAR: &str = "GANTRY_OWNER";
/// Variable that marks the processes of one warm instance.
pub const INSTANCE_VAR: &str = "GANTRY_INSTANCE";

/// Server variables passed through to functions (everything else is withheld).
const PASSED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

/// Finds the watchdog: `configured` if given (it must exist), else `watchdog` next to
/// the running executable, else on PATH. The error says what was tried.
pub fn locate_watchdog(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "GANTRY_WATCHDOG (--watchdog) is {}, which is not a file",
                path.display()
            ))
        };
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // Test binaries live in target/*/deps, next to nothing; look one level up too.
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("watchdog");
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("watchdog");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        tried.push("every directory on PATH".into());
    }
    Err(format!(
        "cannot find the watchdog binary (tried {}); build it with `cargo build -p gantry-watchdog` or set GANTRY_WATCHDOG (--watchdog) to its path",
        tried.join(", ")
    ))
}

/// Runs executions as watchdog child processes on this host.
pub struct ProcessRuntime {
    watchdog: PathBuf,
    owner: String,
    scratch_root: PathBuf,
    function_user: Option<FunctionUser>,
    kill_grace: Duration,
    ports: PortLeases,
    containment: Option<Containment>,
    /// The limits of an instance whose manifest sets none.
    default_limits: Limits,
}

/// The cgroups instances run in.
struct Containment {
    cgroups: Arc<Cgroups>,
    /// Who writes an instance into its cgroup.
    join_by: JoinBy,
}

impl ProcessRuntime {
    /// A runtime starting `watchdog`, marking its processes with `owner` (stable per
    /// data directory) and keeping scratch files under `scratch_root` (0700). With
    /// `function_user`, the watchdogs run the user's code as that user.
    pub fn new(
        watchdog: PathBuf,
        owner: String,
        scratch_root: PathBuf,
        function_user: Option<FunctionUser>,
    ) -> ProcessRuntime {
        ProcessRuntime {
            watchdog,
            owner,
            scratch_root,
            function_user,
            kill_grace: Duration::from_millis(env::defaults::KILL_GRACE_MS),
            ports: PortLeases::default(),
            containment: None,
            default_limits: Limits::default(),
        }
    }

    /// Gives each instance whose manifest sets no `memory_mb`, `pids` or `cpu` the one
    /// of `defaults` (`None`: no limit), enforced where instances run in cgroups.
    pub fn with_default_limits(mut self, defaults: Limits) -> ProcessRuntime {
        self.default_limits = defaults;
        self
    }

    /// Runs every instance in a cgroup of its own under `cgroups`, joined before the
    /// function runs: by the watchdog when it can (asked now), else by the forked child.
    pub fn with_cgroups(mut self, cgroups: Arc<Cgroups>) -> ProcessRuntime {
        let join_by = cgroup_join::probe(&self.watchdog);
        self.containment = Some(Containment { cgroups, join_by });
        self
    }

    /// How instances join their cgroup, when they run in one.
    pub fn join_by(&self) -> Option<JoinBy> {
        self.containment
            .as_ref()
            .map(|containment| containment.join_by)
    }

    /// How instances are contained, for the start-up line: `cgroups v1`, `cgroups v2`
    /// or `no cgroups`.
    pub fn containment(&self) -> &'static str {
        match &self.containment {
            Some(containment) if containment.cgroups.is_unified() => "cgroups v2",
            Some(_) => "cgroups v1",
            None => "no cgroups",
        }
    }

    /// The cgroup `name` of an instance held to `limits`, when instances run in cgroups
    /// (created by [`ProcessRuntime::create_cgroup`] right before the instance starts).
    fn cgroup(&self, name: &str, limits: &Limits) -> Option<Cgroup> {
        let containment = self.containment.as_ref()?;
        Some(containment.cgroups.cgroup(name, limits))
    }

    /// Creates `cgroup` with `limits` and makes `cmd`'s instance join it before the
    /// function runs.
    fn create_cgroup(
        &self,
        cmd: &mut Command,
        cgroup: Option<&Cgroup>,
        limits: &Limits,
    ) -> Result<(), RuntimeError> {
        // Only the runtime names the cgroup files (manifests cannot set the variable;
        // this also covers one stored before that was so).
        cmd.env_remove(env::CGROUP_PROCS);
        let Some(cgroup) = cgroup else {
            return Ok(());
        };
        cgroup.create(limits).map_err(|err| {
            RuntimeError::Spawn(format!("cannot prepare the instance's cgroup: {err}"))
        })?;
        let join_by = self.join_by().unwrap_or(JoinBy::ForkedChild);
        cgroup_join::join(cmd, &cgroup.procs_files(), join_by).map_err(|err| {
            let _ = cgroup.destroy();
            RuntimeError::Spawn(err.to_string())
        })
    }

    /// The cgroup limits of `spec`: its `resources`, else the defaults the host has a
    /// controller for (a missing one is said once, at start, not at every instance).
    fn limits(&self, spec: &FunctionSpec) -> Limits {
        let resources = &spec.resources;
        let own = Limits {
            memory_mb: resources.memory_mb,
            pids: resources.pids,
            cpu: resources.cpu,
        };
        match &self.containment {
            Some(containment) => own.or_defaults(&self.default_limits, &containment.cgroups),
            None => own,
        }
    }

    fn owner_marker(&self) -> String {
        format!("{OWNER_VAR}={}", self.owner)
    }

    fn lease_port(&self, purpose: &str) -> Result<PortLease, RuntimeError> {
        self.ports
            .lease()
            .map_err(|err| RuntimeError::Spawn(format!("no free port for {purpose}: {err}")))
    }

    /// The watchdog command for `spec` with a clean environment, the owner marker,
    /// `env`, and the scratch directory `scratch` (created) as default working dir.
    async fn watchdog_command(
        &self,
        spec: &FunctionSpec,
        scratch: &Path,
        launch_env: &[(String, String)],
        marker: &str,
    ) -> Result<Command, RuntimeError> {
        let command = spec.command.as_ref().ok_or_else(|| {
            RuntimeError::Unsupported("the process runtime needs a `command`".into())
        })?;
        self.make_scratch(scratch)
            .await
            .map_err(|source| RuntimeError::Scratch {
                path: scratch.display().to_string(),
                source,
            })?;
        // The markers are in argv[0] too: the watchdog hides its environment.
        let argv0 =
            orphans::marked_argv0("gantry-watchdog", &[self.owner_marker(), marker.to_owned()]);
        let mut cmd = Command::new(&self.watchdog);
        cmd.arg0(argv0);
        cmd.env_clear();
        for name in PASSED_ENV {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        if let Some(user) = &self.function_user {
            // The server's home is not the function user's.
            cmd.env(env::RUN_AS, user.run_as()).env("HOME", scratch);
        }
        cmd.env(OWNER_VAR, &self.owner)
            .env(env::WATCHDOG_CMD, command.to_line())
            .envs(launch_env.iter().map(|(k, v)| (k, v)));
        let working_dir = spec
            .working_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| scratch.to_path_buf());
        cmd.current_dir(working_dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// Creates an instance's scratch directory: private to the server, or handed over
    /// to the function user.
    async fn make_scratch(&self, scratch: &Path) -> std::io::Result<()> {
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(scratch)
            .await?;
        match self.function_user {
            Some(user) => function_user::hand_over(scratch, user),
            None => Ok(()),
        }
    }

    /// Spawns `cmd` and copies its output into `logs`. `marker` (beside the owner's)
    /// finds every process of the instance when it is stopped without a cgroup.
    fn spawn(
        &self,
        mut cmd: Command,
        logs: LogSink,
        marker: String,
        scratch: PathBuf,
        ports: Vec<PortLease>,
        cgroup: Option<Cgroup>,
    ) -> Result<ProcessInstance, RuntimeError> {
        let markers = vec![self.owner_marker(), marker];
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                if let Some(cgroup) = cgroup {
                    let _ = cgroup.destroy();
                }
                return Err(RuntimeError::Spawn(format!(
                    "could not run the watchdog {}: {err}",
                    self.watchdog.display()
                )));
            }
        };
        let pid = child.id().unwrap_or_default();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout_task = tokio::spawn(logs.clone().copy_lines(LogStream::Stdout, stdout));
        let stderr_task = tokio::spawn(logs.copy_lines(LogStream::Stderr, stderr));
        Ok(ProcessInstance {
            id: format!("process-{pid}"),
            child,
            stdout_task: Some(stdout_task),
            stderr_task: Some(stderr_task),
            exit: None,
            markers: Arc::new(markers),
            scratch,
            _ports: ports,
            cgroup,
            oom_seen: false,
        })
    }
}

/// RUNTIME_URL of an HTTP runtime on `port`.
fn runtime_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/invoke")
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn runs(&self, function: &FunctionSpec) -> bool {
        function.image.is_none()
    }

    fn problems(&self, function: &FunctionSpec) -> Vec<String> {
        let mut problems = Vec::new();
        if function.command.is_none() {
            problems.push(
                "`command` is required: this server runs functions as host processes (start it with --runtime docker to run `image`)"
                    .to_owned(),
            );
        }
        if let Some(dir) = &function.working_dir {
            if !Path::new(dir).is_dir() {
                problems.push(format!(
                    "`working_dir` {dir} is not a directory on the server"
                ));
            }
        }
        for (var, reference) in &function.secrets {
            if reference.as_file() {
                problems.push(format!(
                    "secrets.{var}: file secrets need the docker runtime (the process runtime passes secrets in the environment only)"
                ));
            }
        }
        problems
    }

    fn ignored(&self, function: &FunctionSpec) -> Vec<String> {
        let resources = &function.resources;
        let mut ignored = Vec::new();
        let cgroups = self.containment.as_ref().map(|c| &c.cgroups);
        for (field, set, controller) in [
            (
                "memory_mb",
                resources.memory_mb.is_some(),
                Controller::Memory,
            ),
            ("cpu", resources.cpu.is_some(), Controller::Cpu),
            ("pids", resources.pids.is_some(), Controller::Pids),
        ] {
            if !set {
                continue;
            }
            match cgroups {
                Some(cgroups) if cgroups.has(controller) => {}
                Some(_) => ignored.push(format!(
                    "resources.{field} is not enforced by the process runtime: this host has no cgroup controller for it (the docker runtime enforces it)"
                )),
                None => ignored.push(format!(
                    "resources.{field} is not enforced by the process runtime: this server runs without cgroups (the docker runtime enforces it)"
                )),
            }
        }
        if function.image.is_some() {
            ignored.push("`image` is ignored by the process runtime, which runs `command`".into());
        }
        ignored
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Instance>, RuntimeError> {
        let spec = &launch.function.spec;
        let scratch = self.scratch_root.join(launch.execution_id.to_string());
        let marker = format!("{}={}", env::EXECUTION_ID, launch.execution_id);
        let limits = self.limits(spec);
        let cgroup = self.cgroup(&format!("exec-{}", launch.execution_id), &limits);
        let mut cmd = self
            .watchdog_command(spec, &scratch, &launch.env, &marker)
            .await?;
        cmd.env(env::EXECUTION_MODE, spec.mode.as_env());
        let mut port = None;
        match spec.mode {
            Mode::File => {
                cmd.env(env::INPUT_FILE, scratch.join("input.json"))
                    .env(env::OUTPUT_FILE, scratch.join("output.json"));
            }
            Mode::Http => {
                let lease = self.lease_port("the HTTP runtime")?;
                cmd.env(env::RUNTIME_URL, runtime_url(lease.port));
                port = Some(lease);
            }
            Mode::Stdio => {}
        }
        self.create_cgroup(&mut cmd, cgroup.as_ref(), &limits)?;
        let instance = self.spawn(
            cmd,
            launch.logs,
            marker,
            scratch,
            port.into_iter().collect(),
            cgroup,
        )?;
        Ok(Box::new(instance))
    }

    async fn start_warm(&self, launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
        let spec = &launch.function.spec;
        let scratch = self.scratch_root.join(format!("warm-{}", launch.key));
        let marker = format!("{INSTANCE_VAR}={}", launch.key);
        let limits = self.limits(spec);
        let cgroup = self.cgroup(&format!("warm-{}", launch.key), &limits);
        let mut cmd = self
            .watchdog_command(spec, &scratch, &launch.env, &marker)
            .await?;
        let warm = self.lease_port("the warm instance")?;
        cmd.env(env::WARM_HOST, "127.0.0.1")
            .env(env::WARM_PORT, warm.port.to_string());
        let endpoint = format!("http://127.0.0.1:{}", warm.port);
        let mut ports = vec![warm];
        match spec.mode {
            Mode::File => {
                cmd.env(env::INPUT_FILE, scratch.join("input.json"))
                    .env(env::OUTPUT_FILE, scratch.join("output.json"));
            }
            Mode::Http => {
                let runtime = self.lease_port("the HTTP runtime")?;
                cmd.env(env::RUNTIME_URL, runtime_url(runtime.port));
                ports.push(runtime);
            }
            Mode::Stdio => {}
        }
        cmd.env(INSTANCE_VAR, launch.key.to_string());
        self.create_cgroup(&mut cmd, cgroup.as_ref(), &limits)?;
        let instance = self.spawn(cmd, launch.logs, marker, scratch, ports, cgroup)?;
        Ok(WarmStarted {
            instance: Box::new(instance),
            endpoint,
        })
    }

    async fn drain(&self, _limit: Duration) {
        if let Some(containment) = &self.containment {
            let cgroups = containment.cgroups.clone();
            let _ = tokio::task::spawn_blocking(move || cgroups.remove_empty()).await;
        }
        // The scratch root of a function user lives in the temp dir, not the data
        // directory: once empty it goes, so a stopped server leaves nothing there. One
        // still in use (an execution left running) keeps it.
        if self.function_user.is_some() {
            let _ = tokio::fs::remove_dir(&self.scratch_root).await;
        }
    }

    async fn remove_orphans(&self) -> usize {
        // The cgroups hold everything an earlier run started, whatever it did to its
        // environment; the marker scan finds what ran without them (--cgroups off).
        let mut stopped = 0;
        if let Some(containment) = &self.containment {
            let cgroups = containment.cgroups.clone();
            stopped += tokio::task::spawn_blocking(move || cgroups.remove_leftovers())
                .await
                .unwrap_or_default();
        }
        stopped += orphans::stop_marked(&[self.owner_marker()], self.kill_grace).await;
        if let Ok(mut entries) = tokio::fs::read_dir(&self.scratch_root).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
        stopped
    }
}
