//! The `gantry` command line: its clap types ([`Cli`]) and [`run`], which carries out
//! the client commands (`fn`, `exec`, `event`) against a server's HTTP API.
//!
//! Every failure ends as one `error: ...` line on stderr. Exit codes: 0 done, 1 the
//! server or the function reported an error (or the server could not be reached), 2 a
//! usage error (bad flags, bad `-d` JSON, unreadable manifest).

pub mod access_cmd;
pub mod build;
pub mod build_context;
pub mod build_deps;
pub mod client;
pub mod credentials;
pub mod deliveries_view;
pub mod event_cmd;
pub mod exec_args;
pub mod exec_chain;
pub mod exec_cmd;
pub mod fn_cmd;
pub mod fn_logs;
pub mod init_cmd;
pub mod input;
pub mod node_cmd;
pub mod pacing_view;
pub mod pool_view;
pub mod run_cmd;
pub mod run_watch;
pub mod schedule_view;
pub mod sse;
pub mod table;
pub mod tree_view;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::config::ServeArgs;
pub use access_cmd::{SecretCommand, TokenCommand};
pub use client::{ApiError, Client};
pub use event_cmd::{EventCommand, PublishArgs};
pub use exec_args::{ExecCommand, ExecListArgs};

const AFTER_HELP: &str = "\
Examples:
  gantry serve --data-dir ./gantry-data
  gantry fn deploy -f functions/echo/gantry.yaml
  gantry fn deploy --build -f examples/runtime-python/function.yaml
  gantry fn invoke echo -d '{\"name\": \"Ada\"}'
  gantry fn enqueue echo -d @input.json
  gantry fn scale echo --min 1 --max 4
  gantry exec list --function echo --status error,timeout
  gantry exec logs 0190a2b4-... --follow
  gantry exec tree 0190a2b4-...
  gantry exec list --dead-letter
  gantry exec retry 0190a2b4-...
  gantry event publish order.created -d '{\"id\": 7}'
  gantry token create ci --role invoke
  gantry secret set db-password --from-file ./db-password.txt

Exit codes: 0 success; 1 the server or the function reported an error, or the server
could not be reached; 2 usage error (bad flags, invalid -d JSON, unreadable manifest).";

/// Gantry: run functions on demand, on a queue, or on events.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Flags every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes (they may come before or after the subcommand).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Base URL of the Gantry server the client commands talk to.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GANTRY_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// API token, sent as `Authorization: Bearer TOKEN`. Prefer GANTRY_TOKEN or
    /// --token-file: other users can read a command line. Without either, commands
    /// for a server on this machine use the admin token `gantry serve` wrote in its
    /// data directory (GANTRY_DATA_DIR, else ./gantry-data). For `gantry serve`: an
    /// extra admin token of the operator's, kept only in memory.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GANTRY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A file holding the API token (read when --token and GANTRY_TOKEN are not set).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GANTRY_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// Output format: readable tables, or the server's JSON (pretty-printed).
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        env = "GANTRY_OUTPUT",
        value_enum,
        default_value = "table",
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns and `key: value` lines.
    Table,
    /// The server's JSON answer, pretty-printed.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: the HTTP API, the dispatcher and the runtime.
    Serve(Box<ServeArgs>),
    /// Deploy, list, inspect, delete and call functions.
    #[command(name = "fn", subcommand)]
    Function(FnCommand),
    /// Inspect, follow, cancel and re-drive executions; show chain trees.
    #[command(subcommand)]
    Exec(ExecCommand),
    /// Publish events: every function with a matching trigger runs.
    #[command(subcommand)]
    Event(EventCommand),
    /// Create, list and revoke API tokens (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Set, list and delete secrets functions get in their environment.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// List the control-plane nodes sharing the server's store.
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
    /// Print the API's OpenAPI 3.1 document (what `GET /v1/openapi.json` serves), from
    /// this build; no server needed.
    Openapi,
}

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

/// A problem with what the user typed or handed over: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Stdout was closed by the reader (`gantry exec list | head`): stop quietly.
#[derive(Debug)]
struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// What a client command needs: the server connection and the output format.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The server.
    pub client: Client,
    /// `-o`.
    pub output: OutputFormat,
}

impl Ctx {
    /// Whether `-o json` was asked for.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

/// Runs one command and returns the process exit code. `serve` goes to
/// [`crate::serve::serve_main`]; the client commands print their results on stdout and
/// any error as one line on stderr.
pub async fn run(global: GlobalArgs, command: Command) -> ExitCode {
    if credentials::token_on_command_line(global.token.as_deref()) {
        eprintln!(
            "warning: --token is visible to other users of this machine (ps); use GANTRY_TOKEN or --token-file"
        );
    }
    let command = match command {
        Command::Serve(args) => {
            let token = match credentials::explicit_token(
                global.token.as_deref(),
                global.token_file.as_deref(),
            ) {
                Ok(token) => token,
                Err(err) => return report(&err),
            };
            return Box::pin(crate::serve::serve_main(*args, token)).await;
        }
        Command::Openapi => {
            println!("{}", crate::api::openapi::document_json());
            return ExitCode::SUCCESS;
        }
        Command::Function(FnCommand::Init(args)) => {
            return match init_cmd::init(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => report(&err),
            };
        }
        Command::Function(FnCommand::Run(args)) => {
            return match run_cmd::run(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => report(&err),
            };
        }
        other => other,
    };
    let result = async {
        let local = client::is_local_server(&global.server);
        let token = credentials::client_token(
            global.token.as_deref(),
            global.token_file.as_deref(),
            local,
        )?;
        let ctx = Ctx {
            client: Client::new(&global.server, token)?,
            output: global.output,
        };
        match command {
            Command::Function(cmd) => fn_cmd::run(&ctx, cmd).await,
            Command::Exec(cmd) => exec_cmd::run(&ctx, cmd).await,
            Command::Event(cmd) => event_cmd::run(&ctx, cmd).await,
            Command::Token(cmd) => access_cmd::run_token(&ctx, cmd).await,
            Command::Secret(cmd) => access_cmd::run_secret(&ctx, cmd).await,
            Command::Node(cmd) => node_cmd::run_node(&ctx, cmd).await,
            Command::Serve(_) | Command::Openapi => Ok(()),
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints `err` as one `error: ...` line and picks the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    if err.is::<StdoutClosed>() {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {err:#}");
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Writes `text` to stdout (a closed pipe ends the command quietly).
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("cannot write to stdout")),
    }
}

/// Writes `value` to stdout as pretty JSON.
pub fn out_json(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    out(&format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ExecutionStatus;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_global_flags_anywhere_and_status_lists() {
        let cli = Cli::try_parse_from([
            "gantry",
            "exec",
            "list",
            "--status",
            "error,timeout",
            "--status",
            "queued",
            "-o",
            "json",
            "--server",
            "http://h:1",
        ])
        .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.server, "http://h:1");
        let Command::Exec(ExecCommand::List(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(
            args.status,
            vec![
                ExecutionStatus::Error,
                ExecutionStatus::Timeout,
                ExecutionStatus::Queued
            ]
        );
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["gantry", "exec", "list", "--status", "done"][..],
            &["gantry", "exec", "list", "--since", "last tuesday"],
            &["gantry", "fn", "invoke"],
            &["gantry", "fn", "deploy"],
            &["gantry", "fn", "invoke", "f", "--timeout-ms", "0"],
            &["gantry", "fn", "invoke", "f", "--timeout-ms", "1.5"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn usage_errors_exit_2_and_others_1() {
        let usage = anyhow::Error::new(UsageError("bad".into())).context("while reading");
        assert_eq!(report(&usage), ExitCode::from(2));
        assert_eq!(report(&anyhow::anyhow!("boom")), ExitCode::FAILURE);
        assert_eq!(report(&StdoutClosed.into()), ExitCode::SUCCESS);
    }
}
