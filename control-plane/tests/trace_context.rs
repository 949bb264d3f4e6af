//! W3C trace context end to end: a caller's `traceparent` reaches the function (the
//! environment of one-shot and warm per-call processes, the headers of HTTP runtimes,
//! with the time left in `X-Timeout-Ms`), comes back on the answer, is stored with the
//! execution, and a chain, a re-drive or an event's fan-out stays one trace.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{send, stdio_function, warm_function, Server};
use tokio::time::Instant;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const WAIT: Duration = Duration::from_secs(30);

/// The trace id and span id of a `traceparent`, checked to be well formed and non-zero.
fn fields(traceparent: &Value) -> (String, String) {
    let text = traceparent.as_str().expect("a traceparent");
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert_eq!(parts[0], "00", "{text}");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{text}");
    assert!(parts[1].bytes().any(|b| b != b'0'), "{text}");
    assert!(parts[2].bytes().any(|b| b != b'0'), "{text}");
    (parts[1].to_owned(), parts[2].to_owned())
}

async fn call(
    server: &Server,
    name: &str,
    action: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = server
        .request(Method::POST, &format!("/v1/functions/{name}:{action}"))
        .json(&json!({}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    server.call(request).await
}

fn answered_traceparent(headers: &reqwest::header::HeaderMap) -> Value {
    let value = headers.get("traceparent").expect("a traceparent header");
    Value::from(value.to_str().unwrap())
}

#[tokio::test]
async fn a_one_shot_function_runs_in_the_callers_trace() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("env", "python3 env.py", json!({})))
        .await;
    let (status, headers, body) = call(
        &server,
        "env",
        "invoke",
        &[("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let env = &body["output"]["env"];
    let seen = &env["TRACEPARENT"];
    let (trace, span) = fields(seen);
    assert_eq!(trace, TRACE);
    assert_ne!(
        span, "00f067aa0ba902b7",
        "the execution is a span of its own"
    );
    assert_eq!(env["TRACESTATE"], "congo=t61rcWkgMzE");
    assert_eq!(&answered_traceparent(&headers), seen);
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(&record["traceparent"], seen);
    assert_eq!(record["tracestate"], "congo=t61rcWkgMzE");
    // Without X-Trace-Id, the trace id shown is the W3C one.
    assert_eq!(record["traceId"], TRACE);
    assert_eq!(env["TRACE_ID"], TRACE);

    // :enqueue answers the traceparent too, before the function runs.
    let (status, headers, body) = call(&server, "env", "enqueue", &[("traceparent", PARENT)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["executionId"].as_str().unwrap();
    let done = server.wait_terminal(id, WAIT).await;
    assert_eq!(
        done["output"]["env"]["TRACEPARENT"],
        answered_traceparent(&headers)
    );
    assert_eq!(fields(&done["traceparent"]).0, TRACE);
    assert_eq!(done.get("tracestate"), None, "{done}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn x_trace_id_stays_the_trace_id_and_a_bad_traceparent_starts_a_new_trace() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("env", "python3 env.py", json!({})))
        .await;
    // Both: the caller's correlation id is kept, the W3C trace is the caller's.
    let (status, _, body) = call(
        &server,
        "env",
        "invoke",
        &[("traceparent", PARENT), ("X-Trace-Id", "order-42")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let env = &body["output"]["env"];
    assert_eq!(env["TRACE_ID"], "order-42");
    assert_eq!(fields(&env["TRACEPARENT"]).0, TRACE);
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["traceId"], "order-42");

    // Malformed: ignored, not refused; the execution starts a new trace.
    for bad in [
        "garbage",
        &PARENT.to_uppercase(),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let (status, headers, body) = call(&server, "env", "invoke", &[("traceparent", bad)]).await;
        assert_eq!(status, StatusCode::OK, "{bad}: {body}");
        let env = &body["output"]["env"];
        let (trace, _) = fields(&env["TRACEPARENT"]);
        assert_ne!(trace, TRACE);
        assert_eq!(env["TRACE_ID"], trace.as_str());
        assert_eq!(answered_traceparent(&headers), env["TRACEPARENT"]);
    }

    // Without any, a new trace too; an X-Trace-Id that is a W3C trace id names it.
    let (_, _, body) = call(&server, "env", "invoke", &[]).await;
    let (trace, _) = fields(&body["output"]["env"]["TRACEPARENT"]);
    assert_eq!(body["output"]["env"]["TRACE_ID"], trace.as_str());
    let own = "0af7651916cd43dd8448eb211c80319c";
    let (_, _, body) = call(&server, "env", "invoke", &[("X-Trace-Id", own)]).await;
    assert_eq!(fields(&body["output"]["env"]["TRACEPARENT"]).0, own);

    // A traceparent past the header size rules is a 400 like any other header.
    let long = format!("{PARENT}-{}", "0".repeat(300));
    let (status, _, body) = call(&server, "env", "invoke", &[("traceparent", &long)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn an_http_runtime_gets_the_traceparent_and_the_time_left() {
    let server = Server::start().await;
    server
        .deploy(json!({
            "name": "web",
            "mode": "HTTP",
            "command": "python3 http_echo.py",
            "working_dir": format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR")),
            "resources": {"timeout_ms": 4000},
        }))
        .await;
    let (status, headers, body) = call(&server, "web", "invoke", &[("traceparent", PARENT)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = &body["output"];
    assert_eq!(fields(&output["traceparent"]).0, TRACE);
    assert_eq!(output["traceparent"], answered_traceparent(&headers));
    let left: u64 = output["timeout_ms"].as_str().unwrap().parse().unwrap();
    assert!((1..=4000).contains(&left), "{output}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_warm_function_gets_the_trace_context_per_call() {
    let server = Server::start().await;
    let warm = json!({"min_instances": 1, "max_instances": 1});
    server
        .deploy(warm_function(
            "hot",
            warm.clone(),
            json!({"resources": {"timeout_ms": 3000}}),
        ))
        .await;
    let per_call = json!({"warm": warm, "resources": {"timeout_ms": 3000}});
    server
        .deploy(stdio_function("hot-env", "python3 env.py", per_call))
        .await;

    // A long-lived HTTP runtime: the headers of the forwarded request.
    for _ in 0..2 {
        let (status, headers, body) =
            call(&server, "hot", "invoke", &[("traceparent", PARENT)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let output = &body["output"];
        assert_eq!(fields(&output["traceparent"]).0, TRACE);
        assert_eq!(output["traceparent"], answered_traceparent(&headers));
        let left: u64 = output["timeout_ms"].as_str().unwrap().parse().unwrap();
        assert!((1..=3000).contains(&left), "{output}");
    }

    // A process per call: its environment.
    let (status, headers, body) = call(
        &server,
        "hot-env",
        "invoke",
        &[("traceparent", PARENT), ("tracestate", "a=1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let env = &body["output"]["env"];
    let (trace, span) = fields(&env["TRACEPARENT"]);
    assert_eq!(trace, TRACE);
    assert_ne!(span, "00f067aa0ba902b7");
    assert_eq!(env["TRACESTATE"], "a=1");
    assert_eq!(env["TRACEPARENT"], answered_traceparent(&headers));
    // The record is written behind the answer.
    let id = body["executionId"].as_str().unwrap();
    let record = server.wait_terminal(id, WAIT).await;
    assert_eq!(record["traceparent"], env["TRACEPARENT"]);
    assert_eq!(record["traceId"], TRACE);
}

/// Polls until the tree below `id` has `count` finished executions; answers their ids.
async fn chain_ids(server: &Server, id: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, tree) = send(
            server,
            Method::GET,
            &format!("/v1/executions/{id}/chain"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{tree}");
        let mut ids = Vec::new();
        let mut pending = vec![&tree];
        while let Some(node) = pending.pop() {
            let done = !matches!(
                node["status"].as_str(),
                Some("queued" | "starting" | "running")
            );
            ids.push((node["id"].as_str().unwrap().to_owned(), done));
            pending.extend(node["children"].as_array().into_iter().flatten());
        }
        if ids.len() >= count && ids.iter().all(|(_, done)| *done) {
            return ids.into_iter().map(|(id, _)| id).collect();
        }
        assert!(Instant::now() < deadline, "the chain never settled: {tree}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_chain_a_redrive_and_an_event_fan_out_stay_in_one_trace() {
    let server = Server::start().await;
    let env = |name: &str, extra: Value| stdio_function(name, "python3 env.py", extra);
    // Targets first: a chain must name deployed functions.
    server.deploy(env("third", json!({}))).await;
    server.deploy(env("fourth", json!({}))).await;
    server
        .deploy(env(
            "second",
            json!({"chains": [{"target": "third"}, {"target": "fourth"}]}),
        ))
        .await;
    server
        .deploy(env("first", json!({"chains": [{"target": "second"}]})))
        .await;
    let (status, _, body) = call(&server, "first", "invoke", &[("traceparent", PARENT)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids = chain_ids(&server, body["executionId"].as_str().unwrap(), 4).await;
    let mut spans = BTreeSet::new();
    for id in &ids {
        let record = server.execution(id).await;
        assert_eq!(record["status"], "success", "{record}");
        assert_eq!(record["traceId"], TRACE, "{record}");
        let (trace, span) = fields(&record["traceparent"]);
        assert_eq!(trace, TRACE, "{record}");
        assert_eq!(
            record["output"]["env"]["TRACEPARENT"],
            record["traceparent"]
        );
        spans.insert(span);
    }
    assert_eq!(
        spans.len(),
        4,
        "each execution is a span of its own: {spans:?}"
    );

    // A re-drive of a failure joins the failed execution's trace.
    server
        .deploy(stdio_function("broken", "sh -c 'exit 3'", json!({})))
        .await;
    let (status, _, failed) = call(&server, "broken", "invoke", &[("traceparent", PARENT)]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{failed}");
    let failed = server
        .execution(failed["executionId"].as_str().unwrap())
        .await;
    let path = format!("/v1/executions/{}:retry", failed["id"].as_str().unwrap());
    let (status, body) = send(&server, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let again = server
        .wait_terminal(body["executionId"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(again["traceId"], TRACE, "{again}");
    assert_eq!(fields(&again["traceparent"]).0, TRACE);
    assert_ne!(again["traceparent"], failed["traceparent"]);

    // An event: every function it starts joins the publisher's trace, or one new trace.
    server
        .deploy(env(
            "bill",
            json!({"triggers": [{"type": "order.created"}]}),
        ))
        .await;
    server
        .deploy(env(
            "ship",
            json!({"triggers": [{"type": "order.created"}]}),
        ))
        .await;
    let event = json!({"type": "order.created", "data": {}});
    for traceparent in [Some(PARENT), None] {
        let mut request = server.request(Method::POST, "/v1/events").json(&event);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let (status, _, body) = server.call(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let mut traces = BTreeSet::new();
        for started in body["executions"].as_array().unwrap() {
            let id = started["executionId"].as_str().unwrap();
            let done = server.wait_terminal(id, WAIT).await;
            traces.insert(fields(&done["output"]["env"]["TRACEPARENT"]).0);
        }
        assert_eq!(traces.len(), 1, "{traces:?}");
        if traceparent.is_some() {
            assert!(traces.contains(TRACE), "{traces:?}");
        }
    }
    server.assert_no_instances().await;
}
