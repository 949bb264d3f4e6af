//! `gantry event ...`: publish an event (`POST /v1/events`) so that every function
//! whose trigger matches its type runs with its data.

use std::fmt;

use anyhow::Result;
use clap::{Args, Subcommand};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::value::RawValue;

use super::client::decode;
use super::fn_cmd::read_data;
use super::table::{opt, Table};
use super::{out, out_json, Ctx, UsageError};
use crate::wire::{EventAnswer, EventRequest};

/// `gantry event ...`
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish an event: every function with a trigger for TYPE runs with the data.
    ///
    /// Each function whose manifest has a matching `triggers` entry (its type, and its
    /// condition when it has one) gets a queued execution with the event's data as
    /// input. Prints a FUNCTION / EXECUTION table of the executions started; follow
    /// them with `gantry exec get ID` or `gantry exec tree ID`. A function that
    /// refused the event (its input_schema rejected the data, its queue is full) is
    /// reported on stderr as "refused by NAME: why", and the command then exits 1.
    /// When no function has a matching trigger, says so on stderr and exits 0.
    /// With -o json, prints the server's answer.
    Publish(PublishArgs),
}

/// `gantry event publish`
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The event type, e.g. order.created: what the functions' triggers match.
    #[arg(value_name = "TYPE")]
    pub event_type: String,
    /// The event's data, the input of every function it starts: JSON text, `@PATH`
    /// to read a file, or `@-` to read stdin. Default: null.
    #[arg(short = 'd', long = "data", value_name = "JSON|@FILE|@-")]
    pub data: Option<String>,
}

/// Some functions with a matching trigger refused the event: exit code 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRefused {
    /// The event type.
    pub event_type: String,
    /// How many refused.
    pub refused: usize,
    /// How many had a matching trigger (started or refused).
    pub matched: usize,
}

impl fmt::Display for EventRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} functions with a trigger for {:?} refused the event",
            self.refused, self.matched, self.event_type
        )
    }
}

impl std::error::Error for EventRefused {}

/// Carries out one `gantry event` subcommand.
pub async fn run(ctx: &Ctx, command: EventCommand) -> Result<()> {
    match command {
        EventCommand::Publish(args) => publish(ctx, &args).await,
    }
}

/// The body of `POST /v1/events`: `{"type", "data"}` with the data as the user wrote
/// it (already checked to be JSON), so large numbers keep their digits.
pub fn event_body(event_type: &str, data: &str) -> Result<String> {
    let data = RawValue::from_string(data.to_string())
        .map_err(|err| UsageError(format!("the event's data is not JSON: {err}")))?;
    let body = EventRequest {
        event_type: event_type.to_string(),
        data,
    };
    Ok(serde_json::to_string(&body)?)
}

/// `event publish TYPE -d DATA`.
async fn publish(ctx: &Ctx, args: &PublishArgs) -> Result<()> {
    let data = read_data(args.data.as_deref())?;
    let client = &ctx.client;
    let url = client.url(&["v1", "events"], &[]);
    let request = client
        .request(Method::POST, url)
        .header(CONTENT_TYPE, "application/json")
        .body(event_body(&args.event_type, &data)?);
    let (_, body) = client.call(request).await?;
    if ctx.json() {
        out_json(&body)?;
    }
    let report = PublishReport::of(&decode(body)?, &args.event_type);
    if !ctx.json() {
        if !report.table.is_empty() {
            out(&report.table.render())?;
        }
        for line in &report.notes {
            eprintln!("{line}");
        }
    }
    match report.refused {
        Some(refused) => Err(refused.into()),
        None => Ok(()),
    }
}

/// What `event publish` makes of the server's answer.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// The executions started (FUNCTION, EXECUTION); empty when none.
    pub table: Table,
    /// Lines for stderr: one per refusing function, or that nothing matched.
    pub notes: Vec<String>,
    /// The failure to report when some function refused.
    pub refused: Option<EventRefused>,
}

impl PublishReport {
    /// Reads the answer `{type, executions: [{function, executionId}], refused:
    /// [{function, error}]}` of publishing `event_type`.
    pub fn of(body: &EventAnswer, event_type: &str) -> Self {
        let event_type = match body.event_type.as_str() {
            "" => event_type.to_string(),
            t => t.to_string(),
        };
        let (started, refused) = (&body.executions, &body.refused);
        let mut table = Table::new(&["FUNCTION", "EXECUTION"]);
        for execution in started {
            table.row(vec![
                execution.function.clone(),
                opt(execution.execution_id),
            ]);
        }
        let mut notes: Vec<String> = refused
            .iter()
            .map(|target| {
                let why = match target.error.as_deref() {
                    Some(why) if !why.is_empty() => why,
                    _ => "no reason given",
                };
                format!("refused by {}: {why}", target.function)
            })
            .collect();
        if started.is_empty() && refused.is_empty() {
            notes.push(format!("no function has a trigger for {event_type:?}"));
        }
        let refused = (!refused.is_empty()).then(|| EventRefused {
            event_type,
            refused: refused.len(),
            matched: refused.len() + started.len(),
        });
        Self {
            table,
            notes,
            refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[test]
    fn parses_publish() {
        let cli = Cli::try_parse_from([
            "gantry",
            "event",
            "publish",
            "order.created",
            "-d",
            "{\"id\": 7}",
            "-o",
            "json",
        ])
        .unwrap();
        let Command::Event(EventCommand::Publish(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(args.event_type, "order.created");
        assert_eq!(args.data.as_deref(), Some("{\"id\": 7}"));
        let cli = Cli::try_parse_from(["gantry", "event", "publish", "t"]).unwrap();
        let Command::Event(EventCommand::Publish(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(args.data, None);
        for bad in [
            &["gantry", "event", "publish"][..],
            &["gantry", "event"],
            &["gantry", "event", "send", "t"],
            &["gantry", "event", "publish", "t", "-d"],
        ] {
            assert_eq!(
                Cli::try_parse_from(bad).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn body_keeps_the_data_as_written() {
        let body = event_body("a \"b\"", "{\"n\": 12345678901234567890}").unwrap();
        assert_eq!(
            body,
            "{\"type\":\"a \\\"b\\\"\",\"data\":{\"n\": 12345678901234567890}}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["type"], "a \"b\"");
    }

    const E1: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a51";
    const E2: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a52";

    fn report(body: serde_json::Value, event_type: &str) -> PublishReport {
        PublishReport::of(&decode(body).unwrap(), event_type)
    }

    #[test]
    fn started_and_refused_functions() {
        let report = report(
            json!({"type": "order.created",
                "executions": [{"function": "bill", "executionId": E1},
                               {"function": "ship", "executionId": E2}],
                "refused": [{"function": "audit", "error": "queue is full"}]}),
            "order.created",
        );
        assert_eq!(
            report.table.render(),
            format!("FUNCTION  EXECUTION\nbill      {E1}\nship      {E2}\n")
        );
        assert_eq!(report.notes, ["refused by audit: queue is full"]);
        assert_eq!(
            report.refused.unwrap().to_string(),
            "1 of 3 functions with a trigger for \"order.created\" refused the event"
        );
    }

    #[test]
    fn nothing_matched_is_said_but_not_an_error() {
        let nothing = report(
            json!({"type": "order.created", "executions": [], "refused": []}),
            " order.created",
        );
        assert!(nothing.table.is_empty());
        assert_eq!(
            nothing.notes,
            ["no function has a trigger for \"order.created\""]
        );
        assert!(nothing.refused.is_none());
        let all_started = report(
            json!({"type": "t", "executions": [{"function": "f", "executionId": E1}],
                   "refused": [], "fromTheFuture": 1}),
            "t",
        );
        assert!(all_started.notes.is_empty() && all_started.refused.is_none());
    }
}
