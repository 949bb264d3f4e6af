//! `:invoke` and `:enqueue`: answers and status codes for every outcome, the request
//! headers (`X-Timeout-Ms`, `X-Trace-Id`, `Idempotency-Key`), the environment a function
//! sees, and large inputs (schemas: `invoke_schema_api`).

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{
    counting_function, error_code, error_message, stdio_function, Server, ServerOptions,
};

const WAIT: Duration = Duration::from_secs(30);

fn invoke_request(server: &Server, name: &str) -> reqwest::RequestBuilder {
    server.request(Method::POST, &format!("/v1/functions/{name}:invoke"))
}

#[tokio::test]
async fn sync_success_answers_the_execution_id_in_header_and_body() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let (status, headers, body) = server
        .call(invoke_request(&server, "echo").json(&json!({"n": 1})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["executionId"].as_str().expect("executionId");
    assert_eq!(headers["x-execution-id"].to_str().unwrap(), id);
    assert_eq!(body["status"], "success");
    assert_eq!(body["output"], json!({"echo": {"n": 1}}));
    assert_eq!(body["error"], Value::Null);
    let record = server.execution(id).await;
    assert_eq!(record["status"], "success");
    assert_eq!(record["input"], json!({"n": 1}));
    assert_eq!(record["output"], json!({"echo": {"n": 1}}));
    assert_eq!(record["exitCode"], 0);
    assert_eq!(record["trigger"], "api");
    assert!(record["startedAt"].is_string() && record["finishedAt"].is_string());
    assert!(record["durationMs"].is_u64(), "{record}");
    let secret_keys: Vec<&String> = record
        .as_object()
        .unwrap()
        .keys()
        .filter(|key| key.to_lowercase().contains("token"))
        .collect();
    assert!(secret_keys.is_empty(), "the record shows {secret_keys:?}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn failures_map_to_502_and_504() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "fails",
            "sh -c 'echo broken >&2; exit 1'",
            json!({}),
        ))
        .await;
    server
        .deploy(stdio_function("chatty", "sh -c 'echo not json'", json!({})))
        .await;
    server
        .deploy(stdio_function(
            "sleepy",
            "sleep 30",
            json!({"resources": {"timeout_ms": 300}}),
        ))
        .await;

    let (status, body) = server.invoke("fails", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "FUNCTION_ERROR");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broken"),
        "the message carries the last stderr line: {body}"
    );
    assert_eq!(body["output"], Value::Null);
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["exitCode"], 1);

    let (status, body) = server.invoke("chatty", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_OUTPUT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{body}"
    );

    let started = Instant::now();
    let (status, body) = server.invoke("sleepy", json!(null)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["status"], "timeout");
    assert_eq!(body["error"]["code"], "TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a 300 ms timeout took {:?}",
        started.elapsed()
    );
    server.assert_no_instances().await;
}

#[tokio::test]
async fn x_timeout_ms_lowers_the_timeout_and_is_checked() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("long", "sleep 30", json!({})))
        .await;
    let started = Instant::now();
    let (status, headers, body) = server
        .call(invoke_request(&server, "long").header("X-Timeout-Ms", "200"))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(15));
    let id = headers["x-execution-id"].to_str().unwrap();
    assert_eq!(server.execution(id).await["timeoutMs"], 200);

    for bad in ["0", "abc", "-5", "900001"] {
        let (status, _, body) = server
            .call(invoke_request(&server, "long").header("X-Timeout-Ms", bad))
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "X-Timeout-Ms {bad}: {body}"
        );
        assert_eq!(error_code(&body), "BAD_REQUEST");
        assert!(error_message(&body).contains("X-Timeout-Ms"), "{body}");
    }
    // A header above the function's own timeout does not raise it.
    server
        .deploy(stdio_function(
            "capped",
            "python3 echo.py",
            json!({"resources": {"timeout_ms": 5000}}),
        ))
        .await;
    let (status, headers, _) = server
        .call(invoke_request(&server, "capped").header("X-Timeout-Ms", "60000"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = headers["x-execution-id"].to_str().unwrap();
    assert_eq!(server.execution(id).await["timeoutMs"], 5000);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn the_function_sees_its_contract_env_and_nothing_of_the_server() {
    let server = Server::start_with(ServerOptions {
        token: Some("server-secret-token".into()),
        env: vec![("GANTRY_TEST_SECRET".into(), "do-not-leak".into())],
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function(
            "env",
            "python3 env.py",
            json!({"env": {"GREETING": "hi"}}),
        ))
        .await;
    let (status, _, body) = server
        .call(
            invoke_request(&server, "env")
                .header("X-Trace-Id", "trace-abc-123")
                .json(&json!({"k": "v"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["executionId"].as_str().unwrap();
    let env = &body["output"]["env"];
    assert_eq!(env["EXECUTION_ID"], id);
    assert_eq!(env["TRACE_ID"], "trace-abc-123");
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["EXECUTION_MODE"], "STDIO");
    assert!(env["TIMEOUT_MS"].is_string(), "{env}");
    let callback = env["CALLBACK_URL"].as_str().unwrap();
    // Instances call back on a loopback listener of their own, not the API's.
    assert!(
        callback.starts_with("http://127.0.0.1:")
            && !callback.starts_with(&server.url)
            && callback.ends_with("/v1/internal/executions"),
        "{callback}"
    );
    // The watchdog keeps the callback token to itself: the function cannot forge reports.
    for withheld in [
        "CALLBACK_TOKEN",
        "GANTRY_TOKEN",
        "GANTRY_TEST_SECRET",
        "GANTRY_WATCHDOG",
        "GANTRY_LOG",
    ] {
        assert!(env.get(withheld).is_none(), "{withheld} leaked: {env}");
    }
    let leaked: Vec<_> = env
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, value)| {
            value
                .as_str()
                .is_some_and(|v| v.contains("server-secret-token"))
        })
        .collect();
    assert!(leaked.is_empty(), "the API token leaked: {leaked:?}");
    assert_eq!(server.execution(id).await["traceId"], "trace-abc-123");

    // Without X-Trace-Id, one is generated and passed on.
    let (status, body) = server.invoke("env", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    let trace = record["traceId"].as_str().expect("a generated trace id");
    assert_eq!(body["output"]["env"]["TRACE_ID"], trace);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn an_idempotency_key_runs_the_function_once() {
    let server = Server::start().await;
    let dir = support::function_tempdir();
    let count_file = dir.path().join("runs.txt");
    server.deploy(counting_function("count", &count_file)).await;
    let keyed = || {
        invoke_request(&server, "count")
            .header("Idempotency-Key", "order-42")
            .json(&json!({"order": 42}))
    };
    let (status, first_headers, first) = server.call(keyed()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, second_headers, second) = server.call(keyed()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(first["executionId"], second["executionId"]);
    assert_eq!(
        first_headers["x-execution-id"],
        second_headers["x-execution-id"]
    );
    assert_eq!(second["output"], json!({"runs": 1, "input": {"order": 42}}));
    // An enqueue with the same key answers the same execution too.
    let (status, _, queued) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/count:enqueue")
                .header("Idempotency-Key", "order-42")
                .json(&json!({"order": 42})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["executionId"], first["executionId"]);
    let record = server
        .execution(first["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["idempotencyKey"], "order-42");

    // The same key with another input is a client bug: 409, and nothing runs.
    let (status, _, reused) = server
        .call(
            invoke_request(&server, "count")
                .header("Idempotency-Key", "order-42")
                .json(&json!({"order": 99})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reused}");
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED");
    assert!(
        error_message(&reused).contains(first["executionId"].as_str().unwrap()),
        "{reused}"
    );

    // Another key is another execution.
    let (status, _, other) = server
        .call(
            invoke_request(&server, "count")
                .header("Idempotency-Key", "order-43")
                .json(&json!({"order": 43})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_ne!(other["executionId"], first["executionId"]);
    let lines = std::fs::read_to_string(&count_file).unwrap();
    assert_eq!(lines.lines().count(), 2, "runs: {lines}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn empty_bodies_unknown_actions_functions_and_disabled_ones() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function(
            "off",
            "python3 echo.py",
            json!({"enabled": false}),
        ))
        .await;

    let (status, _, body) = server.call(invoke_request(&server, "echo")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"echo": null}));
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["input"], Value::Null);

    let (status, _, body) = server
        .call(
            invoke_request(&server, "echo")
                .header("content-type", "application/json")
                .body("hello"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "BAD_REQUEST");
    assert!(error_message(&body).contains("not valid JSON"), "{body}");
    let (status, _, body) = server
        .call(invoke_request(&server, "echo").header("X-Trace-Id", "t".repeat(300)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).contains("X-Trace-Id must be 1 to 256 characters"),
        "{body}"
    );
    let (status, _, body) = server
        .call(invoke_request(&server, "echo").header("Idempotency-Key", " "))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("Idempotency-Key"), "{body}");
    let (_, list) = server.list_executions(&[]).await;
    assert_eq!(
        list["executions"].as_array().unwrap().len(),
        1,
        "refused calls stored nothing"
    );

    let (status, _, body) = server
        .call(server.request(Method::POST, "/v1/functions/echo:foo"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&body).contains(":foo"), "{body}");

    let (status, body) = server.invoke("missing", json!(1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        error_message(&body).contains("\"missing\" not found"),
        "{body}"
    );

    let (status, body) = server.invoke("off", json!(1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "FUNCTION_DISABLED");
    assert!(error_message(&body).contains("enabled: true"), "{body}");
    let (status, _, body) = server
        .call(server.request(Method::POST, "/v1/functions/off:enqueue"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, list) = server.list_executions(&[("function", "off")]).await;
    assert_eq!(list["executions"], json!([]));
    server.assert_no_instances().await;
}

#[tokio::test]
async fn enqueue_answers_202_then_the_execution_finishes() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let (status, headers, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/echo:enqueue")
                .json(&json!({"later": true})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["executionId"].as_str().unwrap();
    assert_eq!(headers["x-execution-id"].to_str().unwrap(), id);
    let done = server.wait_terminal(id, WAIT).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"echo": {"later": true}}));
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_large_input_travels_through_payload_url() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let big = "x".repeat(200 * 1024);
    let (status, body) = server.invoke("echo", json!({"big": big})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        &body.to_string()[..300.min(body.to_string().len())]
    );
    assert_eq!(
        body["output"]["echo"]["big"].as_str().map(str::len),
        Some(big.len())
    );
    assert_eq!(body["output"]["echo"]["big"], json!(big));

    // It went through PAYLOAD_URL, not the environment; a small one is in the
    // environment. Both are the watchdog's alone: the function sees neither.
    server
        .deploy(stdio_function("env", "python3 env.py", json!({})))
        .await;
    let (status, body) = server.invoke("env", json!({"big": big})).await;
    assert_eq!(status, StatusCode::OK);
    let env = &body["output"]["env"];
    assert!(env.get("PAYLOAD_URL").is_none() && env.get("INVOCATION_PAYLOAD").is_none());
    server
        .deploy(stdio_function("held", "sleep 2", json!({})))
        .await;
    for (input, present, absent) in [
        (json!({"big": big}), "PAYLOAD_URL", "INVOCATION_PAYLOAD"),
        (json!({"small": 1}), "INVOCATION_PAYLOAD", "PAYLOAD_URL"),
    ] {
        let id = server.enqueue("held", input).await;
        server
            .wait_status(&id, "running", Duration::from_secs(30))
            .await;
        let vars = watchdog_environment(&id);
        assert!(
            vars.iter()
                .any(|var| var.starts_with(&format!("{present}="))),
            "{present}"
        );
        assert!(
            !vars
                .iter()
                .any(|var| var.starts_with(&format!("{absent}="))),
            "{absent}"
        );
        if present == "PAYLOAD_URL" {
            assert!(vars.iter().any(|var| var.ends_with("/payload")), "{vars:?}");
        } else {
            assert!(vars.contains(&r#"INVOCATION_PAYLOAD={"small":1}"#.to_owned()));
        }
    }
    let (_, body) = server.invoke("env", json!({"small": 1})).await;

    // The payload route is for the execution's own token only.
    let id = body["executionId"].as_str().unwrap();
    let (status, _, body) = server
        .call(server.client.get(format!(
            "{}/v1/internal/executions/{id}/payload",
            server.url
        )))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    server.assert_no_instances().await;
}

/// The environment of the watchdog running execution `id` (the process that holds its
/// CALLBACK_TOKEN), read as root.
fn watchdog_environment(id: &str) -> Vec<String> {
    support::processes_with_env(&format!("EXECUTION_ID={id}"))
        .into_iter()
        .find_map(|(pid, _)| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<String> = environ
                .split(|b| *b == 0)
                .map(|var| String::from_utf8_lossy(var).into_owned())
                .collect();
            vars.iter()
                .any(|var| var.starts_with("CALLBACK_TOKEN="))
                .then_some(vars)
        })
        .expect("the watchdog of the execution runs")
}
