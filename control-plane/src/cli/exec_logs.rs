//! `gantry exec logs ID`: an execution's captured lines as printed, and `--follow`,
//! which reads them from the server's event stream until the execution finishes.

use anyhow::{anyhow, Result};
use futures_util::StreamExt;
use reqwest::header::ACCEPT;
use reqwest::Method;
use serde_json::Value;

use super::client::decode;
use super::sse::{SseEvent, SseParser};
use super::table::time;
use super::{out, out_json, Ctx};
use crate::domain::{LogLine, LogStream};
use crate::wire::{LogEnd, LogPage, LogsQuery};

/// `exec logs ID` without following.
pub(super) async fn logs(ctx: &Ctx, id: &str, timestamps: bool) -> Result<()> {
    let body = ctx
        .client
        .get(&["v1", "executions", id, "logs"], &[])
        .await?;
    print_page(ctx, body, timestamps)
}

/// A page of captured lines as the server answered it: the body itself with `--json`,
/// else each line as [`log_line`] prints it.
fn print_page(ctx: &Ctx, body: Value, timestamps: bool) -> Result<()> {
    if ctx.json() {
        return out_json(&body);
    }
    let page: LogPage = decode(body)?;
    let text: String = page
        .lines
        .iter()
        .map(|line| log_line(line, timestamps))
        .collect();
    out(&text)
}

/// One captured line as printed: `[stderr] ` / `[system] ` prefixes, stdout bare,
/// optionally after the capture time.
pub fn log_line(record: &LogLine, timestamps: bool) -> String {
    let mut text = String::new();
    if timestamps {
        text.push_str(&time(Some(record.time)));
        text.push(' ');
    }
    if record.stream != LogStream::Stdout {
        text.push_str(&format!("[{}] ", record.stream.as_str()));
    }
    let line = &record.line;
    text.push_str(line.strip_suffix('\n').unwrap_or(line));
    text.push('\n');
    text
}

/// What one SSE event of a followed log means.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowStep {
    /// Print this (already formatted, ends with `\n`).
    Print(String),
    /// The execution finished with this status.
    End(String),
    /// Nothing to do (keep-alives, unknown events).
    Skip,
}

/// Interprets one event of `logs?follow=true`.
pub fn follow_step(event: &SseEvent, json: bool, timestamps: bool) -> FollowStep {
    match event.event.as_str() {
        "log" | "message" if json => match serde_json::from_str::<Value>(&event.data) {
            // The server's JSON as sent, compacted to one line.
            Ok(record) => FollowStep::Print(format!("{record}\n")),
            Err(_) => FollowStep::Print(format!("{}\n", event.data)),
        },
        "log" | "message" => match serde_json::from_str::<LogLine>(&event.data) {
            Ok(record) => FollowStep::Print(log_line(&record, timestamps)),
            Err(_) => FollowStep::Print(format!("{}\n", event.data)),
        },
        "end" => FollowStep::End(serde_json::from_str::<LogEnd>(&event.data).map_or_else(
            |_| "finished".to_string(),
            |end| end.status.as_str().to_string(),
        )),
        _ => FollowStep::Skip,
    }
}

/// `exec logs ID --follow`: prints lines as they arrive until the `end` event.
pub(super) async fn follow_logs(ctx: &Ctx, id: &str, timestamps: bool) -> Result<()> {
    let client = &ctx.client;
    let url = client.url(&["v1", "executions", id, "logs"], &[]);
    let query = LogsQuery {
        follow: true,
        after: 0,
    };
    let response = client
        .send(
            client
                .request(Method::GET, url)
                .query(&query)
                .header(ACCEPT, "text/event-stream"),
        )
        .await?;
    let is_sse = super::client::header(&response, "content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if !response.status().is_success() || !is_sse {
        // An error, or a server that answered with the plain log: print what there is.
        let (_, body) = client.read(response).await?;
        return print_page(ctx, body, timestamps);
    }
    let mut stream = response.bytes_stream();
    let mut parser = SseParser::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| client.transport_error(&err))?;
        for event in parser.feed(&chunk) {
            if handle_event(ctx, id, &event, timestamps)? {
                return Ok(());
            }
        }
    }
    if let Some(event) = parser.finish() {
        if handle_event(ctx, id, &event, timestamps)? {
            return Ok(());
        }
    }
    Err(anyhow!(
        "the log stream of execution {id} closed before the execution finished"
    ))
}

/// Acts on one followed event; `true` once the execution has finished.
fn handle_event(ctx: &Ctx, id: &str, event: &SseEvent, timestamps: bool) -> Result<bool> {
    match follow_step(event, ctx.json(), timestamps) {
        FollowStep::Print(text) => out(&text)?,
        FollowStep::End(status) => {
            eprintln!("execution {id} finished: {status}");
            return Ok(true);
        }
        FollowStep::Skip => {}
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_lines() {
        let line = |record: Value| -> LogLine { serde_json::from_value(record).unwrap() };
        let out = line(json!({"seq": 1, "stream": "stdout",
            "time": "2025-01-02T03:04:05.5Z", "line": "hi"}));
        let err = line(json!({"seq": 2, "stream": "stderr",
            "time": "2025-01-02T03:04:06Z", "line": "oops\n"}));
        assert_eq!(log_line(&out, false), "hi\n");
        assert_eq!(log_line(&out, true), "2025-01-02T03:04:05Z hi\n");
        assert_eq!(log_line(&err, false), "[stderr] oops\n");
    }

    #[test]
    fn follow_steps() {
        let event = |name: &str, data: &str| SseEvent {
            event: name.into(),
            data: data.into(),
        };
        let log = event(
            "log",
            r#"{"seq":1,"stream":"system","time":"2025-01-02T03:04:05Z","line":"cold start"}"#,
        );
        assert_eq!(
            follow_step(&log, false, false),
            FollowStep::Print("[system] cold start\n".into())
        );
        let FollowStep::Print(text) = follow_step(&log, true, false) else {
            panic!("expected a line");
        };
        assert!(
            text.ends_with('\n') && !text.trim_end().contains('\n'),
            "{text}"
        );
        let printed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(printed, serde_json::from_str::<Value>(&log.data).unwrap());
        assert_eq!(
            follow_step(&event("end", r#"{"status":"timeout"}"#), false, false),
            FollowStep::End("timeout".into())
        );
        assert_eq!(
            follow_step(&event("ping", ""), false, false),
            FollowStep::Skip
        );
    }
}
