//! One-shot FILE mode with a real shell function: input and output files, stale output,
//! every error code, timeouts.

mod support;

use serde_json::json;
use support::callback::CallbackServer;
use support::{assert_failed, example, watchdog, Scratch, Watchdog};

/// A FILE-mode watchdog whose files live in a fresh temporary directory, removed when
/// the returned guard is dropped.
fn file_watchdog(command: &str) -> (Watchdog, Scratch) {
    let dir = Scratch::new(0o700);
    let run = watchdog("FILE", command)
        .env("INPUT_FILE", dir.join("input.json"))
        .env("OUTPUT_FILE", dir.join("output.json"));
    (run, dir)
}

#[tokio::test]
async fn shell_example_reads_input_file_and_writes_output_file() {
    let callback = CallbackServer::start().await;
    let (run, dir) = file_watchdog(&example("shell-file/handler.sh"));
    let finished = run
        .env("EXECUTION_ID", "file-1")
        .env("CALLBACK_URL", &callback.url)
        .env("INVOCATION_PAYLOAD", r#"{"input":"hello"}"#)
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let body = &callback.wait_for(1).await[0].body;
    assert_eq!(
        body["output"],
        json!({"bytes": 17, "received": {"input": "hello"}})
    );
    assert_eq!(body["exit_code"], 0);
    // The function's stdout is forwarded as log lines.
    assert!(
        finished.stdout.contains("read 17 bytes from"),
        "{finished:?}"
    );
    // Both files are cleaned up.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn no_output_file_is_invalid_output() {
    let (run, _dir) = file_watchdog("true");
    let finished = run.run().await;
    assert_eq!(finished.code, 1);
    let report = finished.report();
    assert_failed(&report, "INVALID_OUTPUT", &["did not write OUTPUT_FILE"]);
}

#[tokio::test]
async fn a_stale_output_file_from_an_earlier_run_is_never_reported() {
    let (run, dir) = file_watchdog("true");
    std::fs::write(dir.join("output.json"), r#"{"stale": true}"#).unwrap();
    let finished = run.run().await;
    assert_eq!(finished.error_code().as_deref(), Some("INVALID_OUTPUT"));
}

#[tokio::test]
async fn output_that_is_not_json_is_invalid_output() {
    let (run, _dir) = file_watchdog(r#"sh -c 'echo "not json" > "$OUTPUT_FILE"'"#);
    assert_eq!(
        run.run().await.error_code().as_deref(),
        Some("INVALID_OUTPUT")
    );
}

#[tokio::test]
async fn an_output_file_past_max_output_bytes_is_output_too_large() {
    let (run, _dir) = file_watchdog(
        r#"sh -c 'printf "\"%s\"" $(head -c 5000 /dev/zero | tr "\0" a) > "$OUTPUT_FILE"'"#,
    );
    let finished = run.env("MAX_OUTPUT_BYTES", "1000").run().await;
    assert_eq!(finished.error_code().as_deref(), Some("OUTPUT_TOO_LARGE"));
}

#[tokio::test]
async fn a_non_zero_exit_is_function_error() {
    let (run, _dir) = file_watchdog("sh -c 'echo disk full >&2; exit 4'");
    let report = run.run().await.report();
    assert_eq!(report["error"]["code"], "FUNCTION_ERROR");
    assert_eq!(report["exit_code"], 4);
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "{report}"
    );
}

#[tokio::test]
async fn timeout_stops_the_process_group() {
    let (run, _dir) = file_watchdog("sh -c 'sleep 300 & sleep 300'");
    let finished = run.env("TIMEOUT_MS", "300").run().await;
    assert_eq!(finished.error_code().as_deref(), Some("TIMEOUT"));
}

#[tokio::test]
async fn a_command_that_cannot_start_is_spawn_error() {
    let (run, _dir) = file_watchdog("/no/such/handler.sh");
    assert_eq!(run.run().await.error_code().as_deref(), Some("SPAWN_ERROR"));
}

#[tokio::test]
async fn an_input_file_that_cannot_be_written_is_spawn_error_naming_it() {
    let finished = watchdog("FILE", "true")
        .env("INPUT_FILE", "/nonexistent-dir/input.json")
        .env("OUTPUT_FILE", "/nonexistent-dir/output.json")
        .run()
        .await;
    let report = finished.report();
    assert_failed(&report, "SPAWN_ERROR", &["INPUT_FILE"]);
}
