//! The `gantry` binary: parses the command line and hands over to `gantry serve` or to
//! the client commands of [`gantry::cli`].

use std::process::ExitCode;

use clap::Parser;
use gantry::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    Box::pin(gantry::cli::run(cli.global, cli.command)).await
}
