//! `gantry exec ...`: list, get and cancel; `logs` (with `--follow` over server-sent
//! events) is in [`super::exec_logs`], `tree` and `retry` are in [`super::exec_chain`].

use anyhow::Result;
use reqwest::Method;
use serde_json::Value;

use super::client::decode;
use super::table::{duration_ms, json_block, key_values, opt, time, Table};
use super::{
    deliveries_view, exec_chain, exec_logs, out, out_json, Ctx, ExecCommand, ExecListArgs,
};
use crate::domain::Execution;
use crate::wire::{ExecutionDetail, ExecutionPage, ExecutionQuery};

/// Carries out one `gantry exec` subcommand.
pub async fn run(ctx: &Ctx, command: ExecCommand) -> Result<()> {
    match command {
        ExecCommand::List(args) => list(ctx, &args).await,
        ExecCommand::Get { id } => get(ctx, &id).await,
        ExecCommand::Logs {
            id,
            follow,
            timestamps,
        } => {
            if follow {
                exec_logs::follow_logs(ctx, &id, timestamps).await
            } else {
                exec_logs::logs(ctx, &id, timestamps).await
            }
        }
        ExecCommand::Cancel { id } => cancel(ctx, &id).await,
        ExecCommand::Deliveries { state, cursor } => {
            deliveries_view::list(ctx, &state, cursor.as_deref()).await
        }
        ExecCommand::Redeliver { id } => deliveries_view::redeliver(ctx, &id).await,
        ExecCommand::Retry { id } => exec_chain::retry(ctx, &id).await,
        ExecCommand::Tree { id } => exec_chain::tree(ctx, &id).await,
    }
}

/// Parses `--since`/`--until`: RFC 3339, or an age (`90s`, `15m`, `2h`, `7d`) counted
/// back from now. Returns RFC 3339 in UTC.
pub fn parse_time(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        let utc = t.with_timezone(&chrono::Utc);
        return Ok(utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    let ago = {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => 0,
        };
        let age = number
            .parse::<i64>()
            .ok()
            .filter(|_| seconds > 0)
            .and_then(|n| n.checked_mul(seconds))
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| {
                format!("expected RFC 3339 (2025-01-02T15:04:05Z) or an age like 15m, 2h, 7d; got {text:?}")
            })?;
        chrono::Utc::now() - age
    };
    Ok(ago.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The query of `exec list`.
pub fn list_query(args: &ExecListArgs) -> ExecutionQuery {
    let statuses: Vec<&str> = args.status.iter().map(|s| s.as_str()).collect();
    let triggers: Vec<&str> = args.trigger.iter().map(|t| t.as_str()).collect();
    ExecutionQuery {
        function: args.function.clone(),
        status: (!statuses.is_empty()).then(|| statuses.join(",")),
        trigger: (!triggers.is_empty()).then(|| triggers.join(",")),
        since: args.since.clone(),
        until: args.until.clone(),
        // Without the flag the server lists every execution, dead-lettered or not.
        dead_letter: args.dead_letter.then_some(true),
        limit: args.limit,
        cursor: args.cursor.clone(),
        include: None,
    }
}

/// `exec list`.
async fn list(ctx: &Ctx, args: &ExecListArgs) -> Result<()> {
    let body = ctx
        .client
        .get_query(&["v1", "executions"], &list_query(args))
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    let page: ExecutionPage = decode(body)?;
    let executions: Vec<Execution> = page.executions.into_iter().map(|e| e.record).collect();
    let table = executions_table(&executions);
    if table.is_empty() {
        // The server hands out a cursor whenever a page is full, so the page after
        // one may be empty: that is the end of the listing, not an empty one.
        if args.cursor.is_some() {
            eprintln!("no more executions");
        } else if args.dead_letter {
            eprintln!("no dead-lettered executions found");
        } else {
            eprintln!("no executions found");
        }
    } else {
        out(&table.render())?;
    }
    if let Some(cursor) = page.next_cursor {
        eprintln!("more executions: repeat with --cursor {cursor}");
    }
    Ok(())
}

/// The `exec list` table of Execution records.
pub fn executions_table(executions: &[Execution]) -> Table {
    let mut table = Table::new(&["ID", "FUNCTION", "STATUS", "ATTEMPT", "DURATION", "CREATED"]);
    for execution in executions {
        table.row(vec![
            execution.id.to_string(),
            execution.function.clone(),
            execution.status.as_str().to_string(),
            execution.attempt.to_string(),
            duration_ms(execution.duration_ms),
            time(Some(execution.created_at)),
        ]);
    }
    table
}

/// `exec get ID`.
async fn get(ctx: &Ctx, id: &str) -> Result<()> {
    let body = ctx.client.get(&["v1", "executions", id], &[]).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let detail: ExecutionDetail = decode(body)?;
    let mut text = execution_details(&detail.execution);
    text.push_str(&deliveries_view::deliveries_block(&detail.deliveries));
    out(&text)
}

/// The `exec get` text of an Execution: `key: value` lines (empty fields left out),
/// the earlier attempts' failures when it was retried, then the input and output as
/// pretty JSON.
pub fn execution_details(execution: &Execution) -> String {
    let error = match &execution.error {
        Some(error) if error.message.is_empty() => error.code.to_string(),
        Some(error) => format!("{}: {}", error.code, error.message),
        None => String::new(),
    };
    let flag = |set: bool| if set { "yes" } else { "" }.to_string();
    let mut text = key_values(&[
        ("id", execution.id.to_string()),
        ("function", execution.function.clone()),
        ("version", execution.version.to_string()),
        ("status", execution.status.as_str().to_string()),
        ("error", error),
        ("exitCode", opt(execution.exit_code)),
        ("attempt", execution.attempt.to_string()),
        ("deadLetter", flag(execution.dead_letter)),
        ("trigger", execution.trigger.as_str().to_string()),
        ("traceId", opt(execution.trace_id.as_deref())),
        ("traceparent", opt(execution.traceparent.as_deref())),
        ("idempotencyKey", opt(execution.idempotency_key.as_deref())),
        ("parentId", opt(execution.parent_id)),
        ("rootId", opt(execution.root_id)),
        ("depth", execution.depth.to_string()),
        ("scheduledFor", time(execution.scheduled_for)),
        ("runAt", time(execution.run_at)),
        ("timeoutMs", execution.timeout_ms.to_string()),
        ("createdAt", time(Some(execution.created_at))),
        ("startedAt", time(execution.started_at)),
        ("finishedAt", time(execution.finished_at)),
        ("duration", duration_ms(execution.duration_ms)),
        ("coldStart", opt(execution.cold_start)),
        ("instanceId", opt(execution.instance_id.as_deref())),
    ]);
    text.push_str(&exec_chain::attempts_block(&execution.attempts));
    text.push_str(&json_block("input", &execution.input));
    text.push_str(&json_block(
        "output",
        execution.output.as_ref().unwrap_or(&Value::Null),
    ));
    text
}

/// `exec cancel ID`.
async fn cancel(ctx: &Ctx, id: &str) -> Result<()> {
    let client = &ctx.client;
    let url = client.url(&["v1", "executions", &format!("{id}:cancel")], &[]);
    let (_, body) = client.call(client.request(Method::POST, url)).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let execution: Execution = decode(body)?;
    out(&format!("execution {id}: {}\n", execution.status.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExecutionStatus, Trigger};
    use serde_json::json;

    #[test]
    fn times_accept_rfc3339_and_ages() {
        assert_eq!(
            parse_time("2025-01-02T16:04:05+01:00").unwrap(),
            "2025-01-02T15:04:05Z"
        );
        let hour_ago = chrono::DateTime::parse_from_rfc3339(&parse_time("1h").unwrap()).unwrap();
        let age = chrono::Utc::now() - hour_ago.with_timezone(&chrono::Utc);
        assert!((3595..=3605).contains(&age.num_seconds()), "{age}");
        for bad in ["", "h", "5w", "yesterday", "2025-01-02"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_query_joins_statuses() {
        let args = ExecListArgs {
            function: Some("echo".into()),
            status: vec![ExecutionStatus::Error, ExecutionStatus::Timeout],
            trigger: vec![Trigger::Chain, Trigger::Retry],
            since: Some("2025-01-01T00:00:00Z".into()),
            until: None,
            dead_letter: true,
            limit: Some(5),
            cursor: Some("abc".into()),
        };
        let client = super::super::Client::new("http://127.0.0.1:1", None).unwrap();
        let request = client
            .request(Method::GET, client.url(&["v1", "executions"], &[]))
            .query(&list_query(&args))
            .build()
            .unwrap();
        assert_eq!(
            request.url().query(),
            Some(
                "function=echo&status=error%2Ctimeout&trigger=chain%2Cretry&since=2025-01-01T00%3A00%3A00Z\
                 &dead_letter=true&limit=5&cursor=abc"
            )
        );
        let none = ExecListArgs {
            function: None,
            status: Vec::new(),
            trigger: Vec::new(),
            since: None,
            until: None,
            dead_letter: false,
            limit: None,
            cursor: None,
        };
        assert_eq!(list_query(&none), ExecutionQuery::default());
    }

    /// An execution record: the given fields over a queued one's.
    fn execution(fields: Value) -> Execution {
        let mut record = json!({
            "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "function": "echo", "version": 3,
            "status": "queued", "input": null, "output": null, "error": null, "attempt": 1,
            "parentId": null, "rootId": null, "depth": 0, "trigger": "api", "traceId": null,
            "idempotencyKey": null, "timeoutMs": 30000, "createdAt": "2025-01-02T03:04:05Z",
            "startedAt": null, "finishedAt": null, "durationMs": null, "coldStart": null,
            "instanceId": null, "exitCode": null, "deadLetter": false
        });
        for (key, value) in fields.as_object().unwrap() {
            record[key] = value.clone();
        }
        decode(record).unwrap()
    }

    #[test]
    fn executions_table_columns() {
        let table = executions_table(&[
            execution(json!({"status": "success", "durationMs": 1500})),
            execution(json!({"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", "attempt": 2})),
        ]);
        assert_eq!(
            table.render(),
            "ID                                    FUNCTION  STATUS   ATTEMPT  DURATION  CREATED\n\
             0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b  echo      success  1        1.5s      2025-01-02T03:04:05Z\n\
             0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c  echo      queued   2                  2025-01-02T03:04:05Z\n"
        );
    }

    #[test]
    fn execution_details_skips_empty_fields() {
        let text = execution_details(&execution(json!({
            "status": "error", "error": {"code": "EXIT_CODE", "message": "exited with 2"},
            "exitCode": 2, "input": {"a": 1}, "durationMs": 12
        })));
        assert_eq!(
            text,
            "id:        0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\nfunction:  echo\n\
             version:   3\nstatus:    error\nerror:     EXIT_CODE: exited with 2\n\
             exitCode:  2\nattempt:   1\ntrigger:   api\ndepth:     0\n\
             timeoutMs: 30000\ncreatedAt: 2025-01-02T03:04:05Z\nduration:  12ms\n\
             input:\n  {\n    \"a\": 1\n  }\noutput:\n  null\n"
        );
    }

    #[test]
    fn execution_details_show_dead_letters_and_attempts() {
        let text = execution_details(&execution(json!({
            "status": "error", "attempt": 2, "deadLetter": true,
            "error": {"code": "EXIT_CODE", "message": "exited with 3"},
            "attempts": [{"attempt": 1, "status": "error", "exitCode": 3,
                "error": {"code": "EXIT_CODE", "message": "exited with 3"},
                "finishedAt": "2026-11-23T09:10:00Z"}]
        })));
        assert!(text.contains("deadLetter: yes\n"), "{text}");
        assert!(
            text.contains(
                "attempts:\n  ATTEMPT  STATUS  EXIT  FINISHED              ERROR\n  \
                 1        error   3     2026-11-23T09:10:00Z  EXIT_CODE: exited with 3\ninput:\n"
            ),
            "{text}"
        );
    }
}
