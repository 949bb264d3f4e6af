//! End-to-end tests of `gantry exec ...` against a real `gantry serve`: listing with
//! filters and cursors, cancel, and `exec logs -f` streaming lines while the execution
//! still runs.

mod cli_support;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use cli_support::{cli, read_until};
use serde_json::json;
use support::{fixture, stdio_function, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const WITHIN: Duration = Duration::from_secs(60);

/// The ids of an `exec list` table, in order.
fn listed_ids(out: &cli_support::Output) -> Vec<String> {
    out.lines()
        .into_iter()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn exec_list_filters_and_pages() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function("fail", "sh -c 'exit 3'", json!({})))
        .await;
    let mut echo_ids = Vec::new();
    for n in 0..3 {
        let (status, body) = server.invoke("echo", json!(n)).await;
        assert_eq!(status, 200, "{body}");
        echo_ids.push(body["executionId"].as_str().unwrap().to_owned());
    }
    let (status, body) = server.invoke("fail", json!(null)).await;
    assert_eq!(status, 502, "{body}");
    let fail_id = body["executionId"].as_str().unwrap().to_owned();

    let out = cli(
        &server,
        [
            "exec",
            "list",
            "--function",
            "echo",
            "--status",
            "success,error",
        ],
    )
    .ok()
    .await;
    let ids = listed_ids(&out);
    assert_eq!(ids.len(), 3, "{out}");
    assert_eq!(
        ids.iter().cloned().collect::<HashSet<_>>(),
        echo_ids.iter().cloned().collect::<HashSet<_>>()
    );
    for id in &echo_ids {
        assert_eq!(out.rows_of(id)[0][1..3], ["echo", "success"], "{out}");
    }

    let out = cli(&server, ["exec", "list", "--status", "error"])
        .ok()
        .await;
    assert_eq!(listed_ids(&out), std::slice::from_ref(&fail_id), "{out}");
    assert_eq!(out.rows_of(&fail_id)[0][1..3], ["fail", "error"]);
    let out = cli(&server, ["exec", "list", "--status", "timeout,cancelled"])
        .run()
        .await;
    out.assert_code(0);
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(out.stderr, "no executions found\n", "{out}");

    // Paging: two at a time, the hint on stderr names the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 4, "paging never ended: {seen:?}");
        let mut args = vec!["exec", "list", "--limit", "2"];
        if let Some(cursor) = &cursor {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let out = cli(&server, &args).run().await;
        out.assert_code(0);
        let ids = listed_ids(&out);
        assert!(ids.len() <= 2, "{out}");
        if ids.is_empty() {
            // A full page may still hand out a cursor; the page after it is empty.
            assert!(cursor.is_some() && seen.len() == 4, "{out}");
            assert_eq!(out.stderr, "no more executions\n", "{out}");
            break;
        }
        seen.extend(ids);
        cursor = match out.stderr.lines().collect::<Vec<_>>()[..] {
            [] => None,
            [hint] => Some(
                hint.strip_prefix("more executions: repeat with --cursor ")
                    .unwrap_or_else(|| panic!("{out}\nunexpected stderr"))
                    .to_owned(),
            ),
            _ => panic!("{out}\nexpected at most one hint line"),
        };
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 4, "pages overlap: {seen:?}");
    assert!(unique.contains(&fail_id));

    let out = cli(
        &server,
        ["exec", "list", "-o", "json", "--function", "fail"],
    )
    .ok()
    .await;
    let body = out.json();
    assert_eq!(body["executions"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(body["executions"][0]["id"], json!(fail_id));

    let out = cli(&server, ["exec", "get", &fail_id]).ok().await;
    assert_eq!(out.field("status"), Some("error"), "{out}");
    assert!(
        out.field("error").unwrap().starts_with("FUNCTION_ERROR"),
        "{out}"
    );
    let out = cli(&server, ["exec", "list", "--status", "finished"])
        .run()
        .await;
    out.assert_code(2);
    let out = cli(&server, ["exec", "get", "no-such-execution"])
        .run()
        .await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn exec_cancel_stops_a_running_execution_once() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "slow",
            "sleep 120",
            json!({"resources": {"timeout_ms": 300000}}),
        ))
        .await;
    let out = cli(&server, ["fn", "enqueue", "slow"]).ok().await;
    let id = out.stdout.trim().to_owned();
    server.wait_status(&id, "running", WITHIN).await;
    server.wait_process(&id, "sleep", WITHIN).await;

    let out = cli(&server, ["exec", "cancel", &id]).ok().await;
    assert_eq!(out.stdout, format!("execution {id}: cancelled\n"), "{out}");
    assert_eq!(server.execution(&id).await["status"], "cancelled");
    server.assert_no_instances().await;

    let out = cli(&server, ["exec", "cancel", &id]).run().await;
    let line = out.assert_error(1, "error: 409 ALREADY_FINISHED: ");
    assert!(line.contains("cancelled"), "{out}");
    let out = cli(&server, ["exec", "cancel", "no-such-execution"])
        .run()
        .await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");

    // The logs of a cancelled execution end at once with its status.
    let out = cli(&server, ["exec", "logs", "--follow", &id]).run().await;
    out.assert_code(0);
    assert_eq!(
        out.stderr,
        format!("execution {id} finished: cancelled\n"),
        "{out}"
    );
}

#[tokio::test]
async fn exec_logs_follow_streams_lines_while_running() {
    let server = Server::start().await;
    let gate_dir = support::function_tempdir();
    let gate = gate_dir.path().join("open");
    assert!(std::path::Path::new(&fixture("drip.py")).exists());
    server
        .deploy(stdio_function(
            "drip",
            "python3 drip.py",
            json!({"env": {"GATE_FILE": gate.to_str().unwrap()}}),
        ))
        .await;
    let out = cli(&server, ["fn", "enqueue", "drip"]).ok().await;
    let id = out.stdout.trim().to_owned();

    let mut child = cli(&server, ["exec", "logs", "-f", &id]).spawn();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let first = read_until(&mut stdout, WITHIN, |l| l == "[stderr] drip 1").await;
    assert_eq!(first.last().unwrap(), "[stderr] drip 1");
    // The line arrived while the execution still runs (it waits for the gate).
    let status = server.execution(&id).await["status"].clone();
    assert_eq!(status, "running", "the first line came only after the end");
    assert!(
        child.try_wait().unwrap().is_none(),
        "exec logs -f ended while the execution still runs"
    );

    std::fs::write(&gate, "").unwrap();
    let rest = read_until(&mut stdout, WITHIN, |l| l == "[stderr] drip 3").await;
    assert_eq!(rest, ["[stderr] drip 2", "[stderr] drip 3"]);
    let status = tokio::time::timeout(WITHIN, child.wait())
        .await
        .expect("exec logs -f ends after the execution")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout.next_line().await.unwrap(), None);
    let mut text = String::new();
    stderr.read_to_string(&mut text).await.unwrap();
    assert_eq!(text, format!("execution {id} finished: success\n"));
    assert_eq!(server.execution(&id).await["status"], "success");

    // Without --follow: the same lines, at once; with -o json, the server's records.
    let out = cli(&server, ["exec", "logs", &id]).ok().await;
    assert_eq!(
        out.lines(),
        ["[stderr] drip 1", "[stderr] drip 2", "[stderr] drip 3"],
        "{out}"
    );
    let out = cli(&server, ["exec", "logs", &id, "-o", "json"]).ok().await;
    let lines = out.json()["lines"].clone();
    assert_eq!(lines.as_array().map(Vec::len), Some(3), "{out}");
    assert_eq!(lines[0]["stream"], "stderr");
    let out = cli(&server, ["exec", "logs", "-f", "no-such-execution"])
        .run()
        .await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");
    server.assert_no_instances().await;
}
