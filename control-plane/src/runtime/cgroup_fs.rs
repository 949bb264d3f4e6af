//! The cgroup file system underneath [`super::cgroup`]: which hierarchies are mounted
//! and where this process sits in them, reading and writing control files, and emptying
//! a cgroup of every process in it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::{CgroupError, Controller};

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub dir: PathBuf,
    /// `true` for the unified (v2) hierarchy.
    pub unified: bool,
    /// The v1 controllers it carries (`cpu,cpuacct` carries both); empty for v2.
    pub options: Vec<String>,
}

/// The cgroup hierarchies mounted for this process, from a `/proc/self/mounts` text.
pub(super) fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (dir, kind, options) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            let unified = match *kind {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(Mount {
                dir: PathBuf::from(unescape_mount_path(dir)),
                unified,
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// `/proc/mounts` writes spaces and a few other bytes as octal escapes (`\040`).
fn unescape_mount_path(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|code| u8::from_str_radix(code, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// This process's cgroup in the hierarchy carrying `controller` (`None`: the unified
/// one), from a `/proc/self/cgroup` text: `/` or a path below the mount.
pub(super) fn own_path(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = match controller {
            None => controllers.is_empty(),
            Some(wanted) => controllers.split(',').any(|name| name == wanted),
        };
        matches.then(|| path.to_owned())
    })
}

/// Reads a control file, trimmed.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| CgroupError::io("read", path, source))
}

/// Writes `value` to a control file.
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::io("write", path, source))
}

/// Creates a directory (and its parents); an existing one is fine.
pub(super) fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(dir).map_err(|source| CgroupError::io("create", dir, source))
}

/// The value of `key` in a flat keyed file (`memory.events`, `memory.oom_control`).
pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(char::is_whitespace)?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The pids listed in `dir/cgroup.procs` (none when the cgroup is gone).
pub(super) fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| {
            text.lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Longest time [`empty`] keeps killing before it gives up.
const EMPTY_LIMIT: Duration = Duration::from_secs(5);

/// Kills every process in the cgroup made of `dirs` (one per v1 hierarchy, or the one
/// v2 directory) until none is left: `cgroup.kill` where the kernel has it, else the
/// cgroup is frozen (so nothing forks while it is being killed), each pid gets SIGKILL,
/// and it is thawed so the signals are delivered; again for any process that slipped in.
/// `freezer` is the directory and file (`freezer.state`, `cgroup.freeze`) freezing it.
pub(super) fn empty(dirs: &[PathBuf], freezer: Option<(&Path, bool)>) -> Result<(), CgroupError> {
    let deadline = Instant::now() + EMPTY_LIMIT;
    let kill_file = dirs
        .iter()
        .map(|dir| dir.join("cgroup.kill"))
        .find(|file| file.exists());
    loop {
        let mut pids: Vec<i32> = dirs.iter().flat_map(|dir| procs(dir)).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Survivors {
                dir: dirs.first().cloned().unwrap_or_default(),
                pids,
            });
        }
        match &kill_file {
            Some(file) => write(file, "1")?,
            None => {
                let frozen = freezer.is_some_and(|(dir, v2)| freeze(dir, v2, true));
                for pid in pids {
                    // A pid that exited meanwhile is not an error.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                if frozen {
                    if let Some((dir, v2)) = freezer {
                        freeze(dir, v2, false);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Freezes (or thaws) the cgroup at `dir`; answers whether it is frozen now. Waits at
/// most 200 ms for the freeze to settle: a cgroup that does not settle is killed anyway.
fn freeze(dir: &Path, v2: bool, frozen: bool) -> bool {
    let (file, value) = match (v2, frozen) {
        (true, _) => ("cgroup.freeze", if frozen { "1" } else { "0" }),
        (false, true) => ("freezer.state", "FROZEN"),
        (false, false) => ("freezer.state", "THAWED"),
    };
    if write(&dir.join(file), value).is_err() || !frozen {
        return false;
    }
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        let settled = if v2 {
            read(&dir.join("cgroup.events"))
                .ok()
                .and_then(|events| keyed_value(&events, "frozen"))
                == Some(1)
        } else {
            read(&dir.join("freezer.state")).is_ok_and(|state| state == "FROZEN")
        };
        if settled {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Removes an emptied cgroup directory. The kernel may still be tearing down the last
/// process for a moment (EBUSY), so it tries again for up to a second; a directory that
/// is already gone is fine.
pub(super) fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err)
                if Instant::now() < deadline
                    && err.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => return Err(CgroupError::io("remove", dir, source)),
        }
    }
}

/// The directories under `dir` (cgroups below it), sorted; none when it cannot be read.
pub(super) fn children(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The controller a v1 mount option names, if it is one the runtime uses.
pub(super) fn controller_of(option: &str) -> Option<Controller> {
    match option {
        "memory" => Some(Controller::Memory),
        "pids" => Some(Controller::Pids),
        "cpu" => Some(Controller::Cpu),
        "freezer" => Some(Controller::Freezer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_own_paths_are_read_from_proc_texts() {
        let mounts = parse_mounts(
            "proc /proc proc rw 0 0\n\
             cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n\
             cgroup2 /sys/fs/cgroup/uni\\040fied cgroup2 rw,relatime 0 0\n",
        );
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].dir, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(mounts[0].options.iter().any(|o| o == "cpuacct"));
        assert!(mounts[1].unified);
        assert_eq!(mounts[1].dir, Path::new("/sys/fs/cgroup/uni fied"));
        let own = "4:memory:/a/b\n2:cpu,cpuacct:/\n0::/user.slice\n";
        assert_eq!(own_path(own, Some("memory")).as_deref(), Some("/a/b"));
        assert_eq!(own_path(own, Some("cpuacct")).as_deref(), Some("/"));
        assert_eq!(own_path(own, None).as_deref(), Some("/user.slice"));
        assert_eq!(own_path(own, Some("pids")), None);
    }

    #[test]
    fn keyed_values_are_found_by_name() {
        let events = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(3));
        assert_eq!(keyed_value(events, "oom"), None);
        assert_eq!(keyed_value("oom_kill x", "oom_kill"), None);
    }
}
