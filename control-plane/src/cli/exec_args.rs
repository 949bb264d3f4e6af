//! The clap types of `gantry exec ...`: list (with its filters), get, logs, cancel,
//! retry and tree.

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};

use super::exec_cmd;
use crate::domain::{ExecutionStatus, Trigger};

/// `gantry exec ...`
#[derive(Debug, Subcommand)]
pub enum ExecCommand {
    /// List executions, newest first, with filters and paging.
    List(ExecListArgs),
    /// Show one execution: status, timings, error, input and output.
    ///
    /// For an execution that was retried, also how each earlier attempt failed; a
    /// dead-lettered one says "deadLetter: yes" (re-drive it with `gantry exec retry`).
    Get {
        /// Execution ID.
        id: String,
    },
    /// Print an execution's captured output.
    ///
    /// stdout lines are printed as they are; stderr lines are prefixed with
    /// "[stderr] " and Gantry's own notes with "[system] ". With --follow, new lines
    /// are printed as they arrive until the execution finishes, then its final status
    /// goes to stderr (exit code 0 whatever the status). With -o json, one JSON object
    /// per line when following, else the server's answer.
    Logs {
        /// Execution ID.
        id: String,
        /// Keep printing new lines until the execution finishes.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Start each line with the time it was captured (UTC).
        #[arg(short = 't', long)]
        timestamps: bool,
    },
    /// List result deliveries, oldest first: by default the failed (undeliverable)
    /// ones, re-driven with `gantry exec redeliver ID`.
    Deliveries {
        /// waiting, pending, delivered or failed.
        #[arg(long, default_value = "failed")]
        state: String,
        /// Continue after this delivery ID (the hint printed under a full page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Send a failed result delivery again (a new round of attempts).
    Redeliver {
        /// Delivery ID (from `gantry exec deliveries` or `gantry exec get`).
        id: String,
    },
    /// Cancel a queued or running execution (stops its instance).
    Cancel {
        /// Execution ID.
        id: String,
    },
    /// Run a failed execution again (re-drive it, e.g. from the dead-letter list).
    ///
    /// Queues a new execution with the same input, on the function's current
    /// version, and prints its ID (follow it with `gantry exec get ID`). The failed
    /// one leaves the dead-letter list; the new one shows under it in `gantry exec
    /// tree`. Only an execution that failed can be re-driven: the server refuses any
    /// other with 409 CONFLICT.
    Retry {
        /// ID of the failed execution.
        id: String,
    },
    /// Show the tree of executions an execution started: its chains and re-drives.
    ///
    /// One execution per line, children indented under their parent (oldest first):
    /// "ID FUNCTION STATUS (TRIGGER)". A failed one adds its error code after the
    /// status and its message at the end; then ", attempt N" past the first attempt,
    /// ", dead letter" when dead-lettered, and ", runs at TIME" for a delayed or
    /// retried execution still waiting. The tree starts at the execution given (any
    /// execution of a chain); `gantry exec get ID` shows one in full.
    Tree {
        /// Execution ID (the root of the tree to show).
        id: String,
    },
}

/// `gantry exec list`
#[derive(Debug, Clone, Args)]
pub struct ExecListArgs {
    /// Only executions of this function.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Only executions in these states (repeat the flag or separate with commas).
    #[arg(long, value_delimiter = ',', value_name = "STATUS", value_parser = status_parser())]
    pub status: Vec<ExecutionStatus>,
    /// Only executions started this way (repeat the flag or separate with commas): by a
    /// call (api), an event, a chain, a retry of a failed attempt or a schedule.
    #[arg(long, value_delimiter = ',', value_name = "TRIGGER", value_parser = trigger_parser())]
    pub trigger: Vec<Trigger>,
    /// Only executions created at or after this time: RFC 3339
    /// (2025-01-02T15:04:05Z) or an age like 30s, 15m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = exec_cmd::parse_time)]
    pub since: Option<String>,
    /// Only executions created before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = exec_cmd::parse_time)]
    pub until: Option<String>,
    /// Only dead-lettered executions: those that failed for good after their retry
    /// policy's attempts and were not re-driven yet (`gantry exec retry ID`).
    #[arg(long)]
    pub dead_letter: bool,
    /// Most executions to show (the server caps it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Continue a previous listing (the cursor it printed).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

/// `--status` values: the store's state names, listed in `--help`.
fn status_parser() -> impl TypedValueParser<Value = ExecutionStatus> {
    clap::builder::PossibleValuesParser::new(ExecutionStatus::ALL.map(ExecutionStatus::as_str))
        .map(|name| ExecutionStatus::parse(&name).expect("only listed names pass"))
}

/// `--trigger` values, listed in `--help`.
fn trigger_parser() -> impl TypedValueParser<Value = Trigger> {
    clap::builder::PossibleValuesParser::new(Trigger::ALL.map(Trigger::as_str))
        .map(|name| Trigger::parse(&name).expect("only listed names pass"))
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn exec(args: &[&str]) -> ExecCommand {
        let cli = Cli::try_parse_from(["gantry", "exec"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Exec(command) => command,
            other => panic!("not an exec command: {other:?}"),
        }
    }

    #[test]
    fn parses_tree_retry_dead_letter_and_triggers() {
        assert!(matches!(exec(&["tree", "e1"]), ExecCommand::Tree { id } if id == "e1"));
        assert!(matches!(exec(&["retry", "e2"]), ExecCommand::Retry { id } if id == "e2"));
        let ExecCommand::List(args) = exec(&["list", "--dead-letter", "--function", "f"]) else {
            panic!("expected list");
        };
        assert!(args.dead_letter);
        assert_eq!(args.function.as_deref(), Some("f"));
        let ExecCommand::List(args) = exec(&["list"]) else {
            panic!("expected list");
        };
        assert!(!args.dead_letter);
        assert!(args.trigger.is_empty());
        let ExecCommand::List(args) = exec(&["list", "--trigger", "chain,retry", "--trigger=api"])
        else {
            panic!("expected list");
        };
        assert_eq!(args.trigger, [Trigger::Chain, Trigger::Retry, Trigger::Api]);
    }

    #[test]
    fn tree_and_retry_need_an_id() {
        for args in [
            &["gantry", "exec", "tree"][..],
            &["gantry", "exec", "retry"],
            &["gantry", "exec", "retry", "a", "b"],
            &["gantry", "exec", "list", "--dead-letter=maybe"],
            &["gantry", "exec", "list", "--trigger", "cron"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
