//! Chains and retries as the CLI shows them: `gantry exec tree`, `gantry exec retry`,
//! and the earlier attempts of a retried execution in `gantry exec get`.

use anyhow::Result;
use reqwest::Method;

use super::client::decode;
use super::table::{opt, time, truncate, Table};
use super::{out, out_json, tree_view, Ctx};
use crate::domain::{AttemptFailure, ExecutionError};
use crate::wire::{ChainPage, RetryAnswer};

/// Longest error text in the attempts table.
const ERROR_WIDTH: usize = 80;

/// `exec tree ID`: the chain tree the execution started.
pub async fn tree(ctx: &Ctx, id: &str) -> Result<()> {
    let body = ctx
        .client
        .get(&["v1", "executions", id, "chain"], &[])
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    let page: ChainPage = decode(body)?;
    out(&tree_view::render_tree(&page.tree))
}

/// `exec retry ID`: re-drives a failed execution and prints the new one's ID.
pub async fn retry(ctx: &Ctx, id: &str) -> Result<()> {
    let client = &ctx.client;
    let url = client.url(&["v1", "executions", &format!("{id}:retry")], &[]);
    let (_, body) = client.call(client.request(Method::POST, url)).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let retry: RetryAnswer = decode(body)?;
    out(&format!("{}\n", retry.execution_id))
}

/// The `attempts:` block of `exec get`: how each earlier attempt failed, as a table
/// indented by two spaces; empty when the execution has no earlier attempts.
pub fn attempts_block(attempts: &[AttemptFailure]) -> String {
    if attempts.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&["ATTEMPT", "STATUS", "EXIT", "FINISHED", "ERROR"]);
    for attempt in attempts {
        table.row(vec![
            attempt.attempt.to_string(),
            attempt.status.as_str().to_string(),
            opt(attempt.exit_code),
            time(Some(attempt.finished_at)),
            error_text(attempt.error.as_ref()),
        ]);
    }
    let mut text = String::from("attempts:\n");
    for line in table.render().lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// An `{code, message}` error as `CODE: message` on one line, cut to [`ERROR_WIDTH`].
fn error_text(error: Option<&ExecutionError>) -> String {
    let Some(error) = error else {
        return String::new();
    };
    let code = error.code.to_string();
    let message = &error.message;
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = match (code.is_empty(), message.is_empty()) {
        (_, true) => code,
        (true, false) => message,
        (false, false) => format!("{code}: {message}"),
    };
    truncate(&text, ERROR_WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_attempts_no_block() {
        assert_eq!(attempts_block(&[]), "");
    }

    #[test]
    fn attempts_table_lists_earlier_failures() {
        let attempts: Vec<AttemptFailure> = serde_json::from_value(json!([
            {"attempt": 1, "status": "error", "exitCode": 3,
             "error": {"code": "EXIT_CODE", "message": "exited with\ncode 3"},
             "finishedAt": "2026-11-23T09:10:00.5Z"},
            {"attempt": 2, "status": "timeout", "error": {"code": "TIMEOUT", "message": ""},
             "finishedAt": "2026-11-23T09:10:02Z"},
        ]))
        .unwrap();
        assert_eq!(
            attempts_block(&attempts),
            "attempts:\n  \
             ATTEMPT  STATUS   EXIT  FINISHED              ERROR\n  \
             1        error    3     2026-11-23T09:10:00Z  EXIT_CODE: exited with code 3\n  \
             2        timeout        2026-11-23T09:10:02Z  TIMEOUT\n"
        );
    }

    #[test]
    fn long_errors_are_cut() {
        let text = error_text(Some(&ExecutionError::new("E", "m".repeat(200))));
        assert_eq!(text.chars().count(), ERROR_WIDTH);
        assert!(text.starts_with("E: mmm") && text.ends_with('…'), "{text}");
        assert_eq!(error_text(Some(&ExecutionError::new("", "only"))), "only");
        assert_eq!(error_text(None), "");
    }
}
