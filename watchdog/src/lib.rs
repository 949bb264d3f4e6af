//! The Gantry watchdog: runs a function's command in HTTP, STDIO, FILE or WARM mode,
//! enforces its timeout on the whole process group, and reports the result to the
//! control plane. Configuration comes only from the environment ([`config`]).
//!
//! The binary (`src/main.rs`) parses the configuration and calls [`run`]; everything
//! else lives here so integration tests and benchmarks drive the real code.

pub mod callback;
pub mod config;
pub mod http_client;
pub mod logs;
pub mod modes;
pub mod offload;
pub mod oneshot;
pub mod outcome;
pub mod process;
pub mod supervise;
pub mod warm;

use config::{Config, Mode};

/// The watchdog's exit codes.
pub mod exit_code {
    /// The function succeeded (one-shot), or a WARM watchdog stopped cleanly.
    pub const SUCCESS: i32 = 0;
    /// The function failed; the report says why.
    pub const FUNCTION_FAILED: i32 = 1;
    /// A configuration variable is invalid (`EX_USAGE`).
    pub const CONFIG: i32 = 64;
    /// The watchdog could not set itself up (signals, listening socket).
    pub const INTERNAL: i32 = 70;
    /// The result could not be delivered to CALLBACK_URL (`EX_TEMPFAIL`); it was
    /// printed on stdout instead.
    pub const CALLBACK_FAILED: i32 = 75;

    /// `SUCCESS` or `FUNCTION_FAILED`.
    pub fn for_result(succeeded: bool) -> i32 {
        if succeeded {
            SUCCESS
        } else {
            FUNCTION_FAILED
        }
    }
}

/// Runs the watchdog as configured and returns its exit code. Call it on a
/// current-thread tokio runtime with I/O and time enabled.
pub async fn run(mut config: Config) -> i32 {
    config.command = config.command.resolved();
    // Start the log writer before the function can use up the pids limit.
    logs::start();
    if let Err(err) = process::reaper::start() {
        diag!("cannot watch child processes: {err}");
        return exit_code::INTERNAL;
    }
    let code = match config.mode {
        Mode::Warm => warm::serve(config).await,
        Mode::Http | Mode::Stdio | Mode::File => oneshot::run(&config).await,
    };
    logs::flush().await;
    code
}
