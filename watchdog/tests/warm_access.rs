//! A WARM instance answers the control plane only: `/invoke` needs WARM_TOKEN (checked
//! before anything is read, admitted or counted), the callback target is CALLBACK_URL
//! and nothing else, a request cannot raise its timeout past TIMEOUT_MS, and the
//! function's processes run as RUN_AS and still stop on time.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::callback::CallbackServer;
use support::warm::WarmWatchdog;
use support::{error_code, fixture, free_port, require_root, watchdog, Scratch};

const TOKEN: &str = "warm-token-0b9f3c";

/// A STDIO function that leaves `$RAN_MARKER` behind and echoes its input.
fn marking(dir: &Scratch) -> (support::Watchdog, PathBuf) {
    let ran = dir.join("ran");
    let run = watchdog("WARM", r#"sh -c 'touch "$RAN_MARKER"; cat'"#)
        .env("WARM_RUNTIME", "STDIO")
        .env("RAN_MARKER", &ran);
    (run, ran)
}

/// `POST /invoke` with `body` and an optional `Authorization` header.
async fn post(
    warm: &WarmWatchdog,
    authorization: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .json(&body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn assert_not_run(ran: &Path) {
    assert!(!ran.exists(), "the function ran");
}

#[tokio::test]
async fn invoke_needs_the_token_and_a_refused_call_uses_nothing() {
    let dir = Scratch::new(0o755);
    let (run, ran) = marking(&dir);
    let warm = run
        .env("WARM_TOKEN", TOKEN)
        .env("WARM_CONCURRENCY", "1")
        .env("WARM_MAX_INVOCATIONS", "2")
        .start_warm()
        .await;
    // Health stays open.
    let (status, health) = warm.health().await;
    assert_eq!(status, 200, "{health}");
    let wrong_length = format!("Bearer {TOKEN}x");
    let wrong_case = format!("Bearer {}", TOKEN.to_uppercase());
    let refusals = [
        None,
        Some(""),
        Some(TOKEN),
        Some("Bearer wrong"),
        Some(wrong_length.as_str()),
        Some(wrong_case.as_str()),
        Some("Basic d2F0Y2hkb2c6c2VjcmV0"),
    ];
    for authorization in refusals {
        let (status, headers, body) = post(
            &warm,
            authorization,
            json!({"execution_id": "intruder", "payload": 1}),
        )
        .await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{body}");
        assert!(!body.to_string().contains(TOKEN), "{body}");
    }
    // A body that is not even a request is refused the same way, unread.
    let response = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .body("not json at all")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_not_run(&ran);
    // Nothing was admitted or counted: WARM_MAX_INVOCATIONS (2) is still whole.
    let (_, health) = warm.health().await;
    assert_eq!(
        (health["in_flight"].as_u64(), health["completed"].as_u64()),
        (Some(0), Some(0))
    );
    for id in ["first", "second"] {
        let (status, _, report) = post(
            &warm,
            Some(&bearer()),
            json!({"execution_id": id, "payload": {"id": id}}),
        )
        .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["output"], json!({"id": id}), "{report}");
    }
    assert!(ran.exists());
    warm.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_call_takes_no_concurrency_permit() {
    let warm = watchdog("WARM", "sh -c 'sleep 1; cat'")
        .env("WARM_RUNTIME", "STDIO")
        .env("WARM_CONCURRENCY", "1")
        .env("WARM_TOKEN", TOKEN)
        .start_warm()
        .await;
    let (client, url, auth) = (
        warm.client.clone(),
        format!("{}/invoke", warm.base),
        bearer(),
    );
    let slow = tokio::spawn(async move {
        let response = client
            .post(url)
            .header("authorization", auth)
            .json(&json!({"execution_id": "slow", "payload": 1}))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    });
    warm.wait_in_flight(1).await;
    // While the only permit is taken, an intruder learns nothing: 401, not 429.
    let (status, _, body) = post(&warm, None, json!({"execution_id": "x", "payload": 1})).await;
    assert_eq!(status, 401, "{body}");
    // The control plane is told the truth: 429.
    let (status, _, body) = post(&warm, Some(&bearer()), json!({"execution_id": "y"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(slow.await.unwrap(), 200);
    warm.stop().await;
}

#[tokio::test]
async fn without_warm_token_invoke_is_open_and_a_warning_says_so() {
    let warm = watchdog("WARM", "cat")
        .env("WARM_RUNTIME", "STDIO")
        .start_warm()
        .await;
    let (status, _, report) = post(&warm, None, json!({"execution_id": "e", "payload": 7})).await;
    assert_eq!((status, &report["output"]), (200, &json!(7)), "{report}");
    assert!(
        warm.stderr().contains("WARM_TOKEN is unset"),
        "{}",
        warm.stderr()
    );
    warm.stop().await;
}

#[tokio::test]
async fn the_callback_target_is_fixed_at_start() {
    let callback = CallbackServer::start().await;
    let dir = Scratch::new(0o755);
    let (run, ran) = marking(&dir);
    let warm = run
        .env("WARM_TOKEN", TOKEN)
        .env("CALLBACK_URL", &callback.url)
        .env("CALLBACK_TOKEN", "cb-token")
        .start_warm()
        .await;
    let foreign = "http://127.0.0.1:9/v1/internal/executions";
    let (status, _, body) = post(
        &warm,
        Some(&bearer()),
        json!({"execution_id": "f1", "payload": 1, "callback_url": foreign}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("CALLBACK_URL"), "{message}");
    // The raw form's header is held to the same rule.
    let response = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .bearer_auth(TOKEN)
        .header("x-execution-id", "f2")
        .header("x-callback-url", foreign)
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_not_run(&ran);
    // The configured target itself is accepted (a trailing slash aside) and gets the
    // report, with the envelope's token.
    let (status, _, report) = post(
        &warm,
        Some(&bearer()),
        json!({"execution_id": "ok-1", "payload": 2, "callback_url": format!("{}/", callback.url),
               "callback_token": "per-call"}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let received = callback.wait_for(1).await;
    assert_eq!(received[0].path, "/v1/internal/executions/ok-1:complete");
    assert_eq!(
        received[0].authorization.as_deref(),
        Some("Bearer per-call")
    );
    assert_eq!(received[0].body["output"], 2);
    // Without a callback in the request, none is made.
    let (status, _, _) = post(&warm, Some(&bearer()), json!({"execution_id": "ok-2"})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(callback.received().len(), 1);
    warm.stop().await;
}

#[tokio::test]
async fn without_callback_url_a_request_callback_is_refused() {
    let callback = CallbackServer::start().await;
    let dir = Scratch::new(0o755);
    let (run, ran) = marking(&dir);
    let warm = run.start_warm().await;
    let (status, _, body) = post(
        &warm,
        None,
        json!({"execution_id": "e", "payload": 1, "callback_url": callback.url}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CALLBACK_URL"),
        "{body}"
    );
    assert_not_run(&ran);
    assert!(callback.received().is_empty());
    warm.stop().await;
}

#[tokio::test]
async fn a_request_cannot_raise_its_timeout_past_timeout_ms() {
    let warm = watchdog("WARM", "sh -c 'sleep 30'")
        .env("WARM_RUNTIME", "STDIO")
        .env("TIMEOUT_MS", "500")
        .env("KILL_GRACE_MS", "200")
        .start_warm()
        .await;
    let started = Instant::now();
    let (status, _, report) = post(
        &warm,
        None,
        json!({"execution_id": "t1", "payload": null, "timeout_ms": 60_000}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&report).as_deref(), Some("TIMEOUT"), "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500 ms"),
        "{report}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The raw form's header too.
    let response: Value = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .header("x-execution-id", "t2")
        .header("x-timeout-ms", "60000")
        .body("null")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500 ms"),
        "{response}"
    );
    // A shorter one is kept; 0 is still a bad request.
    let (_, _, report) = post(
        &warm,
        None,
        json!({"execution_id": "t3", "payload": null, "timeout_ms": 200}),
    )
    .await;
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("200 ms"),
        "{report}"
    );
    let (status, _, _) = post(&warm, None, json!({"execution_id": "t4", "timeout_ms": 0})).await;
    assert_eq!(status, 400);
    warm.stop().await;
}

#[tokio::test]
async fn warm_processes_run_as_run_as_and_still_stop_on_time() {
    require_root();
    // Per call (STDIO): the process is the other user's and its group is stopped.
    let warm = watchdog(
        "WARM",
        r#"sh -c 'read -r input; [ "$input" = "\"sleep\"" ] && { sleep 300 & sleep 300; }; printf "\"%s\"" "$(id -u)"'"#,
    )
    .env("WARM_RUNTIME", "STDIO")
    .env("RUN_AS", "65534")
    .start_warm()
    .await;
    assert_eq!(warm.call("id", json!("who")).await["output"], "65534");
    let (_, _, report) = post(
        &warm,
        None,
        json!({"execution_id": "t", "payload": "sleep", "timeout_ms": 300}),
    )
    .await;
    assert_eq!(error_code(&report).as_deref(), Some("TIMEOUT"), "{report}");
    let alive = support::processes_with_marker(&warm.marker);
    assert_eq!(alive.len(), 1, "only the watchdog is left: {alive:?}");
    warm.stop().await;
    // The long-lived HTTP runtime: the other user's, and restarted after a timeout.
    let python = "/usr/bin/python3";
    assert!(
        Path::new(python).exists(),
        "this test needs {python}, which another user than root can run"
    );
    let warm = watchdog("WARM", &format!("{python} {}", fixture("runtime.py")))
        .env(
            "RUNTIME_URL",
            format!("http://127.0.0.1:{}/invoke", free_port()),
        )
        .env("RUN_AS", "nobody")
        .start_warm()
        .await;
    warm.wait_healthy().await;
    let before = warm.call("before", json!(1)).await;
    assert_eq!(before["output"]["uid"], 65534, "{before}");
    let (_, _, report) = post(
        &warm,
        None,
        json!({"execution_id": "slow", "payload": {"sleep": 30}, "timeout_ms": 300}),
    )
    .await;
    assert_eq!(error_code(&report).as_deref(), Some("TIMEOUT"), "{report}");
    warm.wait_healthy().await;
    let after = warm.call("after", json!(2)).await;
    assert_eq!(after["output"]["uid"], 65534, "{after}");
    assert_ne!(after["output"]["pid"], before["output"]["pid"]);
    warm.stop().await;
}
