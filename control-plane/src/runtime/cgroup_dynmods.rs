//! Fast cgroup joins: the kernel's `favordynmods` mode, which the server turns on for a
//! cgroup v1 host when it contains instances in cgroups as root.
//!
//! Every instance joins a cgroup of its own by a write to `cgroup.procs`. Without the
//! mode, the kernel makes a join wait for an RCU grace period whenever no other join
//! happened in the last few milliseconds: around 10 ms on a small VM, paid by every cold
//! start that follows a quiet moment, which is most of them. With it a join takes a
//! fraction of a millisecond, and forks and exits everywhere on the host get slightly
//! dearer. Any cgroup hierarchy mounted with the option turns the mode on for the whole
//! host, so the server mounts an empty named hierarchy with it (no controller: no process
//! is moved or limited by it) on [`MOUNT_POINT`], and leaves it mounted: a hierarchy that
//! lives on unmounted breaks tools that look up the mount of every hierarchy a process is
//! in (containerd's OOM watch, for one). A cgroup v2 host is left as it is: there the
//! option belongs on its one hierarchy, which is the administrator's.

use std::fs::File;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, MsFlags};

use super::cgroup_fs::{self, Mount};

/// The named hierarchy that carries the option.
pub const HIERARCHY: &str = "gantry-dynmods";
/// Where it is mounted (`/sys/fs/cgroup` is read-only on many v1 hosts).
pub const MOUNT_POINT: &str = "/run/gantry-dynmods";
/// Longest wait for another server mounting it at the same moment.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Whether `gantry serve` turns the mode on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DynmodsMode {
    /// When it runs as root and contains instances in cgroups v1.
    Auto,
    /// Never.
    Off,
}

/// Why the mode is not turned on.
#[derive(Debug, thiserror::Error)]
pub enum DynmodsError {
    /// The host has the unified hierarchy only.
    #[error("on a cgroup v2 host, mounting its hierarchy with favordynmods would make them fast")]
    Unified,
    /// The mount point could not be made or locked.
    #[error("cannot prepare {}: {source}", dir.display())]
    MountPoint {
        /// The mount point.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the hierarchy: older than Linux 6.0, or no CAP_SYS_ADMIN.
    #[error("cannot mount a cgroup hierarchy with favordynmods on {} (it needs Linux 6.0 or later and CAP_SYS_ADMIN): {source}", dir.display())]
    Mount {
        /// The mount point.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
}

/// The mount of a cgroup hierarchy with `favordynmods`: one found (the administrator's,
/// or an earlier start's), else one made on [`MOUNT_POINT`] of a v1 host.
pub fn favor_dynamic_changes() -> Result<PathBuf, DynmodsError> {
    let read = || {
        cgroup_fs::parse_mounts(&std::fs::read_to_string("/proc/self/mounts").unwrap_or_default())
    };
    if let Some(found) = favored(&read()) {
        return Ok(found);
    }
    if !has_v1(&read()) {
        return Err(DynmodsError::Unified);
    }
    let dir = PathBuf::from(MOUNT_POINT);
    let prepare = |source| DynmodsError::MountPoint {
        dir: dir.clone(),
        source,
    };
    // Root's alone: no other user can open it, so none can hold its lock.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(prepare)?;
    // Servers starting together mount it once: the first takes the lock on the mount
    // point, the others find its mount once they get the lock in turn.
    let _lock = lock(&dir).map_err(prepare)?;
    if let Some(found) = favored(&read()) {
        return Ok(found);
    }
    let options = format!("none,name={HIERARCHY},favordynmods");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("cgroup"),
        &dir,
        Some("cgroup"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|source| DynmodsError::Mount {
        dir: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// An exclusive lock on directory `dir`, waited for at most [`LOCK_WAIT`].
fn lock(dir: &Path) -> io::Result<Flock<File>> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = File::open(dir)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, errno)) => return Err(io::Error::from(errno)),
        }
    }
}

/// Where a cgroup hierarchy in `mounts` is mounted with `favordynmods`.
fn favored(mounts: &[Mount]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|mount| mount.options.iter().any(|option| option == "favordynmods"))
        .map(|mount| mount.dir.clone())
}

/// Whether `mounts` has a cgroup v1 hierarchy.
fn has_v1(mounts: &[Mount]) -> bool {
    mounts.iter().any(|mount| !mount.unified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<Mount> {
        cgroup_fs::parse_mounts(text)
    }

    #[test]
    fn a_hierarchy_mounted_with_the_option_is_found() {
        let plain = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                     tmpfs /tmp tmpfs rw,favordynmods 0 0\n";
        assert_eq!(
            favored(&parsed(plain)),
            None,
            "only cgroup hierarchies count"
        );
        let v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,favordynmods 0 0\n";
        let found = favored(&parsed(&format!("{plain}{v2}")));
        assert_eq!(found, Some(PathBuf::from("/sys/fs/cgroup")));
        let ours = "cgroup /run/gantry-dynmods cgroup rw,favordynmods,name=gantry-dynmods 0 0\n";
        let found = favored(&parsed(ours));
        assert_eq!(found, Some(PathBuf::from(MOUNT_POINT)));
    }

    #[test]
    fn only_a_host_with_v1_hierarchies_gets_one_more() {
        let v1 = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                  cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n";
        assert!(has_v1(&parsed(v1)));
        let v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert!(!has_v1(&parsed(v2)));
    }
}
