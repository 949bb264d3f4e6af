//! `gantry fn run` end to end: a `command` function runs once through the real watchdog
//! as a host process with the server's validation and error codes (INVALID_INPUT,
//! FUNCTION_ERROR, OUTPUT_SCHEMA_VIOLATION) and leaves no scratch directory behind,
//! `--watch` runs again after a file changes, and an `image` function made by `fn init`
//! is built and run in a container.

mod cli_support;
mod support;

use std::path::Path;
use std::time::Duration;

use cli_support::build::{assert_last_error, path, ready, Images};
use cli_support::{gantry, read_until, Output};
use serde_json::json;
use support::docker::repo;
use support::watchdog_bin;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `gantry fn run -f MANIFEST -d DATA`, which must leave nothing behind in its temp dir.
async fn run(manifest: &Path, data: &str) -> Output {
    let watchdog = path(&watchdog_bin());
    let temp = tempfile::tempdir().unwrap();
    let out = gantry([
        "fn",
        "run",
        "-f",
        &path(manifest),
        "-d",
        data,
        "--watchdog",
        &watchdog,
    ])
    .env("TMPDIR", temp.path())
    .run()
    .await;
    let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert!(left.is_empty(), "fn run left {left:?} behind\n{out}");
    out
}

/// A command function in a temp dir: `handler.py` and a manifest with both schemas.
fn command_function(handler: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("handler.py"), handler).unwrap();
    std::fs::write(
        dir.path().join("function.yaml"),
        "name: local\nmode: STDIO\ncommand: python3 handler.py\n\
         input_schema: {type: object, required: [n], properties: {n: {type: integer}}}\n\
         output_schema: {type: object, required: [double]}\nresources: {timeout_ms: 5000}\n",
    )
    .unwrap();
    dir
}

const DOUBLER: &str = "import json, sys\nevent = json.load(sys.stdin)\n\
    print('doubling', event['n'], file=sys.stderr)\n\
    if event['n'] < 0: sys.exit('negative input')\n\
    print(json.dumps({'double': event['n'] * 2} if event['n'] != 7 else {'wrong': 1}))\n";

#[tokio::test(flavor = "multi_thread")]
async fn fn_run_runs_a_command_function_with_the_servers_checks() {
    // The example, as it is in the repository.
    let out = run(
        &repo().join("examples/python-stdio/function.yaml"),
        r#"{"input":"hello"}"#,
    )
    .await;
    out.assert_code(0);
    assert_eq!(out.json(), json!({"output": "HELLO"}), "{out}");
    assert!(
        out.stderr.contains("handling execution with input 'hello'"),
        "{out}"
    );

    let dir = command_function(DOUBLER);
    let manifest = dir.path().join("function.yaml");
    let out = run(&manifest, r#"{"n": 21}"#).await;
    out.assert_code(0);
    assert_eq!(out.json(), json!({"double": 42}), "{out}");
    assert!(out.stderr.contains("doubling 21"), "{out}");
    // The result is printed once, on stdout: the watchdog's report is no log line.
    assert!(!out.stderr.contains("\"success\""), "{out}");

    // The input_schema refuses before anything runs.
    let out = run(&manifest, r#"{"n": "x"}"#).await;
    let line = assert_last_error(
        &out,
        1,
        "error: INVALID_INPUT: the input does not match the input_schema of \"local\": ",
    );
    assert!(
        !out.stderr.contains("doubling"),
        "{out}\nthe function ran: {line}"
    );
    // The function fails: its message, FUNCTION_ERROR.
    let out = run(&manifest, r#"{"n": -1}"#).await;
    let line = assert_last_error(&out, 1, "error: FUNCTION_ERROR: ");
    assert!(line.contains("negative input"), "{out}");
    assert!(!out.stderr.contains("\"success\""), "{out}");
    // The output breaks the output_schema.
    let out = run(&manifest, r#"{"n": 7}"#).await;
    assert_last_error(
        &out,
        1,
        "error: OUTPUT_SCHEMA_VIOLATION: the output does not match the output_schema",
    );
    // Bad -d and a manifest that is not valid are usage errors.
    let out = run(&manifest, "{nope").await;
    out.assert_code(2);
    std::fs::write(&manifest, "name: Not_Valid\ncommand: x\n").unwrap();
    let out = run(&manifest, "{}").await;
    assert_last_error(&out, 2, "error: invalid manifest: ");
}

#[tokio::test(flavor = "multi_thread")]
async fn fn_run_watch_runs_again_after_a_change() {
    let dir = command_function(DOUBLER);
    let watchdog = path(&watchdog_bin());
    let mut child = gantry([
        "fn",
        "run",
        "--watch",
        "-f",
        &path(&dir.path().join("function.yaml")),
        "-d",
        r#"{"n": 5}"#,
        "--watchdog",
        &watchdog,
    ])
    .spawn();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = read_until(&mut stdout, Duration::from_secs(30), |line| {
        line.contains("\"double\"")
    })
    .await;
    assert!(first.join("\n").contains("\"double\": 10"), "{first:?}");
    // A handler change: the next run triples.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(dir.path().join("handler.py"), DOUBLER.replace("* 2", "* 3")).unwrap();
    let second = read_until(&mut stdout, Duration::from_secs(30), |line| {
        line.contains("\"double\"")
    })
    .await;
    assert!(second.join("\n").contains("\"double\": 15"), "{second:?}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fn_run_builds_and_runs_an_image_function_in_a_container() {
    ready();
    let mut images = Images(Vec::new());
    let tag = images.tag("run");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("greeter");
    gantry([
        "fn",
        "init",
        "greeter",
        "--runtime",
        "python",
        "--image",
        &tag,
        &path(&dir),
    ])
    .run()
    .await
    .assert_code(0);
    let manifest = path(&dir.join("function.yaml"));
    let out = gantry([
        "fn",
        "run",
        "-f",
        &manifest,
        "--build",
        "-d",
        r#"{"name":"Ada"}"#,
    ])
    .run()
    .await;
    out.assert_code(0);
    assert_eq!(out.json(), json!({"greeting": "hello, Ada"}), "{out}");
    assert!(
        out.stderr.contains("greeting Ada"),
        "{out}\nthe handler's log line"
    );
    let out = gantry(["fn", "run", "-f", &manifest, "-d", r#"{"name":7}"#])
        .run()
        .await;
    assert_last_error(&out, 1, "error: INVALID_INPUT: ");
}
