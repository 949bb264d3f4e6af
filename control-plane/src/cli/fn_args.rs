//! The clap types of `gantry fn ...`: the subcommands, their argument structs and the
//! parsers of their numeric flags.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

use super::{init_cmd, run_cmd};

/// `gantry fn ...`
#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// Create a function from a manifest, or replace it with a new version if it exists.
    ///
    /// The manifest is YAML or JSON and must have a `name`. For functions with a
    /// `command` (process runtime), a missing `working_dir` becomes the manifest's
    /// directory and a relative one is taken relative to it. Prints
    /// "deployed NAME version N (sha256:...)" or "NAME unchanged (version N)".
    ///
    /// With --build, first builds the function's image from the manifest's folder as
    /// `gantry fn build` does (on the local Docker engine), then deploys.
    Deploy {
        /// The manifest file (YAML or JSON).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Build the image (the manifest's `image`) from the manifest's folder first.
        #[arg(long)]
        build: bool,
        /// With --build: a build argument (repeatable), as for `gantry fn build`.
        #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "build")]
        build_arg: Vec<String>,
    },
    /// Build a function's image from its folder on the local Docker engine.
    ///
    /// Reads DIR/function.yaml (or -f FILE) and tags the image with its `image` field
    /// (required). Uses DIR/Dockerfile; without one, generates it from the handler
    /// found: handler.py (FROM gantry/runtime-python), handler.js (runtime-node),
    /// handler.sh (runtime-shell) or an executable `handler` (runtime-binary), copied
    /// to /app. `.dockerignore` is honoured (*, ?, **, ! exceptions).
    ///
    /// Dependencies: a generated Dockerfile installs requirements.txt (pip, into
    /// /opt/gantry/packages) or package.json (npm ci with package-lock.json, else npm
    /// install) in a layer before the handler's, so a handler-only change reuses it. The
    /// dependency files and a `vendor/` folder (local wheels, npm tarballs or cache) are
    /// copied for it. Installer settings go in as build arguments, which the install step
    /// sees in its environment: `--build-arg PIP_INDEX_URL=...`, `PIP_FIND_LINKS`,
    /// `PIP_NO_INDEX=1`, `NPM_CONFIG_REGISTRY=...`, `NPM_CONFIG_OFFLINE=true`. Build
    /// arguments are recorded in the image's history: do not pass passwords this way.
    ///
    /// The build runs here, on the client, against the local engine (DOCKER_HOST, else
    /// /var/run/docker.sock): the server must use that same engine to run the image,
    /// as there is no registry between them. gantry/runtime-* bases are never pulled:
    /// build them with `make runtime-images`. Progress goes to stderr; prints
    /// "built IMAGE (id sha256:...)".
    Build {
        /// The function's folder (the build context). Default: FILE's folder, else `.`.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The manifest. Default: DIR/function.yaml.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// A build argument (repeatable): KEY=VALUE, or KEY to take it from the
        /// environment. A generated Dockerfile passes them to pip / npm.
        #[arg(long = "build-arg", value_name = "KEY=VALUE")]
        build_arg: Vec<String>,
    },
    /// Write a new function's folder: handler, tests, function.yaml, README.
    ///
    /// DIR (default ./NAME) gets a handler with its entry point at the top, a test in
    /// the language's own runner, function.yaml (an image function with an
    /// input_schema), the dependency file where the language has one
    /// (requirements.txt, package.json + package-lock.json) and a README. Existing
    /// files are never overwritten. Prints the commands that test, run, deploy and
    /// call it.
    Init(init_cmd::InitArgs),
    /// Run a function once on this machine, without a server.
    ///
    /// Goes through the real watchdog: as a host process for a `command` function, as
    /// a container for an `image` one (--build builds it first). The input is checked
    /// against input_schema and the output against output_schema as the server does,
    /// with the same error codes. Prints the output (JSON) on stdout and the function's
    /// log lines on stderr; a failure prints "error: CODE: message" and exits 1. With
    /// --watch, runs again whenever a file in the manifest's folder changes.
    Run(run_cmd::RunArgs),
    /// List functions with their current version.
    List,
    /// Print the key that signs a function's result deliveries (admins only).
    ///
    /// Made on first use and kept sealed like a secret. Receivers check
    /// X-Gantry-Signature with it (see docs/destinations.md). A function whose
    /// `destinations.secret` names a secret signs with that secret's value instead.
    DestinationKey {
        /// Function name.
        name: String,
    },
    /// Show a function's current version and its full spec.
    ///
    /// For a function with a `warm` section, also its pool: instances by state, queued
    /// and in-flight calls, cold starts and limits, then a table of its instances.
    Get {
        /// Function name.
        name: String,
    },
    /// Delete a function.
    Delete {
        /// Function name.
        name: String,
    },
    /// Show a function's version history (oldest first) with content hashes.
    Versions {
        /// Function name.
        name: String,
    },
    /// Call a function and wait for its result.
    ///
    /// Prints the function's output (pretty JSON) on stdout. If the function fails or
    /// times out, prints "error: CODE: message (execution ID)" on stderr and exits 1.
    Invoke(InvokeArgs),
    /// Queue a call without waiting; prints the new execution's ID.
    ///
    /// Follow it with `gantry exec get ID` or `gantry exec logs ID --follow`.
    Enqueue(EnqueueArgs),
    /// Set how many warm instances a function keeps: at least --min, at most --max.
    ///
    /// Makes a new version of the function with `warm.min_instances` and/or
    /// `warm.max_instances` changed; a function without a `warm` section gets one with
    /// the defaults (max 4, concurrency 1 per instance, idle timeout 5 minutes). The
    /// pool keeps --min instances running even when idle (0 = scale to zero) and
    /// never starts more than --max. Prints "scaled NAME: min N, max M (version V)";
    /// `gantry fn get NAME` shows the pool's instances.
    Scale(ScaleArgs),
    /// Show the logs of a function's latest executions, each line prefixed with its
    /// execution's id (oldest first).
    ///
    /// With --follow, prints every line the function's executions write from now on,
    /// until interrupted. With --instance, prints the lines of its own a warm instance
    /// wrote: the lines it marked with none of its executions (start-up messages,
    /// background work). `gantry fn get NAME` lists the instances.
    Logs(FnLogsArgs),
}

/// `gantry fn logs`
#[derive(Debug, Clone, Args)]
pub struct FnLogsArgs {
    /// Function name.
    pub name: String,
    /// Keep printing the lines of every new execution.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// A warm instance's own lines instead (its id as `gantry fn get` shows it).
    #[arg(long, value_name = "ID", conflicts_with = "follow")]
    pub instance: Option<String>,
    /// How many of the latest executions to show.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub last: u32,
    /// Start each line with the time it was captured.
    #[arg(long)]
    pub timestamps: bool,
}

/// `gantry fn invoke`
#[derive(Debug, Clone, Args)]
pub struct InvokeArgs {
    /// Function name.
    pub name: String,
    /// Input: JSON text, `@PATH` to read a file, or `@-` to read stdin. Default: null.
    #[arg(short = 'd', long = "data", value_name = "JSON|@FILE|@-")]
    pub data: Option<String>,
    /// Timeout of this call in milliseconds (at most the function's own timeout).
    #[arg(long, value_name = "MS", value_parser = parse_timeout_ms)]
    pub timeout_ms: Option<u64>,
    /// Trace ID to record on the execution (and pass to the function).
    #[arg(long, value_name = "ID")]
    pub trace_id: Option<String>,
    /// Idempotency key: a repeated call with the same key returns the first result.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// Parses `--timeout-ms`: a whole number of milliseconds, at least 1.
fn parse_timeout_ms(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(ms) if ms >= 1 => Ok(ms),
        _ => Err(format!(
            "expected a whole number of milliseconds of at least 1, got {text:?}"
        )),
    }
}

/// `gantry fn enqueue`
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Function name.
    pub name: String,
    /// Input: JSON text, `@PATH` to read a file, or `@-` to read stdin. Default: null.
    #[arg(short = 'd', long = "data", value_name = "JSON|@FILE|@-")]
    pub data: Option<String>,
    /// Idempotency key: a repeated enqueue with the same key returns the first execution.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// POST the final result, signed, to this URL (X-Callback-Url; see
    /// docs/destinations.md).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
}

/// `gantry fn scale`
#[derive(Debug, Clone, Args)]
#[command(
    group(ArgGroup::new("limits").args(["min", "max"]).multiple(true).required(true)),
    override_usage = "gantry fn scale <NAME> [--min <N>] [--max <N>]   (at least one of the two)"
)]
pub struct ScaleArgs {
    /// Function name.
    pub name: String,
    /// Instances kept running even when idle (0 = scale to zero).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_min)]
    pub min: Option<u32>,
    /// Most instances at once (at least 1).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_max)]
    pub max: Option<u32>,
}

/// Parses `--min`: a whole number of instances, 0 or more.
fn parse_min(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .map_err(|_| format!("expected a whole number of instances (0 or more), got {text:?}"))
}

/// Parses `--max`: a whole number of instances, at least 1.
fn parse_max(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of instances of at least 1, got {text:?}"
        )),
    }
}
