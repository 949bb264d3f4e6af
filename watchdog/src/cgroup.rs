//! Joining the cgroup the control plane made for this instance (`CGROUP_PROCS`): the
//! watchdog writes `0` (itself) into each listed `cgroup.procs` file before it does
//! anything else, so the function and everything it starts run in that cgroup. The
//! control plane can then start the watchdog without forking its own memory first.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use gantry_protocol::env;
use nix::sys::statfs::{fstatfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};

/// Joins every cgroup `CGROUP_PROCS` lists (none when it is unset); the error names the
/// file that could not be written.
pub fn join_from_env() -> std::io::Result<()> {
    match std::env::var_os(env::CGROUP_PROCS) {
        Some(list) => join(&list),
        None => Ok(()),
    }
}

/// Writes `0` into each file of `list` (paths, one a line; empty lines are skipped).
/// Only files of a cgroup filesystem are written: whoever sets the variable cannot make
/// the watchdog write into any other file.
pub fn join(list: &OsStr) -> std::io::Result<()> {
    let paths = list.as_bytes().split(|byte| *byte == b'\n');
    for path in paths.filter(|path| !path.is_empty()) {
        let path = Path::new(OsStr::from_bytes(path));
        let written = OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(write_self);
        if let Err(err) = written {
            return Err(Error::new(err.kind(), format!("{}: {err}", path.display())));
        }
    }
    Ok(())
}

/// Writes `0` into `file`, a file of a cgroup filesystem.
fn write_self(mut file: File) -> std::io::Result<()> {
    let kind = fstatfs(&file)?.filesystem_type();
    if kind != CGROUP_SUPER_MAGIC && kind != CGROUP2_SUPER_MAGIC {
        return Err(Error::new(ErrorKind::InvalidInput, "not a cgroup file"));
    }
    file.write_all(b"0")
}
