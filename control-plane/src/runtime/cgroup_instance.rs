//! One instance's cgroup: a directory per v1 hierarchy (or the one v2 directory) under
//! the server's parents, its limits, its OOM count, and emptying and removing it.

use std::path::{Path, PathBuf};

use super::cgroup::{CgroupError, Controller, Limits, Node};
use super::cgroup_fs as fs;

/// Period of the CPU quota, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// One instance's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    unified: bool,
    nodes: Vec<Node>,
}

impl Cgroup {
    pub(super) fn new(unified: bool, nodes: Vec<Node>) -> Cgroup {
        Cgroup { unified, nodes }
    }

    /// Creates the cgroup with `limits`; on failure nothing is left. A leftover of the
    /// same name (an earlier attempt's) is emptied and replaced. A limit whose
    /// controller or file is missing is skipped with a logged reason.
    pub fn create(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.destroy()?;
        for node in &self.nodes {
            if let Err(err) = std::fs::create_dir(&node.dir) {
                let err = CgroupError::io("create", &node.dir, err);
                let _ = self.destroy();
                return Err(err);
            }
        }
        self.apply(limits);
        Ok(())
    }

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
