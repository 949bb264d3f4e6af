//! End-to-end tests of the `gantry` CLI's function commands against a real `gantry serve`:
//! the README walkthrough verbatim, every example, redeploys, list/get/delete, and the
//! forms and failures of `fn invoke`.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::cli;
use serde_json::{json, Value};
use support::{examples_dir, stdio_function, Server};

/// `examples/<name>/function.yaml` as an absolute path.
fn example(name: &str) -> String {
    let path = examples_dir().join(name).join("function.yaml");
    std::fs::canonicalize(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .to_string_lossy()
        .into_owned()
}

/// Asserts `line` is `deployed NAME version N (sha256:<64 hex>)`; answers the hash.
fn assert_deployed(line: &str, name: &str, version: u32) -> String {
    let prefix = format!("deployed {name} version {version} (sha256:");
    let hash = line
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("expected {prefix}…), got {line:?}"));
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{line:?}"
    );
    hash.to_owned()
}

#[tokio::test]
async fn readme_walkthrough_works_verbatim() {
    let server = Server::start().await;
    // Run from a directory unrelated to the manifest: working_dir must come from the
    // manifest's own folder.
    let elsewhere = support::function_tempdir();

    let out = cli(&server, ["fn", "deploy", "-f", &example("python-stdio")])
        .cwd(elsewhere.path())
        .ok()
        .await;
    assert_deployed(&out.stdout, "shout", 1);
    assert_eq!(out.lines().len(), 1, "{out}");

    let out = cli(
        &server,
        [
            "fn",
            "invoke",
            "shout",
            "-d",
            r#"{"input": "hello gantry"}"#,
        ],
    )
    .cwd(elsewhere.path())
    .ok()
    .await;
    assert_eq!(out.json(), json!({"output": "HELLO GANTRY"}), "{out}");

    // The schema failure: one readable line, the violation said once.
    let out = cli(&server, ["fn", "invoke", "shout", "-d", r#"{"input": 42}"#])
        .run()
        .await;
    let line = out.assert_error(1, "error: 400 INVALID_INPUT: ");
    assert!(line.contains("\"shout\""), "{out}");
    let violation = r#"/input: 42 is not of type "string""#;
    assert_eq!(line.matches(violation).count(), 1, "{out}");
    assert!(line.ends_with(violation), "{out}");

    // Enqueue prints only the id, ready for ID=$(...).
    let out = cli(
        &server,
        ["fn", "enqueue", "shout", "-d", r#"{"input": "later"}"#],
    )
    .ok()
    .await;
    let id = out.stdout.trim_end_matches('\n').to_owned();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{out}\nexpected only an id"
    );

    let out = cli(&server, ["exec", "list"]).ok().await;
    assert_eq!(
        out.header(),
        ["ID", "FUNCTION", "STATUS", "ATTEMPT", "DURATION", "CREATED"],
        "{out}"
    );
    let rows = out.rows_of(&id);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][1], "shout", "{out}");
    assert_eq!(out.lines().len(), 3, "two executions and the header: {out}");

    // Following the logs prints the handler's stderr line and ends with the status.
    let out = cli(&server, ["exec", "logs", "-f", &id]).run().await;
    out.assert_code(0);
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "[stderr] handling execution with input 'later'"),
        "{out}"
    );
    assert_eq!(
        out.stderr,
        format!("execution {id} finished: success\n"),
        "{out}"
    );

    let out = cli(&server, ["exec", "get", &id]).ok().await;
    assert_eq!(out.field("id"), Some(id.as_str()), "{out}");
    assert_eq!(out.field("function"), Some("shout"), "{out}");
    assert_eq!(out.field("status"), Some("success"), "{out}");
    assert!(out.stdout.contains("\"output\": \"LATER\""), "{out}");

    let out = cli(&server, ["fn", "versions", "shout"]).ok().await;
    assert_eq!(out.header(), ["VERSION", "HASH", "CREATED"], "{out}");
    let rows = out.rows_of("1");
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0][1].starts_with("sha256:"), "{out}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn every_other_example_deploys_and_answers() {
    let server = Server::start().await;
    let elsewhere = support::function_tempdir();
    let cases = [
        (
            "node-stdio",
            "shout-node",
            json!({"output": "HELLO", "runtime": "node"}),
        ),
        (
            "shell-file",
            "measure",
            json!({"bytes": 17, "received": {"input": "hello"}}),
        ),
        ("python-http", "shout-http", json!({"result": "HELLO"})),
    ];
    for (folder, name, expected) in cases {
        let out = cli(&server, ["fn", "deploy", "-f", &example(folder)])
            .cwd(elsewhere.path())
            .ok()
            .await;
        assert_deployed(&out.stdout, name, 1);
        let out = cli(
            &server,
            ["fn", "invoke", name, "-d", r#"{"input":"hello"}"#],
        )
        .cwd(elsewhere.path())
        .ok()
        .await;
        assert_eq!(out.json(), expected, "{out}");
    }
    server.assert_no_instances().await;
}

#[tokio::test]
async fn redeploy_is_unchanged_or_a_new_version() {
    let server = Server::start().await;
    let manifest = example("python-stdio");
    let first = cli(&server, ["fn", "deploy", "-f", &manifest]).ok().await;
    let first_hash = assert_deployed(&first.stdout, "shout", 1);

    let out = cli(&server, ["fn", "deploy", "-f", &manifest]).ok().await;
    assert_eq!(out.stdout, "shout unchanged (version 1)\n", "{out}");

    // An edited copy elsewhere, pointing back at the handler with an absolute path.
    let dir = support::function_tempdir();
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("timeout_ms: 5000"), "{text}");
    let handler_dir = examples_dir().join("python-stdio").canonicalize().unwrap();
    let edited = format!(
        "{}\nworking_dir: {}\n",
        text.replace("timeout_ms: 5000", "timeout_ms: 7000"),
        handler_dir.display()
    );
    let copy = dir.path().join("function.yaml");
    std::fs::write(&copy, edited).unwrap();
    let out = cli(&server, ["fn", "deploy", "-f", copy.to_str().unwrap()])
        .ok()
        .await;
    let second_hash = assert_deployed(&out.stdout, "shout", 2);
    assert_ne!(first_hash, second_hash);

    let out = cli(&server, ["fn", "get", "shout", "-o", "json"])
        .ok()
        .await;
    let spec = &out.json()["spec"];
    assert_eq!(spec["resources"]["timeout_ms"], 7000, "{out}");
    assert_eq!(spec["working_dir"], json!(handler_dir.to_str().unwrap()));
    let out = cli(
        &server,
        ["fn", "invoke", "shout", "-d", r#"{"input": "v2"}"#],
    )
    .ok()
    .await;
    assert_eq!(out.json(), json!({"output": "V2"}), "{out}");

    let out = cli(&server, ["fn", "versions", "shout"]).ok().await;
    assert_eq!(out.lines().len(), 3, "{out}");
    assert!(out.rows_of("1")[0][1].ends_with(&first_hash), "{out}");
    assert!(out.rows_of("2")[0][1].ends_with(&second_hash), "{out}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn fn_list_get_and_delete() {
    let server = Server::start().await;
    let out = cli(&server, ["fn", "list"]).run().await;
    out.assert_code(0);
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("no functions deployed"), "{out}");

    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function("tick", "python3 ticker.py 1 0", json!({})))
        .await;

    let out = cli(&server, ["fn", "list"]).ok().await;
    assert_eq!(
        out.header(),
        ["NAME", "VERSION", "MODE", "COMMAND/IMAGE", "UPDATED"],
        "{out}"
    );
    assert_eq!(
        out.rows_of("echo")[0][..5],
        ["echo", "1", "STDIO", "python3", "echo.py"]
    );
    assert_eq!(out.rows_of("tick")[0][1..3], ["1", "STDIO"]);
    assert_eq!(out.lines().len(), 3, "{out}");

    let out = cli(&server, ["fn", "list", "-o", "json"]).ok().await;
    let listed = out.json();
    let mut names: Vec<&str> = listed["functions"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["echo", "tick"]);

    let out = cli(&server, ["fn", "get", "echo"]).ok().await;
    assert_eq!(out.field("name"), Some("echo"), "{out}");
    assert_eq!(out.field("version"), Some("1"), "{out}");
    assert!(out.field("contentHash").unwrap().starts_with("sha256:"));
    assert!(out.stdout.contains("\nspec:\n"), "{out}");
    assert!(
        out.stdout.contains("\"command\": \"python3 echo.py\""),
        "{out}"
    );

    let out = cli(&server, ["fn", "delete", "echo"]).ok().await;
    assert_eq!(out.stdout, "deleted function echo\n");
    let out = cli(&server, ["fn", "get", "echo"]).run().await;
    let line = out.assert_error(1, "error: 404 NOT_FOUND: ");
    assert!(line.contains("echo"), "{out}");
    let out = cli(&server, ["fn", "delete", "echo"]).run().await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");
    let out = cli(&server, ["fn", "list"]).ok().await;
    assert_eq!(out.lines().len(), 2, "{out}");
}

#[tokio::test]
async fn invoke_reads_data_from_flags_files_and_stdin() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let dir = support::function_tempdir();
    let file = dir.path().join("input.json");
    std::fs::write(&file, "{\"from\": \"file\", \"n\": [1, 2]}\n").unwrap();
    let at_file = format!("@{}", file.display());

    let out = cli(&server, ["fn", "invoke", "echo", "-d", &at_file])
        .ok()
        .await;
    assert_eq!(out.json(), json!({"echo": {"from": "file", "n": [1, 2]}}));
    let out = cli(&server, ["fn", "enqueue", "echo", "--data", &at_file])
        .ok()
        .await;
    let id = out.stdout.trim().to_owned();
    let done = server.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(
        done["output"],
        json!({"echo": {"from": "file", "n": [1, 2]}})
    );

    let out = cli(&server, ["fn", "invoke", "echo", "-d", "@-"])
        .stdin("[\"from stdin\"]\n")
        .ok()
        .await;
    assert_eq!(out.json(), json!({"echo": ["from stdin"]}));
    // Relative @file is read from the current directory.
    let out = cli(&server, ["fn", "invoke", "echo", "-d", "@input.json"])
        .cwd(dir.path())
        .ok()
        .await;
    assert_eq!(out.json()["echo"]["from"], "file");
    let out = cli(&server, ["fn", "invoke", "echo"]).ok().await;
    assert_eq!(out.json(), json!({"echo": null}));

    let (_, before) = server.list_executions(&[]).await;
    let count = before["executions"].as_array().unwrap().len();
    // Bad input never reaches the server: usage errors, exit 2.
    let out = cli(&server, ["fn", "invoke", "echo", "-d", "hello"])
        .run()
        .await;
    let line = out.assert_error(2, "error: -d is not valid JSON");
    assert!(line.contains("strings need quotes"), "{out}");
    let out = cli(&server, ["fn", "invoke", "echo", "-d", "@-"])
        .stdin("{oops")
        .run()
        .await;
    out.assert_error(2, "error: standard input (-d @-) is not valid JSON");
    let out = cli(
        &server,
        ["fn", "enqueue", "echo", "-d", "@/no/such/input.json"],
    )
    .run()
    .await;
    out.assert_error(2, "error: cannot read -d @/no/such/input.json");
    let (_, after) = server.list_executions(&[]).await;
    assert_eq!(after["executions"].as_array().unwrap().len(), count);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn invoke_failures_are_one_line_and_exit_1() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("slow", "sleep 30", json!({})))
        .await;
    server
        .deploy(stdio_function(
            "fail",
            "sh -c 'echo boom >&2; exit 3'",
            json!({}),
        ))
        .await;

    let out = cli(&server, ["fn", "invoke", "slow", "--timeout-ms", "200"])
        .run()
        .await;
    let line = out.assert_error(1, "error: TIMEOUT");
    assert!(line.contains("200"), "{out}");
    let id = line
        .rsplit_once("(execution ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{out}\nexpected the execution id"));
    assert_eq!(server.execution(id).await["status"], "timeout");

    let out = cli(&server, ["fn", "invoke", "fail"]).run().await;
    let line = out.assert_error(1, "error: FUNCTION_ERROR");
    assert!(line.contains("boom"), "{out}");

    // -o json still prints the result, and the exit code still tells the failure.
    let out = cli(&server, ["fn", "invoke", "fail", "-o", "json"])
        .run()
        .await;
    out.assert_code(1);
    let result = out.json();
    assert_eq!(result["status"], "error");
    assert_eq!(result["error"]["code"], "FUNCTION_ERROR");
    out.one_error_line("error: FUNCTION_ERROR");

    let out = cli(&server, ["fn", "invoke", "nosuch"]).run().await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");
    let out = cli(&server, ["fn", "enqueue", "nosuch"]).run().await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");
    let out = cli(&server, ["fn", "invoke", "slow", "--timeout-ms", "0"])
        .run()
        .await;
    out.assert_code(2);
    assert!(
        out.stderr.starts_with("error: invalid value '0' for '--timeout-ms <MS>': expected a whole number of milliseconds"),
        "{out}"
    );
    server.assert_no_instances().await;
}

#[tokio::test]
async fn idempotency_key_returns_the_first_execution() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let invoke = |key: &'static str, data: &'static str| {
        let args = [
            "fn",
            "invoke",
            "echo",
            "-d",
            data,
            "--idempotency-key",
            key,
            "-o",
            "json",
        ];
        cli(&server, args).ok()
    };
    let first: Value = invoke("k-1", "1").await.json();
    let again: Value = invoke("k-1", "1").await.json();
    let other: Value = invoke("k-2", "1").await.json();
    assert_eq!(first["status"], "success", "{first}");
    assert!(first["executionId"].is_string(), "{first}");
    assert_eq!(first["executionId"], again["executionId"]);
    assert_eq!(again["output"], json!({"echo": 1}));
    assert_ne!(first["executionId"], other["executionId"]);

    let out = cli(
        &server,
        ["fn", "enqueue", "echo", "--idempotency-key", "q-1"],
    )
    .ok()
    .await;
    let repeat = cli(
        &server,
        ["fn", "enqueue", "echo", "--idempotency-key", "q-1"],
    )
    .ok()
    .await;
    assert_eq!(out.stdout, repeat.stdout);
    server
        .wait_terminal(out.stdout.trim(), Duration::from_secs(60))
        .await;
    server.assert_no_instances().await;
}
