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
pub mod exec_logs;
pub mod fn_args;
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

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::config::ServeArgs;
pub use access_cmd::{SecretCommand, TokenCommand};
pub use client::{ApiError, Client};
pub use event_cmd::{EventCommand, PublishArgs};
pub use exec_args::{ExecCommand, ExecListArgs};
pub use fn_args::{EnqueueArgs, FnCommand, FnLogsArgs, InvokeArgs, ScaleArgs};

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
