//! `gantry fn logs NAME`: the logs of a function's latest executions, every line its
//! executions write from now on with `--follow`, or a warm instance's own lines with
//! `--instance`.

use anyhow::{anyhow, Result};
use futures_util::StreamExt;
use reqwest::header::ACCEPT;
use reqwest::Method;
use serde::Deserialize;
use uuid::Uuid;

use super::client::decode;
use super::exec_logs::log_line;
use super::sse::{SseEvent, SseParser};
use super::{out, out_json, Ctx, FnLogsArgs};
use crate::domain::LogLine;
use crate::wire::{ExecutionPage, ExecutionQuery, FunctionLogsQuery, InstanceLogPage, LogPage};

/// A `log` event of a followed function: a line and the execution that wrote it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionLine {
    execution_id: Uuid,
    #[serde(flatten)]
    line: LogLine,
}

/// `fn logs`.
pub async fn run(ctx: &Ctx, args: FnLogsArgs) -> Result<()> {
    match (&args.instance, args.follow) {
        (Some(instance), _) => instance_lines(ctx, &args.name, instance).await,
        (None, true) => follow(ctx, &args.name).await,
        (None, false) => latest(ctx, &args).await,
    }
}

/// A line prefixed with the execution that wrote it.
fn prefixed(execution: Uuid, line: &LogLine, timestamps: bool) -> String {
    format!("{execution} {}", log_line(line, timestamps))
}

async fn instance_lines(ctx: &Ctx, name: &str, instance: &str) -> Result<()> {
    let query = FunctionLogsQuery {
        instance: Some(instance.to_owned()),
        follow: false,
    };
    let body = ctx
        .client
        .get_query(&["v1", "functions", name, "logs"], &query)
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    let page: InstanceLogPage = decode(body)?;
    let text: String = page.lines.iter().map(|line| log_line(line, true)).collect();
    out(&text)
}

/// The logs of the function's latest executions, oldest first.
async fn latest(ctx: &Ctx, args: &FnLogsArgs) -> Result<()> {
    let query = ExecutionQuery {
        function: Some(args.name.clone()),
        limit: Some(args.last),
        ..ExecutionQuery::default()
    };
    let body = ctx.client.get_query(&["v1", "executions"], &query).await?;
    let page: ExecutionPage = decode(body)?;
    let mut text = String::new();
    for execution in page.executions.iter().rev() {
        let id = execution.record.id;
        let body = ctx
            .client
            .get(&["v1", "executions", &id.to_string(), "logs"], &[])
            .await?;
        let log: LogPage = decode(body)?;
        for line in &log.lines {
            text.push_str(&prefixed(id, line, args.timestamps));
        }
    }
    out(&text)
}

/// Prints every line the function's executions write until interrupted.
async fn follow(ctx: &Ctx, name: &str) -> Result<()> {
    let client = &ctx.client;
    let url = client.url(&["v1", "functions", name, "logs"], &[]);
    let query = FunctionLogsQuery {
        instance: None,
        follow: true,
    };
    let request = client
        .request(Method::GET, url)
        .query(&query)
        .header(ACCEPT, "text/event-stream");
    let response = client.send(request).await?;
    if !response.status().is_success() {
        let (_, body) = client.read(response).await?;
        return Err(anyhow!("cannot follow {name}: {body}"));
    }
    eprintln!("following every execution of {name} (Ctrl-C to stop)");
    let mut stream = response.bytes_stream();
    let mut parser = SseParser::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| client.transport_error(&err))?;
        for event in parser.feed(&chunk) {
            print_event(ctx, &event)?;
        }
    }
    Err(anyhow!("the server closed the log stream of {name}"))
}

fn print_event(ctx: &Ctx, event: &SseEvent) -> Result<()> {
    match event.event.as_str() {
        "log" if ctx.json() => out(&format!("{}\n", event.data)),
        "log" => match serde_json::from_str::<FunctionLine>(&event.data) {
            Ok(line) => out(&prefixed(line.execution_id, &line.line, false)),
            Err(_) => out(&format!("{}\n", event.data)),
        },
        "lagged" => {
            eprintln!("{}", event.data);
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followed_lines_name_their_execution() {
        let data = r#"{"executionId":"0193a1b2-0000-7000-8000-000000000001","seq":3,"stream":"stderr","time":"2025-01-02T03:04:05Z","line":"oops"}"#;
        let line: FunctionLine = serde_json::from_str(data).unwrap();
        assert_eq!(
            prefixed(line.execution_id, &line.line, false),
            "0193a1b2-0000-7000-8000-000000000001 [stderr] oops\n"
        );
    }
}
