//! The Gantry watchdog: runs a function's command in HTTP, STDIO, FILE or WARM mode,
//! enforces its timeout on the whole process group, and reports the result to the
//! control plane. Configuration comes only from the environment ([`config`]).
//!
//! The binary (`src/main.rs`) parses the configuration and calls [`run`]; everything
//! else lives here so integration tests and benchmarks drive the real code.

pub mod callback;
pub mod cgroup;
pub mod config;
pub mod http_client;
pub mod identity;
pub mod logs;
pub mod modes;
pub mod offload;
pub mod oneshot;
pub mod outcome;
pub mod process;
pub mod secret_files;
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
    // Start the log writer before the function can use up the pids limit.
    logs::start();
    if let Err(code) = prepare(&config) {
        logs::flush().await;
        return code;
    }
    // PATH is searched once, here, only when the function runs as the watchdog's own
    // user: another user may not reach what the watchdog finds (a ~/.pyenv of root's),
    // so its exec searches PATH itself.
    if process::launch().run_as.is_none() {
        config.command = config.command.resolved();
    }
    let code = match process::reaper::start() {
        Err(err) => {
            diag!("cannot watch child processes: {err}");
            exit_code::INTERNAL
        }
        Ok(()) => match config.mode {
            Mode::Warm => warm::serve(config).await,
            Mode::Http | Mode::Stdio | Mode::File => oneshot::run(&config).await,
        },
    };
    secret_files::remove(&process::launch().env);
    logs::flush().await;
    code
}

/// Before any process starts: decides whether the function runs as another user
/// (RUN_AS), writes SECRET_FILES, and fixes how every process is launched. Returns
/// the exit code when the watchdog cannot go on.
fn prepare(config: &Config) -> Result<(), i32> {
    let switch = match config.run_as {
        None => Ok(None),
        Some(run_as) => {
            let (euid, egid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            run_as.switch_from(euid.as_raw(), egid.as_raw())
        }
    };
    let run_as = switch.map_err(|err| {
        diag!("invalid configuration: {err}");
        exit_code::CONFIG
    })?;
    // Without them the switch could fail silently: supplementary groups kept, or a
    // process group that outlives its timeout because it cannot be signalled.
    if run_as.is_some()
        && identity::lacks_switch_capabilities(&identity::read_text("/proc/self/status"))
    {
        diag!("invalid configuration: RUN_AS: switching users needs CAP_KILL, CAP_SETGID and CAP_SETUID; the watchdog lacks some");
        return Err(exit_code::CONFIG);
    }
    let secrets =
        secret_files::write(&config.secrets_dir, &config.secret_files, run_as).map_err(|err| {
            diag!("{err}");
            exit_code::INTERNAL
        })?;
    process::set_launch(process::Launch {
        run_as,
        env: secrets,
    });
    Ok(())
}
