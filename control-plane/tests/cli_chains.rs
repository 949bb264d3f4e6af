//! End-to-end tests of the chain, event and retry commands of the CLI against a real
//! `gantry serve`: `gantry event publish`, `gantry exec tree`, `gantry exec retry` and
//! `gantry exec list --dead-letter`, with real STDIO functions.

mod cli_support;
mod support;

use std::time::{Duration, Instant};

use cli_support::{cli, Output};
use reqwest::Method;
use serde_json::{json, Value};
use support::{stdio_function, Server};

const WITHIN: Duration = Duration::from_secs(60);

/// An id no execution has (a well-formed UUID).
const UNKNOWN_ID: &str = "01900000-0000-7000-8000-000000000000";

/// Polls `GET /v1/executions/{id}` until `done` holds for it (at most [`WITHIN`]).
async fn wait_for(server: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let execution = server.execution(id).await;
        if done(&execution) {
            return execution;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} never {what}: {execution}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the chain tree of `id` until it has a terminal child (at most [`WITHIN`]).
async fn wait_for_child(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (status, _, tree) = server
            .call(server.request(Method::GET, &format!("/v1/executions/{id}/chain")))
            .await;
        assert_eq!(status, 200, "{tree}");
        let child_done = tree["children"][0]["status"]
            .as_str()
            .is_some_and(|s| ["success", "error", "timeout", "cancelled"].contains(&s));
        if child_done {
            return tree;
        }
        assert!(
            Instant::now() < deadline,
            "the chain of {id} never finished: {tree}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids in the first column of an `exec list` table.
fn listed_ids(out: &Output) -> Vec<String> {
    out.lines()
        .into_iter()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Asserts stdout is one line holding a UUID; answers it.
fn one_uuid(out: &Output) -> String {
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{out}\nexpected one line");
    let id = lines[0].trim();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{out}\nnot an id");
    id.to_owned()
}

#[tokio::test]
async fn event_publish_without_a_matching_trigger_says_so() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;

    let out = cli(
        &server,
        ["event", "publish", "order.created", "-d", r#"{"n":1}"#],
    )
    .run()
    .await;
    out.assert_code(0);
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(
        out.stderr, "no function has a trigger for \"order.created\"\n",
        "{out}"
    );

    let out = cli(&server, ["event", "publish", "order.created", "-o", "json"])
        .ok()
        .await;
    let body = out.json();
    assert_eq!(body["type"], "order.created", "{out}");
    assert_eq!(body["executions"], json!([]), "{out}");
    assert_eq!(body["refused"], json!([]), "{out}");

    // Bad data never reaches the server: a usage error.
    let out = cli(
        &server,
        ["event", "publish", "order.created", "-d", "{oops"],
    )
    .run()
    .await;
    out.assert_error(2, "error: -d is not valid JSON");
}

#[tokio::test]
async fn exec_retry_and_tree_of_an_unknown_id_fail_with_one_line() {
    let server = Server::start().await;
    let out = cli(&server, ["exec", "retry", UNKNOWN_ID]).run().await;
    out.assert_error(1, "error: 404 NOT_FOUND");
    let out = cli(&server, ["exec", "tree", UNKNOWN_ID]).run().await;
    let line = out.assert_error(1, "error: 404 NOT_FOUND");
    assert!(line.contains(UNKNOWN_ID), "{out}\nthe message names the id");
    // Not even an id: still one clear line.
    let out = cli(&server, ["exec", "tree", "nope"]).run().await;
    out.assert_error(1, "error: 404 NOT_FOUND");
}

#[tokio::test]
async fn an_event_starts_a_chain_that_exec_tree_shows() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("second", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function(
            "first",
            "python3 echo.py",
            json!({
                "chains": [{"target": "second"}],
                "triggers": [{"type": "thing.happened"}],
            }),
        ))
        .await;

    let out = cli(
        &server,
        ["event", "publish", "thing.happened", "-d", r#"{"n":1}"#],
    )
    .ok()
    .await;
    assert_eq!(out.header(), ["FUNCTION", "EXECUTION"], "{out}");
    let rows = out.rows_of("first");
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(out.lines().len(), 2, "{out}\nonly first has the trigger");
    let first = rows[0][1].to_owned();

    let root = server.wait_terminal(&first, WITHIN).await;
    assert_eq!(root["status"], "success", "{root}");
    assert_eq!(root["input"], json!({"n": 1}), "{root}");
    let tree = wait_for_child(&server, &first).await;
    let second = tree["children"][0]["id"].as_str().unwrap().to_owned();

    let out = cli(&server, ["exec", "tree", &first]).ok().await;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            format!("{first} first success (event)"),
            format!("└─ {second} second success (chain)"),
        ],
        "{out}"
    );

    let out = cli(&server, ["exec", "tree", &first, "-o", "json"])
        .ok()
        .await;
    let body = out.json();
    assert_eq!(body["id"], first.as_str(), "{out}");
    assert_eq!(body["children"][0]["function"], "second", "{out}");
    assert_eq!(body["children"][0]["trigger"], "chain", "{out}");

    // The child records its parent, and got the parent's output as input.
    let out = cli(&server, ["exec", "get", &second]).ok().await;
    assert_eq!(out.field("parentId"), Some(first.as_str()), "{out}");
    assert_eq!(out.field("trigger"), Some("chain"), "{out}");
    let child = server.execution(&second).await;
    assert_eq!(child["input"], json!({"echo": {"n": 1}}), "{child}");

    // Only a failed execution can be re-driven.
    let out = cli(&server, ["exec", "retry", &first]).run().await;
    out.assert_error(1, "error: 409 CONFLICT");
}

#[tokio::test]
async fn a_dead_lettered_execution_is_listed_and_re_driven() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "flaky",
            "sh -c 'exit 3'",
            json!({"retry": {"max_attempts": 2, "initial_backoff_ms": 10}}),
        ))
        .await;
    let out = cli(&server, ["fn", "enqueue", "flaky", "-d", "{}"])
        .ok()
        .await;
    let id = one_uuid(&out);
    let failed = wait_for(&server, &id, "was dead-lettered", |e| {
        e["deadLetter"] == true
    })
    .await;
    assert_eq!(failed["status"], "error", "{failed}");
    assert_eq!(failed["attempt"], 2, "{failed}");
    assert_eq!(
        failed["attempts"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );

    let out = cli(&server, ["exec", "list", "--dead-letter"]).ok().await;
    assert_eq!(listed_ids(&out), std::slice::from_ref(&id), "{out}");
    assert_eq!(out.rows_of(&id)[0][1..4], ["flaky", "error", "2"], "{out}");

    let out = cli(&server, ["exec", "get", &id]).ok().await;
    assert_eq!(out.field("deadLetter"), Some("yes"), "{out}");
    assert_eq!(out.field("attempt"), Some("2"), "{out}");
    let attempts = out
        .stdout
        .lines()
        .skip_while(|line| *line != "attempts:")
        .collect::<Vec<_>>();
    assert!(attempts.len() >= 3, "{out}\nexpected an attempts table");
    assert!(attempts[1].trim_start().starts_with("ATTEMPT"), "{out}");
    assert!(
        attempts[2]
            .split_whitespace()
            .take(3)
            .eq(["1", "error", "3"]),
        "{out}\nexpected attempt 1 failed with exit code 3"
    );

    let out = cli(&server, ["exec", "retry", &id]).ok().await;
    let retry = one_uuid(&out);
    assert_ne!(retry, id, "{out}");

    let out = cli(&server, ["exec", "list", "--dead-letter"]).run().await;
    out.assert_code(0);
    assert!(
        !listed_ids(&out).contains(&id),
        "{out}\nthe re-driven execution left the dead-letter list"
    );
    let out = cli(&server, ["exec", "get", &id]).ok().await;
    assert_eq!(out.field("deadLetter"), None, "{out}");

    // The re-drive shows under the failed execution.
    let out = cli(&server, ["exec", "tree", &id]).ok().await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("{id} flaky error")), "{out}");
    assert!(
        lines[1].starts_with(&format!("└─ {retry} flaky ")) && lines[1].contains("(retry)"),
        "{out}"
    );

    // The re-drive runs (and, with the same policy, ends in the dead-letter list).
    let again = wait_for(&server, &retry, "was dead-lettered", |e| {
        e["deadLetter"] == true
    })
    .await;
    assert_eq!(again["trigger"], "retry", "{again}");
    let out = cli(&server, ["exec", "list", "--dead-letter", "-o", "json"])
        .ok()
        .await;
    let body = out.json();
    let listed: Vec<&str> = body["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(listed, [retry.as_str()], "{out}");
}
