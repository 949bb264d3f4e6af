//! How an instance of the process runtime joins its cgroup before the function can run.
//! A watchdog that says it can (`watchdog --features`) joins by itself, first thing, from
//! the `CGROUP_PROCS` list: the server then starts it without copying its own memory
//! (posix_spawn), which is most of a cold start's spawn. An older watchdog is joined by
//! the forked child, which writes `0` into each `cgroup.procs` file between fork and
//! exec, so even that watchdog is contained before it runs a single instruction.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gantry_protocol::env;
use tokio::process::Command;

/// How long the server waits for `watchdog --features` at start.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// Who writes an instance into its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinBy {
    /// The watchdog, from `CGROUP_PROCS`, before it does anything else.
    Watchdog,
    /// The server's forked child, between fork and exec.
    ForkedChild,
}

impl JoinBy {
    /// For the server's log line.
    pub fn describe(self) -> &'static str {
        match self {
            JoinBy::Watchdog => "joined by the watchdog as it starts",
            JoinBy::ForkedChild => {
                "joined between fork and exec (this watchdog cannot join by itself: slower starts)"
            }
        }
    }
}

/// How instances of `watchdog` join their cgroup: by themselves when `watchdog
/// --features` lists `cgroup-procs` within [`PROBE_LIMIT`], else by the forked child.
pub fn probe(watchdog: &Path) -> JoinBy {
    let Ok(mut child) = std::process::Command::new(watchdog)
        .arg("--features")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return JoinBy::ForkedChild;
    };
    let deadline = Instant::now() + PROBE_LIMIT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if !matches!(child.try_wait(), Ok(Some(status)) if status.success()) {
        let _ = child.kill();
        let _ = child.wait();
        return JoinBy::ForkedChild;
    }
    let mut features = String::new();
    let read = child
        .stdout
        .take()
        .map(|mut out| std::io::Read::read_to_string(&mut out, &mut features).is_ok());
    if read == Some(true)
        && features
            .lines()
            .any(|line| line == env::FEATURE_CGROUP_PROCS)
    {
        JoinBy::Watchdog
    } else {
        JoinBy::ForkedChild
    }
}

/// Makes `command`'s instance join the cgroup whose `cgroup.procs` files are
/// `procs_files`, as `by` says. An instance that cannot join fails to start (the
/// spawn or the watchdog says why), so a function never runs uncontained.
pub fn join(command: &mut Command, procs_files: &[PathBuf], by: JoinBy) -> std::io::Result<()> {
    match by {
        JoinBy::Watchdog => {
            command.env(env::CGROUP_PROCS, procs_list(procs_files)?);
            Ok(())
        }
        JoinBy::ForkedChild => join_before_exec(command, procs_files),
    }
}

/// The `CGROUP_PROCS` value: the paths, one a line.
fn procs_list(procs_files: &[PathBuf]) -> std::io::Result<String> {
    let mut list = Vec::with_capacity(procs_files.len());
    for path in procs_files {
        match path.to_str() {
            Some(text) if !text.contains('\n') => list.push(text),
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "cannot pass the cgroup file {} to the watchdog",
                        path.display()
                    ),
                ))
            }
        }
    }
    Ok(list.join("\n"))
}

/// Makes `command`'s child join the cgroup whose `cgroup.procs` files are
/// `procs_files` before it execs.
fn join_before_exec(command: &mut Command, procs_files: &[PathBuf]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_one_path_a_line_and_a_line_break_in_a_path_is_refused() {
        let files = [
            PathBuf::from("/sys/fs/cgroup/pids/a/cgroup.procs"),
            PathBuf::from("/sys/fs/cgroup/memory/a/cgroup.procs"),
        ];
        assert_eq!(
            procs_list(&files).unwrap(),
            "/sys/fs/cgroup/pids/a/cgroup.procs\n/sys/fs/cgroup/memory/a/cgroup.procs"
        );
        let odd = [PathBuf::from("/sys/fs/cgroup/pids/a\nb/cgroup.procs")];
        assert!(procs_list(&odd).is_err());
    }

    #[test]
    fn a_program_that_does_not_know_the_flag_is_joined_by_the_forked_child() {
        assert_eq!(probe(Path::new("/bin/false")), JoinBy::ForkedChild);
        assert_eq!(probe(Path::new("/no/such/watchdog")), JoinBy::ForkedChild);
        // Succeeds, but does not list the feature.
        assert_eq!(probe(Path::new("/bin/true")), JoinBy::ForkedChild);
    }
}
