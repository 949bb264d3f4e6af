//! WARM mode with a process per invocation (WARM_RUNTIME=STDIO and FILE): results,
//! concurrency, separate files per concurrent call, timeouts and spawn errors.

mod support;

use serde_json::json;
use support::{error_code, example, watchdog};

#[tokio::test]
async fn stdio_runtime_runs_one_process_per_invocation() {
    let warm = watchdog(
        "WARM",
        &format!("python3 {}", example("python-stdio/handler.py")),
    )
    .env("WARM_RUNTIME", "STDIO")
    .start_warm()
    .await;
    assert_eq!(warm.health().await.0, 200);
    for word in ["one", "two", "three"] {
        let report = warm.call(word, json!({"input": word})).await;
        assert_eq!(
            report["output"],
            json!({"output": word.to_uppercase()}),
            "{report}"
        );
        assert_eq!(report["exit_code"], 0);
    }
    let failed = warm.call("bad", json!({"input": 5})).await;
    assert_eq!(
        error_code(&failed).as_deref(),
        Some("FUNCTION_ERROR"),
        "{failed}"
    );
    warm.stop().await;
}

#[tokio::test]
async fn a_process_per_call_gets_the_calls_trace_context_in_its_environment() {
    let script = "import json, os, sys; sys.stdin.read(); \
        print(json.dumps({k: os.environ.get(k) for k in ('TRACEPARENT', 'TRACESTATE')}))";
    let warm = watchdog("WARM", &format!("python3 -c \"{script}\""))
        .env("WARM_RUNTIME", "STDIO")
        .start_warm()
        .await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers = [
        ("X-Execution-Id", "e"),
        ("traceparent", parent),
        ("tracestate", "a=1"),
    ];
    let report = warm.invoke_raw(&headers, "1").await;
    assert_eq!(
        report["output"],
        json!({"TRACEPARENT": parent, "TRACESTATE": "a=1"}),
        "{report}"
    );
    // Another call without one: nothing left over from the first.
    let report = warm.call("plain", json!(1)).await;
    assert_eq!(
        report["output"],
        json!({"TRACEPARENT": null, "TRACESTATE": null})
    );
    warm.stop().await;
}

#[tokio::test]
async fn stdio_runtime_runs_invocations_side_by_side_up_to_the_limit() {
    let warm = watchdog("WARM", "sh -c 'sleep 1; cat'")
        .env("WARM_RUNTIME", "STDIO")
        .env("WARM_CONCURRENCY", "2")
        .start_warm()
        .await;
    let calls: Vec<_> = (0..2)
        .map(|n| warm.spawn_invoke(json!({"execution_id": format!("c{n}"), "payload": {"n": n}})))
        .collect();
    // Both run at once: two invocations in flight together.
    warm.wait_in_flight(2).await;
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().1["output"], json!({"n": n}));
    }
    warm.stop().await;
}

#[tokio::test]
async fn file_runtime_gives_concurrent_invocations_their_own_files() {
    let scratch = support::Scratch::new(0o700);
    let dir = scratch.path();
    let warm = watchdog(
        "WARM",
        r#"sh -c 'sleep 0.3; cp "$INPUT_FILE" "$OUTPUT_FILE"'"#,
    )
    .env("WARM_RUNTIME", "FILE")
    .env("WARM_CONCURRENCY", "4")
    .env("INPUT_FILE", dir.join("in.json"))
    .env("OUTPUT_FILE", dir.join("out.json"))
    .start_warm()
    .await;
    let calls: Vec<_> = (0..4)
        .map(|n| {
            warm.spawn_invoke(json!({"execution_id": format!("f{n}"), "payload": {"call": n}}))
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let (_, report) = call.await.unwrap();
        assert_eq!(report["output"], json!({"call": n}), "{report}");
    }
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "files are cleaned up"
    );
    warm.stop().await;
}

#[tokio::test]
async fn a_timed_out_invocation_loses_its_whole_process_group() {
    let warm = watchdog("WARM", "sh -c 'sleep 300 & sleep 300'")
        .env("WARM_RUNTIME", "STDIO")
        .start_warm()
        .await;
    let (_, _, report) = warm
        .invoke(json!({"execution_id": "t", "payload": null, "timeout_ms": 300}))
        .await;
    assert_eq!(error_code(&report).as_deref(), Some("TIMEOUT"), "{report}");
    // Nothing but the watchdog itself carries the marker now.
    let alive = support::processes_with_marker(&warm.marker);
    assert_eq!(alive.len(), 1, "{alive:?}");
    warm.stop().await;
}

#[tokio::test]
async fn a_command_that_cannot_start_is_spawn_error_per_invocation() {
    for runtime in ["STDIO", "FILE"] {
        let warm = watchdog("WARM", "/no/such/handler")
            .env("WARM_RUNTIME", runtime)
            .env(
                "INPUT_FILE",
                std::env::temp_dir().join(format!("gantry-{}.json", uuid::Uuid::new_v4())),
            )
            .start_warm()
            .await;
        let report = warm.call("x", json!(1)).await;
        assert_eq!(
            error_code(&report).as_deref(),
            Some("SPAWN_ERROR"),
            "{runtime}: {report}"
        );
        warm.stop().await;
    }
}
