//! Bad configuration exits 64 and names the variable; `--help` documents every variable.

mod support;

use support::{assert_no_leftovers, watchdog};

async fn rejected(vars: &[(&str, &str)], variable: &str) {
    let mut run = watchdog("STDIO", "cat");
    for (name, value) in vars {
        run = run.env(name, value);
    }
    let finished = run.run().await;
    assert_eq!(finished.code, 64, "{vars:?}: {finished:?}");
    assert!(
        finished
            .stderr
            .contains(&format!("invalid configuration: {variable}:")),
        "{vars:?} should name {variable}: {}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "{}", finished.stdout);
}

#[tokio::test]
async fn unknown_mode_exits_64() {
    rejected(&[("EXECUTION_MODE", "BATCH")], "EXECUTION_MODE").await;
}

#[tokio::test]
async fn unparsable_numbers_exit_64() {
    rejected(&[("TIMEOUT_MS", "abc")], "TIMEOUT_MS").await;
    rejected(&[("KILL_GRACE_MS", "2s")], "KILL_GRACE_MS").await;
    rejected(&[("MAX_OUTPUT_BYTES", "-5")], "MAX_OUTPUT_BYTES").await;
    rejected(
        &[("EXECUTION_MODE", "WARM"), ("WARM_PORT", "99999")],
        "WARM_PORT",
    )
    .await;
    rejected(
        &[("EXECUTION_MODE", "WARM"), ("WARM_CONCURRENCY", "0")],
        "WARM_CONCURRENCY",
    )
    .await;
}

#[tokio::test]
async fn unbalanced_quotes_in_the_command_exit_64() {
    rejected(&[("WATCHDOG_CMD", "sh -c 'echo hi")], "WATCHDOG_CMD").await;
}

#[tokio::test]
async fn warm_port_equal_to_the_runtime_port_exits_64() {
    rejected(
        &[
            ("EXECUTION_MODE", "WARM"),
            ("WARM_PORT", "9999"),
            ("RUNTIME_URL", "http://127.0.0.1:9999/invoke"),
        ],
        "WARM_PORT",
    )
    .await;
}

#[tokio::test]
async fn https_callback_and_missing_execution_id_exit_64() {
    rejected(
        &[("CALLBACK_URL", "https://cp/v1"), ("EXECUTION_ID", "e")],
        "CALLBACK_URL",
    )
    .await;
    rejected(&[("CALLBACK_URL", "http://cp/v1")], "EXECUTION_ID").await;
}

#[tokio::test]
async fn help_lists_every_variable_and_stray_arguments_exit_64() {
    let mut help = watchdog("STDIO", "cat");
    help.command.arg("--help");
    let finished = help.run().await;
    assert_eq!(finished.code, 0);
    // Every variable the watchdog reads, except PORT (which it sets, not reads).
    for var in support::WATCHDOG_VARS.iter().filter(|var| **var != "PORT") {
        assert!(
            finished.stdout.contains(var),
            "--help does not mention {var}"
        );
    }
    let mut stray = watchdog("STDIO", "cat");
    stray.command.arg("run");
    let marker = stray.marker.clone();
    let finished = stray.run().await;
    assert_eq!(finished.code, 64);
    assert!(
        finished.stderr.contains("environment"),
        "{}",
        finished.stderr
    );
    assert_no_leftovers(&marker).await;
}
