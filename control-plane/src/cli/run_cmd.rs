//! `gantry fn run -f FILE -d JSON`: runs a function once on this machine without a
//! server, through the same pieces the server uses: the manifest checks and compiled
//! schemas of the registry, the input check of the dispatcher, the process runtime (the
//! real watchdog as a host process, for `command` functions) or the docker runtime (for
//! `image` functions), and the dispatcher's reading of the watchdog's report, so the
//! validation and the error codes are the server's. The output goes to stdout, the
//! function's log lines to stderr; a failure exits 1 with `error: CODE: message`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use serde_json::Value;
use uuid::Uuid;

use super::{input, out_json, UsageError};
use crate::config::ServeArgs;
use crate::dispatch::{run_outcome, timed_out_run, validate_input};
use crate::domain::{codes, ExecutionError, ExecutionStatus, Finished};
use crate::logs::LogSink;
use crate::registry::catalog::{check_definition, LoadedFunction, DEFAULT_MAX_CHAINS};
use crate::registry::manifest::DEFAULT_TIMEOUT_MS;
use crate::registry::FunctionVersion;
use crate::runtime::docker::{ContainerDefaults, DockerRuntime};
use crate::runtime::process::{locate_watchdog, ProcessRuntime};
use crate::runtime::{Launch, Runtime};
use gantry_protocol::env;

/// How long a stopped instance gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// `gantry fn run`
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The manifest file (YAML or JSON).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Input: JSON text, `@PATH` to read a file, or `@-` to read stdin. Default: null.
    #[arg(short = 'd', long = "data", value_name = "JSON|@FILE|@-")]
    pub data: Option<String>,
    /// For an `image` function: build the image from the manifest's folder first.
    #[arg(long)]
    pub build: bool,
    /// With --build: a build argument (repeatable), as for `gantry fn build`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "build")]
    pub build_arg: Vec<String>,
    /// Run again whenever a file in the manifest's folder changes (Ctrl-C stops).
    #[arg(long)]
    pub watch: bool,
    /// The watchdog binary for `command` functions. Default: next to `gantry`.
    #[arg(long, env = "GANTRY_WATCHDOG", value_name = "PATH")]
    pub watchdog: Option<PathBuf>,
}

/// A failed run: exit code 1 with the server's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RunFailed {
    /// `INVALID_INPUT`, `FUNCTION_ERROR`, `TIMEOUT`, `OUTPUT_SCHEMA_VIOLATION`, ...
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Runs the function once (or, with --watch, again on every change).
pub async fn run(args: &RunArgs) -> Result<()> {
    if args.watch {
        return super::run_watch::watch(args).await;
    }
    run_once(args).await
}

/// One run: check, (build,) launch, wait, read the report, print.
pub async fn run_once(args: &RunArgs) -> Result<()> {
    let manifest = input::load_manifest(&args.file)?;
    let spec = check_definition(&manifest.json, DEFAULT_MAX_CHAINS)
        .map_err(|problems| UsageError(format!("invalid manifest: {}", problems.join("; "))))?;
    let function = LoadedFunction::load(FunctionVersion {
        name: spec.name.clone(),
        version: 1,
        content_hash: crate::registry::content_hash(&spec),
        spec,
        created_at: chrono::Utc::now(),
    })
    .map_err(|problems| UsageError(format!("invalid manifest: {}", problems.join("; "))))?;
    let data = super::fn_cmd::read_data(args.data.as_deref())?;
    let input: Value =
        serde_json::from_str(&data).map_err(|err| UsageError(format!("-d is not JSON: {err}")))?;
    if let Err(err) = validate_input(&function, &input).await {
        return Err(RunFailed {
            code: err.0.to_owned(),
            message: err.1,
        }
        .into());
    }
    // The server's defaults (and GANTRY_* settings) for what a run shares with it.
    let server = server_settings()?;
    // The instance's working directories: a fresh private directory (not a predictable
    // path another local user could make first), removed when the run is over.
    let mut scratch = None;
    let runtime: Box<dyn Runtime> = if function.spec().command.is_some() {
        let watchdog = locate_watchdog(args.watchdog.as_deref()).map_err(UsageError)?;
        let dir = tempfile::Builder::new()
            .prefix("gantry-fn-run-")
            .tempdir()
            .map_err(|err| anyhow!("cannot make a scratch directory: {err}"))?;
        let runtime = ProcessRuntime::new(
            watchdog,
            format!("fn-run-{}", std::process::id()),
            dir.path().to_owned(),
            None,
        );
        scratch = Some(dir);
        Box::new(runtime)
    } else if function.spec().image.is_some() {
        if args.build {
            let dir = super::build::manifest_dir(&args.file);
            let built = super::build::build(&dir, &args.file, &args.build_arg).await?;
            eprintln!("built {} (id {})", built.image, built.id);
        }
        let defaults = ContainerDefaults {
            memory_mb: server.docker_memory_mb,
            pids: server.docker_pids,
            cpus: server.docker_cpus,
        };
        let docker = DockerRuntime::connect(
            format!("fn-run-{}", std::process::id()),
            server.docker_network.clone(),
            0,
            defaults,
        )
        .await
        .map_err(|err| anyhow!("{err}"))?;
        Box::new(docker)
    } else {
        return Err(UsageError("the manifest has neither `command` nor `image`".into()).into());
    };
    let problems = runtime.problems(function.spec());
    if !problems.is_empty() {
        return Err(UsageError(problems.join("; ")).into());
    }
    let finished = launch(runtime.as_ref(), &function, &input, server.max_output_bytes).await;
    runtime.drain(Duration::from_secs(5)).await;
    drop(scratch);
    let finished = finished?;
    match finished.status {
        ExecutionStatus::Success => out_json(&finished.output.unwrap_or(Value::Null)),
        _ => {
            let error = finished.error.unwrap_or_else(|| {
                ExecutionError::new(codes::FUNCTION_ERROR, "the function failed")
            });
            Err(RunFailed {
                code: error.code.to_string(),
                message: error.message,
            }
            .into())
        }
    }
}

/// Starts the instance with the watchdog contract's variables (no callback: the
/// watchdog prints its report), copies its lines to stderr and reads the outcome.
async fn launch(
    runtime: &dyn Runtime,
    function: &LoadedFunction,
    input: &Value,
    max_output_bytes: usize,
) -> Result<Finished> {
    let execution_id = Uuid::now_v7();
    let spec = function.spec();
    let timeout_ms = spec.resources.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    let mut launch_env = vec![
        (env::EXECUTION_ID.to_owned(), execution_id.to_string()),
        (env::TIMEOUT_MS.to_owned(), timeout_ms.to_string()),
        (
            env::MAX_OUTPUT_BYTES.to_owned(),
            max_output_bytes.to_string(),
        ),
        (env::INVOCATION_PAYLOAD.to_owned(), input.to_string()),
    ];
    launch_env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let logs = LogSink::to_stderr().keeping_last_line(max_output_bytes.saturating_add(64 * 1024));
    let started = Instant::now();
    let mut instance = runtime
        .start(Launch {
            execution_id,
            function: function.version.clone(),
            env: launch_env,
            logs,
        })
        .await
        .map_err(|err| anyhow!("{err}"))?;
    // The watchdog enforces the timeout; this bound only catches a stuck instance.
    let limit = Duration::from_millis(timeout_ms) + Duration::from_secs(10);
    let exit = match tokio::time::timeout(limit, instance.wait()).await {
        Ok(exit) => exit,
        Err(_) => {
            instance.kill(KILL_GRACE).await;
            return Ok(timed_out_run(timeout_ms, instance.id(), started.elapsed()));
        }
    };
    Ok(run_outcome(function, exit, started.elapsed()).await)
}

/// `gantry serve`'s settings with no flags: its defaults and the GANTRY_* environment.
fn server_settings() -> Result<ServeArgs> {
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    let parsed = <Serve as clap::Parser>::try_parse_from(["gantry-serve"])
        .map_err(|err| UsageError(format!("the server settings in the environment: {err}")))?;
    Ok(parsed.args)
}
