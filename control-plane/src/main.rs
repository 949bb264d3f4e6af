//! The `gantry` binary: parses the command line and hands over to `gantry serve` or to
//! the client commands of [`gantry::cli`]. A hidden first argument runs the cgroup
//! trampoline of the process runtime instead, before any async runtime starts (it only
//! joins a cgroup and execs).

use std::process::ExitCode;

use clap::Parser;
use gantry::cli::Cli;
use gantry::runtime::cgroup_join;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|arg| arg == cgroup_join::TRAMPOLINE)
    {
        return cgroup_join::run(&args[2..]);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("gantry: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(Box::pin(gantry::cli::run(cli.global, cli.command)))
}
