//! Containment of the process runtime's instances in cgroups (v2, or the v1 controllers).
//!
//! The server keeps one parent cgroup per data directory (`gantry-<owner id>`), under
//! the controller roots when it runs as root and under its own cgroup otherwise, and one
//! child per one-shot execution or warm instance. The watchdog joins its child before it
//! starts anything (see [`super::cgroup_join`]), so everything the function
//! starts is in it, whatever session, process group or environment it gives itself:
//! emptying the cgroup stops all of it, and the manifest's `memory_mb`, `pids` and `cpu`
//! are the cgroup's limits. Where cgroups are missing, the runtime runs without them
//! and says so.

use std::path::{Path, PathBuf};

use super::cgroup_fs::{self as fs, Mount};
pub use super::cgroup_instance::Cgroup;

/// Environment variable that makes the server behave as on a host without cgroups
/// (`1`), for tests of that path.
pub const DISABLE_VAR: &str = "GANTRY_TEST_NO_CGROUPS";

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
    /// The controller's name, as the kernel spells it.
    pub fn name(self) -> &'static str {
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

impl Limits {
    /// These limits, each one unset taken from `defaults` where `cgroups` have its
    /// controller (a default the host cannot hold is left out, not warned about at
    /// every instance).
    pub fn or_defaults(self, defaults: &Limits, cgroups: &Cgroups) -> Limits {
        let held = |controller| cgroups.has(controller);
        Limits {
            memory_mb: (self.memory_mb).or(defaults.memory_mb.filter(|_| held(Controller::Memory))),
            pids: self
                .pids
                .or(defaults.pids.filter(|_| held(Controller::Pids))),
            cpu: self.cpu.or(defaults.cpu.filter(|_| held(Controller::Cpu))),
        }
    }

    /// Whether one of the limits needs `controller`.
    fn limits(&self, controller: Controller) -> bool {
        match controller {
            Controller::Memory => self.memory_mb.is_some(),
            Controller::Pids => self.pids.is_some(),
            Controller::Cpu => self.cpu.is_some(),
            Controller::Freezer => false,
        }
    }
}

/// A cgroup directory in one hierarchy and the controllers it has there.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub dir: PathBuf,
    pub controllers: Vec<Controller>,
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
            // A hierarchy this server cannot use (read-only, not delegated) is left out;
            // the others still contain the instances.
            let mut parents = Vec::new();
            let mut refused = Vec::new();
            for (mount, controllers) in v1 {
                let Some(first) = controllers.first() else {
                    continue;
                };
                let base = base_dir(mount, own_path_or_root(&own, Some(first.name())), root);
                let dir = base.join(&name);
                if let Err(err) = fs::make_dir(&dir) {
                    tracing::warn!("cgroup hierarchy {} left out: {err}", mount.dir.display());
                    refused.push(err);
                    continue;
                }
                if controllers.contains(&Controller::Memory) {
                    // Limits are per instance, counted across its whole subtree.
                    let _ = fs::write(&dir.join("memory.use_hierarchy"), "1");
                }
                parents.push(Node { dir, controllers });
            }
            if parents.is_empty() {
                return Err(refused
                    .pop()
                    .unwrap_or_else(|| CgroupError::NotMounted("no v1 hierarchy".into())));
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

    /// `v1 (memory, pids, cpu, freezer) in /sys/fs/cgroup/memory/gantry-…, …` for the
    /// start-up log.
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

    /// Whether this is the unified (v2) hierarchy.
    pub fn is_unified(&self) -> bool {
        self.unified
    }

    /// Whether `controller` is available to instances.
    pub fn has(&self, controller: Controller) -> bool {
        (self.unified && controller == Controller::Freezer)
            || self
                .parents
                .iter()
                .any(|node| node.controllers.contains(&controller))
    }

    /// The cgroup `name` of an instance with `limits`, not created yet (see
    /// [`Cgroup::create`]). With v1 it spans the hierarchies of the limits that are set
    /// and one that tracks its processes (the freezer's where there is one): each
    /// hierarchy costs a directory made and removed per cold start.
    pub fn cgroup(&self, name: &str, limits: &Limits) -> Cgroup {
        let tracker = [Controller::Freezer, Controller::Pids]
            .iter()
            .find_map(|wanted| {
                self.parents
                    .iter()
                    .position(|parent| parent.controllers.contains(wanted))
            })
            .unwrap_or(0);
        self.named(name, |index, parent| {
            self.unified || index == tracker || parent.controllers.iter().any(|c| limits.limits(*c))
        })
    }

    /// The cgroup `name` in the parents `keep` picks.
    fn named(&self, name: &str, keep: impl Fn(usize, &Node) -> bool) -> Cgroup {
        let nodes = self
            .parents
            .iter()
            .enumerate()
            .filter(|(index, parent)| keep(*index, parent))
            .map(|(_, parent)| Node {
                dir: parent.dir.join(name),
                controllers: parent.controllers.clone(),
            })
            .collect();
        Cgroup::new(self.unified, nodes)
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
            let cgroup = self.named(&name.to_string_lossy(), |_, _| true);
            if let Err(err) = cgroup.destroy() {
                tracing::warn!("cannot remove a leftover cgroup: {err}");
            }
        }
        names.len()
    }

    /// Removes the instance cgroups that are empty, then the parents if nothing is left
    /// in them (when the server stops: a cgroup still in use stays for the next start).
    pub fn remove_empty(&self) {
        for parent in &self.parents {
            for child in fs::children(&parent.dir) {
                let _ = std::fs::remove_dir(child);
            }
            let _ = std::fs::remove_dir(&parent.dir);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The cgroups of every kind this host lets the test make: the server's choice
    /// (v1 controllers here, or v2) and, beside v1, the unified hierarchy (kill and
    /// freeze only). Empty where the test does not run as root.
    fn hierarchies(owner: &str) -> Vec<Cgroups> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: making cgroups needs root");
            return Vec::new();
        }
        let mut found: Vec<Cgroups> = Cgroups::setup(CgroupMode::Auto, owner)
            .into_iter()
            .collect();
        let mounts = fs::parse_mounts(&std::fs::read_to_string("/proc/self/mounts").unwrap());
        if let Some(unified) = mounts.iter().find(|mount| mount.unified) {
            if found.iter().all(|cgroups| !cgroups.unified) {
                let dir = unified.dir.join(format!("gantry-{owner}-v2"));
                if fs::make_dir(&dir).is_ok() {
                    found.push(Cgroups {
                        unified: true,
                        parents: vec![Node {
                            dir,
                            controllers: Vec::new(),
                        }],
                    });
                }
            }
        }
        found
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn destroying_a_cgroup_kills_what_left_the_session_and_removes_it() {
        let owner = format!("unit-{}", uuid::Uuid::new_v4().simple());
        for cgroups in hierarchies(&owner) {
            eprintln!("cgroups {}", cgroups.describe());
            let limits = Limits {
                memory_mb: Some(64),
                pids: Some(32),
                cpu: Some(0.5),
            };
            let cgroup = cgroups.cgroup("exec-1", &limits);
            cgroup.create(&limits).unwrap();
            // The shell waits before it forks, so its children start inside.
            let mut child = std::process::Command::new("sh")
                .args(["-c", "sleep 0.3; setsid sleep 30 & exec sleep 30"])
                .spawn()
                .unwrap();
            for file in cgroup.procs_files() {
                std::fs::write(file, child.id().to_string()).unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            let dir = cgroup.procs_files()[0].parent().unwrap().to_path_buf();
            let pids = loop {
                let pids = fs::procs(&dir);
                if pids.len() >= 2 {
                    break pids;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: {pids:?}",
                    cgroups.describe()
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            if cgroups.has(Controller::Pids) {
                let pids_dir = cgroup.controller_dir(Controller::Pids).unwrap();
                assert_eq!(fs::read(&pids_dir.join("pids.max")).unwrap(), "32");
            }
            cgroup.destroy().unwrap();
            let _ = child.wait();
            for pid in &pids {
                assert!(!alive(*pid), "{pid} survived in {}", cgroups.describe());
            }
            assert!(!dir.exists());
            assert_eq!(cgroup.oom_kills(), 0);
            // A leftover is found and removed; then the parents are removed too.
            let leftover = cgroups.cgroup("warm-2", &Limits::default());
            leftover.create(&Limits::default()).unwrap();
            assert_eq!(cgroups.remove_leftovers(), 1);
            assert!(leftover.procs_files().iter().all(|file| !file.exists()));
            for parent in &cgroups.parents {
                fs::remove_dir(&parent.dir).unwrap();
            }
        }
    }

    #[test]
    fn a_default_fills_only_an_unset_limit_whose_controller_is_held() {
        let cgroups = Cgroups {
            unified: false,
            parents: vec![Node {
                dir: PathBuf::from("/nonexistent/gantry-defaults"),
                controllers: vec![Controller::Pids, Controller::Freezer],
            }],
        };
        let defaults = Limits {
            memory_mb: Some(256),
            pids: Some(256),
            cpu: Some(1.0),
        };
        let held_only = Limits {
            pids: Some(256),
            ..Limits::default()
        };
        assert_eq!(
            Limits::default().or_defaults(&defaults, &cgroups),
            held_only
        );
        let own = Limits {
            memory_mb: Some(64),
            pids: Some(8),
            cpu: None,
        };
        assert_eq!(own.or_defaults(&defaults, &cgroups), own);
        assert_eq!(own.or_defaults(&Limits::default(), &cgroups), own);
    }
}
