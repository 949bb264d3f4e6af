//! Fast cgroup joins: the kernel's `favordynmods` mode, which the server turns on for the
//! host when it contains instances in cgroups as root.
//!
//! Every instance joins a cgroup of its own by a write to `cgroup.procs`. Without the
//! mode, the kernel makes a join wait for an RCU grace period whenever no other join
//! happened in the last few milliseconds: around 10 ms on a small VM, paid by every cold
//! start that follows a quiet moment, which is most of them. With it a join takes a
//! fraction of a millisecond, and forks and exits everywhere on the host get slightly
//! dearer. Any cgroup hierarchy mounted with the option turns the mode on for the whole
//! host. The server mounts an empty named v1 hierarchy with it (no controller, so no
//! process is moved or limited by it), gives it one empty child so that it outlives the
//! mount (older kernels turn the mode off again when the hierarchy goes; from Linux 6.18
//! it stays on until the host restarts), and unmounts it at once.

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::cgroup_fs;

/// The named hierarchy that carries the option.
pub const HIERARCHY: &str = "gantry-dynmods";

/// Whether `gantry serve` turns the mode on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DynmodsMode {
    /// When it runs as root and contains instances in cgroups.
    Auto,
    /// Never.
    Off,
}

/// Why the mode could not be turned on.
#[derive(Debug, thiserror::Error)]
pub enum DynmodsError {
    /// No temporary mount point.
    #[error("cannot make a temporary mount point: {0}")]
    MountPoint(#[source] io::Error),
    /// The kernel refused the hierarchy: older than Linux 6.0, without cgroup v1 named
    /// hierarchies, or no CAP_SYS_ADMIN.
    #[error("cannot mount a cgroup hierarchy with favordynmods (it needs Linux 6.0 or later and CAP_SYS_ADMIN): {0}")]
    Mount(#[source] nix::Error),
    /// The hierarchy's child could not be made.
    #[error("cannot keep the favordynmods hierarchy: {0}")]
    Keep(#[source] io::Error),
}

/// What [`favor_dynamic_changes`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Favored {
    /// A mounted hierarchy (the administrator's) carries the option already.
    Already,
    /// This server's named hierarchy carries it (made now, or by an earlier start).
    Turned,
}

/// Turns on `favordynmods` for the host, unless a mounted cgroup hierarchy has it.
pub fn favor_dynamic_changes() -> Result<Favored, DynmodsError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if favored_in(&mounts) {
        return Ok(Favored::Already);
    }
    let point = tempfile::Builder::new()
        .prefix("gantry-dynmods-")
        .tempdir()
        .map_err(DynmodsError::MountPoint)?;
    mount_and_keep(point.path())?;
    Ok(Favored::Turned)
}

/// Mounts the named hierarchy on `point`, gives it its child and unmounts it. A second
/// server finds the hierarchy and its child in place; the mount then only checks that
/// the hierarchy still carries the option (the kernel refuses a mount that asks for other
/// options than an existing hierarchy's).
fn mount_and_keep(point: &Path) -> Result<(), DynmodsError> {
    let options = format!("none,name={HIERARCHY},favordynmods");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("cgroup"),
        point,
        Some("cgroup"),
        flags,
        Some(options.as_str()),
    )
    .map_err(DynmodsError::Mount)?;
    let kept = match std::fs::create_dir(point.join("keep")) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(DynmodsError::Keep(err)),
        _ => Ok(()),
    };
    // Lazily: nothing may be left mounted, even if something has the directory open.
    if let Err(err) = umount2(point, MntFlags::MNT_DETACH) {
        tracing::warn!("cannot unmount {}: {err}", point.display());
    }
    kept
}

/// Whether a cgroup hierarchy in `mounts` (a `/proc/self/mounts` text) is mounted with
/// `favordynmods`.
fn favored_in(mounts: &str) -> bool {
    cgroup_fs::parse_mounts(mounts)
        .iter()
        .any(|mount| mount.options.iter().any(|option| option == "favordynmods"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hierarchy_mounted_with_the_option_is_found() {
        let plain = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                     tmpfs /tmp tmpfs rw,favordynmods 0 0\n";
        assert!(!favored_in(plain), "only cgroup hierarchies count");
        let v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,favordynmods,memory_recursiveprot 0 0\n";
        assert!(favored_in(&format!("{plain}{v2}")));
        let v1 = "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,favordynmods,pids 0 0\n";
        assert!(favored_in(v1));
    }
}
