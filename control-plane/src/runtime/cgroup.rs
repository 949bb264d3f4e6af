//! Containment of the process runtime's instances in cgroups (v2, or the v1 controllers).
//!
//! The server keeps one parent cgroup per data directory (`gantry-<owner id>`), under
//! the controller roots when it runs as root and under its own cgroup otherwise, and one
//! child per one-shot execution or warm instance. The watchdog joins its child before it
//! runs (through the [`super::cgroup_join`] trampoline), so everything the function
//! starts is in it, whatever session, process group or environment it gives itself:
//! emptying the cgroup stops all of it, and the manifest's `memory_mb`, `pids` and `cpu`
//! are the cgroup's limits. Where cgroups are missing, the runtime runs without them
//! and says so.

use std::path::{Path, PathBuf};

use super::cgroup_fs::{self as fs, Mount};

/// Environment variable that makes the server behave as on a host without cgroups
/// (`1`), for tests of that path.
pub const DISABLE_VAR: &str = "GANTRY_TEST_NO_CGROUPS";

/// Period of the CPU quota, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// What can go wrong with cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `--cgroups off`.
    #[error("turned off with --cgroups off")]
    Off,
    /// The test switch [`DISABLE_VAR`] is set.
    #[error("turned off by {DISABLE_VAR}")]
    Disabled,
    /// No usable hierarchy is mounted.
    #[error("no cgroup hierarchy with a usable controller is mounted ({0})")]
    NotMounted(String),
    /// A cgroup file or directory could not be used.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted (`create`, `write`, `read`, `remove`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Processes were still in a cgroup after it was emptied for seconds.
    #[error("processes {pids:?} are still in {} after SIGKILL", dir.display())]
    Survivors {
        /// The cgroup.
        dir: PathBuf,
        /// Their pids.
        pids: Vec<i32>,
    },
}

impl CgroupError {
    pub(super) fn io(action: &'static str, path: &Path, source: std::io::Error) -> CgroupError {
        CgroupError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Whether `gantry serve` uses cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupMode {
    /// Where the host offers them.
    Auto,
    /// Never (the server then says it runs without them).
    Off,
}

/// A controller the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// `memory_mb`, and OOM kills.
    Memory,
    /// `pids`.
    Pids,
    /// `cpu`.
    Cpu,
    /// Freezing a cgroup while it is killed (v1; v2 has `cgroup.freeze` built in).
    Freezer,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Freezer => "freezer",
        }
    }
}

/// The limits of one instance, from the manifest's `resources`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory in MiB, swap excluded.
    pub memory_mb: Option<u64>,
    /// Most tasks at once (the watchdog included).
    pub pids: Option<u64>,
    /// CPU time in cores.
    pub cpu: Option<f64>,
}

/// A cgroup directory in one hierarchy and the controllers it has there.
#[derive(Debug, Clone)]
struct Node {
    dir: PathBuf,
    controllers: Vec<Controller>,
}

/// The server's cgroups: where its instances' cgroups are made.
#[derive(Debug)]
pub struct Cgroups {
    unified: bool,
    /// The parents (`…/gantry-<owner>`): one per v1 hierarchy, or the one v2 directory.
    parents: Vec<Node>,
}

impl Cgroups {
    /// Finds the hierarchies and prepares this data directory's parent cgroups, or
    /// answers why instances run without cgroups.
    pub fn setup(mode: CgroupMode, owner: &str) -> Result<Cgroups, CgroupError> {
        if mode == CgroupMode::Off {
            return Err(CgroupError::Off);
        }
        if std::env::var_os(DISABLE_VAR).is_some_and(|value| value == "1") {
            return Err(CgroupError::Disabled);
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|err| {
            CgroupError::NotMounted(format!("cannot read /proc/self/mounts: {err}"))
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = fs::parse_mounts(&mounts);
        let root = nix::unistd::Uid::effective().is_root();
        let name = format!("gantry-{owner}");
        let v1: Vec<(&Mount, Vec<Controller>)> = mounts
            .iter()
            .filter(|mount| !mount.unified)
            .filter_map(|mount| {
                let mut controllers: Vec<Controller> = mount
                    .options
                    .iter()
                    .filter_map(|o| fs::controller_of(o))
                    .collect();
                controllers.dedup();
                (!controllers.is_empty()).then_some((mount, controllers))
            })
            .collect();
        if !v1.is_empty() {
            let mut parents = Vec::new();
            for (mount, controllers) in v1 {
                let wanted = controllers[0].name();
                let base = base_dir(mount, own_path_or_root(&own, Some(wanted)), root);
                let dir = base.join(&name);
                fs::make_dir(&dir)?;
                if controllers.contains(&Controller::Memory) {
                    // Limits are per instance, counted across its whole subtree.
                    let _ = fs::write(&dir.join("memory.use_hierarchy"), "1");
                }
                parents.push(Node { dir, controllers });
            }
            return Ok(Cgroups {
                unified: false,
                parents,
            });
        }
        let unified = mounts
            .iter()
            .find(|mount| mount.unified)
            .ok_or_else(|| CgroupError::NotMounted("neither v1 controllers nor cgroup2".into()))?;
        let base = base_dir(unified, own_path_or_root(&own, None), root);
        let dir = base.join(&name);
        fs::make_dir(&dir)?;
        // Controllers pass down only where each level enables them for its children.
        for level in [&base, &dir] {
            for controller in [Controller::Memory, Controller::Pids, Controller::Cpu] {
                let control = level.join("cgroup.subtree_control");
                if let Err(err) = fs::write(&control, &format!("+{}", controller.name())) {
                    tracing::debug!("cgroup controller {} not enabled: {err}", controller.name());
                }
            }
        }
        let enabled = fs::read(&dir.join("cgroup.subtree_control")).unwrap_or_default();
        let controllers = [Controller::Memory, Controller::Pids, Controller::Cpu]
            .into_iter()
            .filter(|c| enabled.split_whitespace().any(|name| name == c.name()))
            .collect();
        Ok(Cgroups {
            unified: true,
            parents: vec![Node { dir, controllers }],
        })
    }

    /// `v1 (memory, pids, cpu, freezer) under /sys/fs/cgroup/memory/gantry-…` for the
    /// start-up line.
    pub fn describe(&self) -> String {
        let mut names: Vec<&str> = self
            .parents
            .iter()
            .flat_map(|node| node.controllers.iter().map(|c| c.name()))
            .collect();
        names.dedup();
        let version = if self.unified { "v2" } else { "v1" };
        let dirs: Vec<String> = self
            .parents
            .iter()
            .map(|node| node.dir.display().to_string())
            .collect();
        format!("{version} ({}) in {}", names.join(", "), dirs.join(", "))
    }

    /// Whether `controller` is available to instances.
    pub fn has(&self, controller: Controller) -> bool {
        self.unified && controller == Controller::Freezer
            || self
                .parents
                .iter()
                .any(|node| node.controllers.contains(&controller))
    }

    /// Creates the cgroup `name` for one instance with `limits`. A leftover of the same
    /// name is emptied and replaced. A limit whose controller or file is missing is
    /// skipped with a logged reason.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut nodes = Vec::with_capacity(self.parents.len());
        for parent in &self.parents {
            nodes.push(Node {
                dir: parent.dir.join(name),
                controllers: parent.controllers.clone(),
            });
        }
        let cgroup = Cgroup {
            unified: self.unified,
            nodes,
        };
        if cgroup.nodes.iter().any(|node| node.dir.exists()) {
            cgroup.destroy()?;
        }
        for node in &cgroup.nodes {
            if let Err(err) = std::fs::create_dir(&node.dir) {
                let err = CgroupError::io("create", &node.dir, err);
                let _ = cgroup.destroy();
                return Err(err);
            }
        }
        cgroup.apply(limits);
        Ok(cgroup)
    }

    /// Empties and removes every cgroup under this data directory's parents (what an
    /// earlier run left when it crashed); answers how many there were.
    pub fn remove_leftovers(&self) -> usize {
        let mut names: Vec<std::ffi::OsString> = self
            .parents
            .iter()
            .flat_map(|node| fs::children(&node.dir))
            .filter_map(|dir| dir.file_name().map(ToOwned::to_owned))
            .collect();
        names.sort();
        names.dedup();
        for name in &names {
            let cgroup = Cgroup {
                unified: self.unified,
                nodes: self
                    .parents
                    .iter()
                    .map(|parent| Node {
                        dir: parent.dir.join(name),
                        controllers: parent.controllers.clone(),
                    })
                    .collect(),
            };
            if let Err(err) = cgroup.destroy() {
                tracing::warn!("cannot remove a leftover cgroup: {err}");
            }
        }
        names.len()
    }
}

/// The directory under `mount` the server's parent goes in: the hierarchy's root for a
/// server running as root, else the server's own cgroup (the only place a delegated,
/// unprivileged user may create cgroups), when it is visible in this mount.
fn base_dir(mount: &Mount, own: String, root: bool) -> PathBuf {
    if root {
        return mount.dir.clone();
    }
    let own = mount.dir.join(own.trim_start_matches('/'));
    if own.is_dir() {
        own
    } else {
        mount.dir.clone()
    }
}

fn own_path_or_root(own: &str, controller: Option<&str>) -> String {
    fs::own_path(own, controller).unwrap_or_else(|| "/".into())
}

/// One instance's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    unified: bool,
    nodes: Vec<Node>,
}

impl Cgroup {
    fn dir_of(&self, controller: Controller) -> Option<&Path> {
        self.nodes
            .iter()
            .find(|node| node.controllers.contains(&controller))
            .map(|node| node.dir.as_path())
    }

    /// The files a process writes its pid to to join this cgroup (one per hierarchy).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.nodes
            .iter()
            .map(|node| node.dir.join("cgroup.procs"))
            .collect()
    }

    /// Where the limit files of `controller` are, for tests and diagnostics.
    pub fn controller_dir(&self, controller: Controller) -> Option<PathBuf> {
        if self.unified {
            return self.nodes.first().map(|node| node.dir.clone());
        }
        self.dir_of(controller).map(Path::to_path_buf)
    }

    fn apply(&self, limits: &Limits) {
        let set = |controller: Controller, file: &str, value: String| {
            let Some(dir) = self.dir_of(controller) else {
                tracing::warn!(
                    "resources.{} is not enforced: the host has no {} cgroup controller",
                    match controller {
                        Controller::Memory => "memory_mb",
                        Controller::Pids => "pids",
                        _ => "cpu",
                    },
                    controller.name()
                );
                return false;
            };
            match fs::write(&dir.join(file), &value) {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!("a limit of {} is not applied: {err}", dir.display());
                    false
                }
            }
        };
        if let Some(mb) = limits.memory_mb {
            let bytes = (mb.saturating_mul(1024 * 1024)).to_string();
            if self.unified {
                set(Controller::Memory, "memory.max", bytes);
                // Without swap a hog is OOM-killed instead of crawling on.
                if self.has_file(Controller::Memory, "memory.swap.max") {
                    set(Controller::Memory, "memory.swap.max", "0".into());
                }
            } else if set(Controller::Memory, "memory.limit_in_bytes", bytes.clone()) {
                if self.has_file(Controller::Memory, "memory.memsw.limit_in_bytes") {
                    set(Controller::Memory, "memory.memsw.limit_in_bytes", bytes);
                } else {
                    set(Controller::Memory, "memory.swappiness", "0".into());
                }
            }
        }
        if let Some(pids) = limits.pids {
            set(Controller::Pids, "pids.max", pids.to_string());
        }
        if let Some(cpu) = limits.cpu {
            // At least a millisecond per period: the kernel refuses less.
            let quota = ((cpu * CPU_PERIOD_US as f64).round() as u64).max(1_000);
            if self.unified {
                set(
                    Controller::Cpu,
                    "cpu.max",
                    format!("{quota} {CPU_PERIOD_US}"),
                );
            } else if set(
                Controller::Cpu,
                "cpu.cfs_period_us",
                CPU_PERIOD_US.to_string(),
            ) {
                set(Controller::Cpu, "cpu.cfs_quota_us", quota.to_string());
            }
        }
    }

    fn has_file(&self, controller: Controller, file: &str) -> bool {
        self.dir_of(controller)
            .is_some_and(|dir| dir.join(file).exists())
    }

    /// How many processes its memory limit has killed (0 without a memory controller).
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.dir_of(Controller::Memory) else {
            return 0;
        };
        let (file, key) = if self.unified {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        match fs::read(&dir.join(file)) {
            Ok(text) => match fs::keyed_value(&text, key) {
                Some(kills) => kills,
                // Kernels before 4.13 do not count kills: a limit that was hit is the
                // best sign there is.
                None => fs::read(&dir.join("memory.failcnt"))
                    .ok()
                    .and_then(|count| count.parse::<u64>().ok())
                    .map_or(0, |count| u64::from(count > 0)),
            },
            Err(_) => 0,
        }
    }

    /// Kills every process in the cgroup and removes it (blocking: at most a few
    /// seconds). A cgroup that is already gone is fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let dirs: Vec<PathBuf> = self
            .nodes
            .iter()
            .map(|node| node.dir.clone())
            .filter(|dir| dir.exists())
            .collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let freezer = if self.unified {
            dirs.first().map(|dir| (dir.as_path(), true))
        } else {
            self.dir_of(Controller::Freezer)
                .filter(|dir| dir.exists())
                .map(|dir| (dir, false))
        };
        let emptied = fs::empty(&dirs, freezer);
        let mut removed = Ok(());
        for dir in &dirs {
            if let Err(err) = fs::remove_dir(dir) {
                removed = Err(err);
            }
        }
        emptied.and(removed)
    }

    /// [`Cgroup::destroy`] off the async runtime's threads.
    pub async fn destroy_async(&self) -> Result<(), CgroupError> {
        let cgroup = self.clone();
        match tokio::task::spawn_blocking(move || cgroup.destroy()).await {
            Ok(result) => result,
            Err(err) => Err(CgroupError::io(
                "empty",
                &self
                    .nodes
                    .first()
                    .map(|node| node.dir.clone())
                    .unwrap_or_default(),
                std::io::Error::other(err.to_string()),
            )),
        }
    }
}
