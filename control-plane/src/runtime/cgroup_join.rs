//! Joining an instance's cgroup between fork and exec: the process runtime's child
//! writes `0` (itself) into each `cgroup.procs` file of its cgroup before it execs the
//! watchdog, so the watchdog is contained before it runs a single instruction, and so is
//! everything it starts. The files are opened in the server, so the child only writes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::process::Command;

/// Makes `command`'s child join the cgroup whose `cgroup.procs` files are
/// `procs_files` before it execs. A child that cannot join fails to start (the spawn
/// answers the error), so a function never runs uncontained.
pub fn join_before_exec(command: &mut Command, procs_files: &[PathBuf]) -> std::io::Result<()> {
    let mut files = procs_files
        .iter()
        .map(|path| open_procs(path))
        .collect::<std::io::Result<Vec<File>>>()?;
    let join = move || -> std::io::Result<()> {
        for file in &mut files {
            // `0` is the writing process; one write(2), no allocation.
            file.write_all(b"0")?;
        }
        Ok(())
    };
    #[allow(unsafe_code)]
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it only calls write(2) on descriptors opened (close-on-exec)
    // before the fork, without allocating or taking locks.
    unsafe {
        command.pre_exec(join);
    }
    Ok(())
}

fn open_procs(path: &Path) -> std::io::Result<File> {
    File::options().write(true).open(path).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot open {} to join the cgroup: {err}", path.display()),
        )
    })
}
