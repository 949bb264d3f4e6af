//! The cgroup trampoline: `gantry __join-cgroup [--arg0 NAME] <cgroup.procs>… -- <program>
//! [args…]` writes its own pid into each `cgroup.procs` file and then execs the program
//! (keeping its pid, environment, working directory and descriptors). The process
//! runtime starts the watchdog through it, so the watchdog is in its cgroup before it
//! runs a single instruction, and so is everything it starts; no `pre_exec` hook (and no
//! unsafe code) is needed.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The hidden first argument of the `gantry` binary that runs the trampoline.
pub const TRAMPOLINE: &str = "__join-cgroup";

/// Exit code when the cgroup cannot be joined: the instance must not run uncontained.
const EXIT_JOIN: u8 = 125;
/// Exit code when the program cannot be executed.
const EXIT_EXEC: u8 = 126;

/// The arguments that make the `gantry` binary at `gantry` join the cgroup of
/// `procs_files` and exec `program` with `argv0`.
pub fn command(gantry: &Path, procs_files: &[PathBuf], argv0: &str, program: &Path) -> Command {
    let mut command = Command::new(gantry);
    command
        .arg(TRAMPOLINE)
        .arg("--arg0")
        .arg(argv0)
        .args(procs_files)
        .arg("--")
        .arg(program);
    command
}

/// Runs the trampoline on the arguments after [`TRAMPOLINE`]; returns only on failure.
pub fn run(args: &[OsString]) -> ExitCode {
    let Some(split) = args.iter().position(|arg| arg == "--") else {
        eprintln!(
            "gantry {TRAMPOLINE}: usage: [--arg0 NAME] <cgroup.procs>... -- <program> [args...]"
        );
        return ExitCode::from(EXIT_JOIN);
    };
    let (mut before, after) = (&args[..split], &args[split + 1..]);
    let mut argv0: Option<&OsStr> = None;
    if before.first().is_some_and(|arg| arg == "--arg0") {
        argv0 = before.get(1).map(OsString::as_os_str);
        before = before.get(2..).unwrap_or_default();
    }
    let Some((program, program_args)) = after.split_first() else {
        eprintln!("gantry {TRAMPOLINE}: no program to run");
        return ExitCode::from(EXIT_JOIN);
    };
    let pid = std::process::id().to_string();
    for file in before {
        if let Err(err) = std::fs::write(file, &pid) {
            eprintln!(
                "gantry {TRAMPOLINE}: cannot join the cgroup {}: {err}",
                Path::new(file).display()
            );
            return ExitCode::from(EXIT_JOIN);
        }
    }
    let mut command = Command::new(program);
    command.args(program_args);
    if let Some(argv0) = argv0 {
        command.arg0(argv0);
    }
    let err = command.exec();
    eprintln!(
        "gantry {TRAMPOLINE}: cannot run {}: {err}",
        Path::new(program).display()
    );
    ExitCode::from(EXIT_EXEC)
}
