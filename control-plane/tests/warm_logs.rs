//! Per-execution logs of warm executions: the lines a per-call process writes, and the
//! lines an HTTP runtime writes while one call is in flight (or marks with its
//! execution), go to that execution's log; the rest are the instance's own, readable
//! with `GET /v1/functions/{name}/logs?instance=ID`; `?follow=true` streams every line
//! of every execution of the function.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{send, stdio_function, wait_pool, warm_function, Server};

/// The lines of execution `id`, once it has `count` of them.
async fn lines_of(server: &Server, id: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = send(
            server,
            Method::GET,
            &format!("/v1/executions/{id}/logs"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let lines: Vec<String> = page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| line["line"].as_str().unwrap().to_owned())
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < deadline, "{id} has only {lines:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Invokes `name` with each input at once; answers the execution ids.
async fn invoke_all(server: &Server, name: &str, inputs: Vec<Value>) -> Vec<String> {
    let calls = inputs.into_iter().map(|input| server.invoke(name, input));
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, StatusCode::OK, "{body}");
            body["executionId"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn per_call_processes_of_a_warm_function_log_to_their_own_executions() {
    let server = Server::start().await;
    let mut manifest = stdio_function(
        "chatty",
        r#"sh -c 'echo "first of $EXECUTION_ID" >&2; sleep 0.2; echo "last of $EXECUTION_ID" >&2; cat'"#,
        json!({"warm": {"min_instances": 1, "max_instances": 1, "concurrency_per_instance": 4}}),
    );
    manifest["name"] = json!("chatty");
    server.deploy(manifest).await;
    wait_pool(&server, "chatty", "one idle instance", |p| p["idle"] == 1).await;
    let ids = invoke_all(
        &server,
        "chatty",
        (0..8).map(|n| json!({ "n": n })).collect(),
    )
    .await;
    for id in &ids {
        let lines = lines_of(&server, id, 2).await;
        assert_eq!(lines, [format!("first of {id}"), format!("last of {id}")]);
    }
}

#[tokio::test]
async fn an_http_runtime_logs_to_the_one_call_in_flight_or_the_one_it_marks() {
    let server = Server::start().await;
    for (name, concurrency) in [("single", 1), ("shared", 4)] {
        let warm = json!({"min_instances": 1, "max_instances": 1, "concurrency_per_instance": concurrency});
        server.deploy(warm_function(name, warm, json!({}))).await;
    }
    let single = wait_pool(&server, "single", "one idle instance", |p| p["idle"] == 1).await;

    // One call at a time: every line it writes is its own.
    for n in 0..3 {
        let ids = invoke_all(
            &server,
            "single",
            vec![json!({ "say": format!("call {n}") })],
        )
        .await;
        assert_eq!(lines_of(&server, &ids[0], 1).await, [format!("call {n}")]);
    }
    // Four at a time: the lines the runtime marks reach their executions.
    wait_pool(&server, "shared", "one idle instance", |p| p["idle"] == 1).await;
    let inputs = (0..8)
        .map(|n| json!({"say_marked": format!("marked {n}"), "sleep_ms": 100}))
        .collect();
    let ids = invoke_all(&server, "shared", inputs).await;
    let mut seen = BTreeSet::new();
    for id in &ids {
        let lines = lines_of(&server, id, 1).await;
        assert_eq!(lines.len(), 1, "{id}: {lines:?}");
        seen.insert(lines[0].clone());
    }
    assert_eq!(seen.len(), 8, "each execution got its own line: {seen:?}");

    // The start-up line belongs to no execution: it is the instance's own.
    let instance = single["instances"][0]["id"].as_str().unwrap();
    let path = format!("/v1/functions/single/logs?instance={instance}");
    let (status, page) = send(&server, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let own: Vec<&str> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["line"].as_str().unwrap())
        .collect();
    assert!(
        own.iter()
            .any(|line| line.starts_with("warm_http.py serving")),
        "{page}"
    );
    assert!(!own.iter().any(|line| line.starts_with("call ")), "{page}");
    let (status, body) = send(
        &server,
        Method::GET,
        "/v1/functions/single/logs?instance=nope",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = send(&server, Method::GET, "/v1/functions/single/logs", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn following_a_function_streams_the_lines_of_all_its_executions() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "loud",
            r#"sh -c 'echo "hello from $EXECUTION_ID" >&2; cat'"#,
            json!({}),
        ))
        .await;
    let follow = server
        .request(Method::GET, "/v1/functions/loud/logs?follow=true")
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), StatusCode::OK);
    let mut stream = follow.bytes_stream();
    // The follower is subscribed once its answer has come.
    let ids = invoke_all(&server, "loud", vec![json!(1), json!(2)]).await;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ids
        .iter()
        .all(|id| text.contains(&format!("hello from {id}")))
    {
        let chunk =
            tokio::time::timeout_at(deadline.into(), futures_util::StreamExt::next(&mut stream))
                .await
                .unwrap_or_else(|_| panic!("not every line came: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    for id in &ids {
        assert!(text.contains(&format!(r#""executionId":"{id}""#)), "{text}");
    }
}

#[tokio::test]
async fn the_python_runtime_marks_the_lines_of_calls_running_together() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let handler = temp.path().join("handler.py");
    std::fs::write(
        &handler,
        "import time\n\
         def handle(event, context):\n    \
             print('hello from', context.execution_id)\n    \
             time.sleep(0.2)\n    \
             print('bye from', context.execution_id, flush=True)\n    \
             return event\n",
    )
    .unwrap();
    let runtime = format!(
        "{}/../runtimes/python/runtime.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let manifest = json!({
        "name": "py-warm",
        "mode": "HTTP",
        "command": ["python3", runtime],
        "env": {"HANDLER_PATH": handler.to_str().unwrap()},
        "warm": {"min_instances": 1, "max_instances": 1, "concurrency_per_instance": 4},
    });
    server.deploy(manifest).await;
    wait_pool(&server, "py-warm", "one idle instance", |p| p["idle"] == 1).await;
    let ids = invoke_all(
        &server,
        "py-warm",
        (0..8).map(|n| json!({ "n": n })).collect(),
    )
    .await;
    for id in &ids {
        let lines = lines_of(&server, id, 2).await;
        assert_eq!(
            lines,
            [format!("hello from {id}"), format!("bye from {id}")]
        );
    }
}
