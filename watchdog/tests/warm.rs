//! WARM mode with a long-lived Python HTTP runtime: both request forms, concurrency
//! limit, idle timeout, max invocations, runtime restart, timeouts and SIGTERM drain.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use support::callback::CallbackServer;
use support::warm::WarmWatchdog;
use support::{assert_no_leftovers, error_code, example, fixture, free_port, watchdog, Watchdog};

fn warm(runtime: &str) -> Watchdog {
    watchdog("WARM", &format!("python3 {runtime}")).env(
        "RUNTIME_URL",
        format!("http://127.0.0.1:{}/invoke", free_port()),
    )
}

async fn started(run: Watchdog) -> WarmWatchdog {
    let warm = run.start_warm().await;
    warm.wait_healthy().await;
    warm
}

#[tokio::test]
async fn example_runtime_serves_many_invocations_in_both_forms_and_stays_warm() {
    let warm = started(warm(&example("python-warm/app.py"))).await;
    let (status, headers, first) = warm
        .invoke(json!({"execution_id": "e1", "payload": {"text": "to be or not to be"}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-execution-id"], "e1");
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["output"]["words"], 6);
    assert_eq!(first["output"]["cached"], false);
    assert_eq!(first["error"], serde_json::Value::Null);
    // Raw form: the body is the payload, the id comes in a header.
    let second = warm
        .invoke_raw(
            &[("X-Execution-Id", "e2")],
            r#"{"text": "to be or not to be"}"#,
        )
        .await;
    assert_eq!(second["output"]["cached"], true, "{second}");
    assert_eq!(second["output"]["execution_id"], "e2");
    assert_eq!(
        second["output"]["pid"], first["output"]["pid"],
        "the same runtime served both"
    );
    let (status, health) = warm.health().await;
    assert_eq!((status, health["completed"].as_u64()), (200, Some(2)));
    warm.stop().await;
}

#[tokio::test]
async fn a_callback_url_in_the_envelope_also_gets_the_report() {
    let callback = CallbackServer::start().await;
    let warm = started(
        warm(&fixture("runtime.py"))
            .env("CALLBACK_URL", &callback.url)
            .env("CALLBACK_TOKEN", "warm-token"),
    )
    .await;
    let (status, _, report) = warm
        .invoke(
            json!({"execution_id": "cb-1", "callback_url": callback.url, "trace_id": "tr",
                       "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    let call = &callback.wait_for(1).await[0];
    assert_eq!(call.path, "/v1/internal/executions/cb-1:complete");
    assert_eq!(call.authorization.as_deref(), Some("Bearer warm-token"));
    assert_eq!(call.trace_id.as_deref(), Some("tr"));
    assert_eq!(call.body["output"], report["output"]);
    assert_eq!(report["output"]["trace_id"], "tr");
    warm.stop().await;
}

#[tokio::test]
async fn the_runtime_gets_each_calls_trace_context_and_time_left() {
    let warm = started(warm(&fixture("runtime.py")).env("TIMEOUT_MS", "4000")).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers = [
        ("X-Execution-Id", "t1"),
        ("traceparent", parent),
        ("tracestate", "a=1"),
        ("X-Timeout-Ms", "1500"),
    ];
    let report = warm.invoke_raw(&headers, "{}").await;
    let output = &report["output"];
    assert_eq!(output["traceparent"], parent, "{report}");
    assert_eq!(output["tracestate"], "a=1");
    let left: u64 = output["timeout_ms"].as_str().unwrap().parse().unwrap();
    assert!((1..=1500).contains(&left), "{output}");
    // The envelope form takes them from the headers too; the timeout is capped at
    // TIMEOUT_MS.
    let envelope = r#"{"execution_id": "t2", "timeout_ms": 60000, "payload": {}}"#;
    let raw = warm.invoke_raw(&[("traceparent", parent)], envelope).await;
    let output = &raw["output"];
    assert_eq!(output["traceparent"], parent, "{raw}");
    assert_eq!(output["tracestate"], serde_json::Value::Null);
    let left: u64 = output["timeout_ms"].as_str().unwrap().parse().unwrap();
    assert!((1..=4000).contains(&left), "{output}");
    warm.stop().await;
}

#[tokio::test]
async fn past_warm_concurrency_the_answer_is_429() {
    let warm = started(warm(&fixture("runtime.py")).env("WARM_CONCURRENCY", "1")).await;
    let slow = warm.spawn_invoke(json!({"execution_id": "slow", "payload": {"sleep": 1.5}}));
    // Once the slow call is in flight, a second one is refused.
    warm.wait_in_flight(1).await;
    let response = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .json(&json!({"execution_id": "fast", "payload": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOO_MANY_REQUESTS");
    assert_eq!(slow.await.unwrap().1["success"], true);
    // Capacity is back once the slow call is done.
    assert_eq!(warm.call("after", json!(2)).await["success"], true);
    warm.stop().await;
}

#[tokio::test]
async fn idle_timeout_stops_the_watchdog_and_its_runtime() {
    let mut warm = started(warm(&fixture("runtime.py")).env("WARM_IDLE_TIMEOUT_MS", "1000")).await;
    assert_eq!(warm.call("only", json!(1)).await["success"], true);
    assert_eq!(warm.wait_exit(Duration::from_secs(10)).await, 0);
    assert!(
        warm.stderr().contains("WARM_IDLE_TIMEOUT_MS"),
        "{}",
        warm.stderr()
    );
    assert_no_leftovers(&warm.marker).await;
}

#[tokio::test]
async fn max_invocations_admits_that_many_then_exits_cleanly() {
    let mut warm = started(warm(&fixture("runtime.py")).env("WARM_MAX_INVOCATIONS", "2")).await;
    assert_eq!(warm.call("one", json!(1)).await["success"], true);
    assert_eq!(warm.call("two", json!(2)).await["success"], true);
    assert_eq!(warm.wait_exit(Duration::from_secs(10)).await, 0);
    assert!(
        warm.stderr().contains("WARM_MAX_INVOCATIONS (2)"),
        "{}",
        warm.stderr()
    );
    // A third call finds nobody listening.
    let third = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .body("{}")
        .send()
        .await;
    assert!(third.is_err(), "{third:?}");
    assert_no_leftovers(&warm.marker).await;
}

#[tokio::test]
async fn a_runtime_that_crashes_fails_its_call_and_is_restarted() {
    let warm = started(warm(&fixture("runtime.py"))).await;
    let before = warm.call("before", json!(1)).await["output"]["pid"].clone();
    let crashed = warm.call("crash", json!({"crash": true})).await;
    assert_eq!(
        error_code(&crashed).as_deref(),
        Some("RUNTIME_CRASHED"),
        "{crashed}"
    );
    warm.wait_healthy().await;
    let after = warm.call("after", json!(2)).await;
    assert_eq!(after["success"], true, "{after}");
    assert_ne!(
        after["output"]["pid"], before,
        "a new runtime process answered"
    );
    assert!(warm.stderr().contains("restarting it"), "{}", warm.stderr());
    warm.stop().await;
}

#[tokio::test]
async fn a_timed_out_call_restarts_the_runtime_group() {
    let warm = started(warm(&fixture("runtime.py"))).await;
    let before = warm.call("before", json!(1)).await["output"]["pid"].clone();
    let (status, _, report) = warm
        .invoke(json!({"execution_id": "slow", "payload": {"sleep": 30}, "timeout_ms": 300}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&report).as_deref(), Some("TIMEOUT"), "{report}");
    warm.wait_healthy().await;
    let after = warm.call("after", json!(2)).await;
    assert_eq!(after["success"], true, "{after}");
    assert_ne!(after["output"]["pid"], before);
    warm.stop().await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_then_exits_zero() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut warm = started(warm(&fixture("runtime.py"))).await;
        let in_flight =
            warm.spawn_invoke(json!({"execution_id": "draining", "payload": {"sleep": 1}}));
        warm.wait_in_flight(1).await;
        warm.signal(signal);
        let (status, report) = in_flight.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(report["success"], true, "{report}");
        assert_eq!(warm.wait_exit(Duration::from_secs(10)).await, 0, "{signal}");
        assert!(warm.stderr().contains(signal.as_str()), "{}", warm.stderr());
        assert_no_leftovers(&warm.marker).await;
    }
}

#[tokio::test]
async fn a_runtime_that_cannot_start_is_unhealthy_and_calls_get_spawn_error() {
    let warm = watchdog("WARM", "/no/such/runtime").start_warm().await;
    let mut health = warm.health().await;
    for _ in 0..50 {
        if health.1["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        health = warm.health().await;
    }
    assert_eq!(health.0, 503, "{}", health.1);
    assert!(
        health.1["detail"].as_str().unwrap().contains("SPAWN_ERROR"),
        "{}",
        health.1
    );
    let report = warm.call("x", json!(1)).await;
    assert_eq!(
        error_code(&report).as_deref(),
        Some("SPAWN_ERROR"),
        "{report}"
    );
    warm.stop().await;
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_reason() {
    let warm = started(warm(&fixture("runtime.py"))).await;
    let post = |body: &'static str| {
        warm.client
            .post(format!("{}/invoke", warm.base))
            .body(body)
            .send()
    };
    let response = post(r#"{"payload": 1}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("execution_id"), "{body}");
    let response = warm
        .client
        .get(format!("{}/nope", warm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = warm
        .client
        .get(format!("{}/invoke", warm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    warm.stop().await;
}

#[tokio::test]
async fn calls_past_max_invocations_get_503_while_the_last_ones_finish() {
    let warm = started(
        warm(&fixture("runtime.py"))
            .env("WARM_MAX_INVOCATIONS", "1")
            .env("WARM_CONCURRENCY", "2"),
    )
    .await;
    let last = warm.spawn_invoke(json!({"execution_id": "last", "payload": {"sleep": 1}}));
    warm.wait_in_flight(1).await;
    let (status, _, body) = warm
        .invoke(json!({"execution_id": "extra", "payload": 1}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WARM_MAX_INVOCATIONS (1)"),
        "{body}"
    );
    assert_eq!(last.await.unwrap().1["success"], true);
    let mut warm = warm;
    assert_eq!(warm.wait_exit(Duration::from_secs(10)).await, 0);
    assert_no_leftovers(&warm.marker).await;
}
