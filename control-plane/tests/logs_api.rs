//! `GET /v1/executions/{id}/logs`: captured stdout and stderr, paging with `after`, the
//! per-execution cap, and `?follow=true` as server-sent events.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, stdio_function, Server, ServerOptions, SseEvent};

const WAIT: Duration = Duration::from_secs(30);

fn lines_of<'a>(lines: &'a [Value], stream: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|line| line["stream"] == stream)
        .map(|line| line["line"].as_str().unwrap())
        .collect()
}

fn ticks(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|event| event.event == "log")
        .filter_map(|event| event.data["line"].as_str())
        .filter(|line| line.starts_with("tick "))
        .map(str::to_owned)
        .collect()
}

fn expected_ticks(count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("tick {n}")).collect()
}

/// Asserts ids are increasing sequence numbers matching each event's `seq`.
fn assert_sequenced(events: &[SseEvent]) {
    let mut last = 0;
    for event in events.iter().filter(|event| event.event == "log") {
        let seq = event.data["seq"].as_u64().expect("seq");
        assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
    }
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_in_order() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("streams", "python3 streams.py", json!({})))
        .await;
    let (status, body) = server.invoke("streams", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"done": true}));
    let id = body["executionId"].as_str().unwrap();
    let lines = server.log_lines(id).await;
    assert_eq!(
        lines_of(&lines, "stdout"),
        ["out one", "out two"],
        "{lines:?}"
    );
    let stderr = lines_of(&lines, "stderr");
    let errs: Vec<&&str> = stderr.iter().filter(|l| l.starts_with("err ")).collect();
    assert_eq!(errs, [&"err one", &"err two"], "{lines:?}");
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq counts from 1"
    );
    assert!(lines.iter().all(|l| l["time"].is_string()));
    assert!(
        !lines.iter().any(|l| l["line"] == "{\"done\": true}"),
        "the result is not a log line: {lines:?}"
    );

    let (status, _, page) = server
        .call(server.request(Method::GET, &format!("/v1/executions/{id}/logs?after=2")))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["executionId"], id);
    let after: Vec<u64> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(after, seqs[2..].to_vec());
    let (status, _, body) = server
        .call(server.request(Method::GET, &format!("/v1/executions/{id}/logs?after=x")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "BAD_REQUEST");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn follow_streams_lines_while_the_function_runs_then_ends() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "ticker",
            "python3 ticker.py 10 0.15",
            json!({}),
        ))
        .await;
    let id = server.enqueue("ticker", json!(null)).await;
    let mut stream = server.follow_logs(&id).await;
    let first = loop {
        let event = stream.next_event(WAIT).await.expect("a first event");
        if event.event == "log" && event.data["line"] == "tick 1" {
            break event;
        }
        assert_eq!(event.event, "log", "{event:?}");
    };
    let status = server.execution(&id).await["status"].clone();
    assert_eq!(status, "running", "the first line arrived while it ran");
    let mut events = vec![first];
    events.extend(stream.collect(WAIT).await);
    let end = events.last().expect("events");
    assert_eq!(end.event, "end", "{events:?}");
    assert_eq!(end.data, json!({"status": "success"}));
    assert_eq!(events.iter().filter(|e| e.event == "end").count(), 1);
    assert_eq!(
        ticks(&events),
        expected_ticks(10),
        "every line once, in order"
    );
    assert_sequenced(&events);
    server.assert_no_instances().await;

    // Following a finished execution replays its log and ends.
    let replay = server.follow_logs(&id).await.collect(WAIT).await;
    assert_eq!(ticks(&replay), expected_ticks(10));
    assert_eq!(replay.last().unwrap().event, "end");
    assert_eq!(replay.last().unwrap().data, json!({"status": "success"}));
    let stored = server.log_lines(&id).await;
    assert_eq!(
        replay.len(),
        stored.len() + 1,
        "every stored line, then the end"
    );
}

#[tokio::test]
async fn follow_a_queued_execution_waits_for_it_to_start() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "ticker",
            "python3 ticker.py 3 0.5",
            json!({"concurrency": {"max_in_flight": 1}}),
        ))
        .await;
    let first = server.enqueue("ticker", json!(1)).await;
    server.wait_status(&first, "running", WAIT).await;
    let second = server.enqueue("ticker", json!(2)).await;
    assert_eq!(server.execution(&second).await["status"], "queued");
    let mut stream = server.follow_logs(&second).await;
    let event = stream
        .next_event(WAIT)
        .await
        .expect("an event once it runs");
    assert_eq!(event.event, "log", "{event:?}");
    let before = server.execution(&first).await;
    assert_eq!(
        before["status"], "success",
        "it started after the first finished"
    );
    let mut events = vec![event];
    events.extend(stream.collect(WAIT).await);
    assert_eq!(ticks(&events), expected_ticks(3));
    assert_eq!(events.last().unwrap().data, json!({"status": "success"}));
    assert_sequenced(&events);

    // An execution cancelled while queued ends its stream with its status.
    let third = server.enqueue("ticker", json!(3)).await;
    server.wait_status(&third, "running", WAIT).await;
    let fourth = server.enqueue("ticker", json!(4)).await;
    let stream = server.follow_logs(&fourth).await;
    let (status, _, _) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{fourth}:cancel")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = stream.collect(WAIT).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "end");
    assert_eq!(events[0].data, json!({"status": "cancelled"}));
    server.wait_terminal(&third, WAIT).await;
    server.assert_no_instances().await;
}

#[tokio::test]
async fn the_log_of_one_execution_is_capped() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--log-cap-bytes".into(), "2000".into()],
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function(
            "spam",
            "python3 ticker.py 10000 0",
            json!({}),
        ))
        .await;
    let (status, body) = server.invoke("spam", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"ticks": 10000}));
    let id = body["executionId"].as_str().unwrap();
    let lines = server.log_lines(id).await;
    let system: Vec<&Value> = lines.iter().filter(|l| l["stream"] == "system").collect();
    assert_eq!(system.len(), 1, "one truncation note: {system:?}");
    let note = system[0]["line"].as_str().unwrap();
    assert!(
        note.contains("truncated") && note.contains("2000"),
        "{note}"
    );
    assert_eq!(
        lines.last().unwrap()["stream"],
        "system",
        "the note comes last"
    );
    let kept: usize = lines
        .iter()
        .filter(|l| l["stream"] != "system")
        .map(|l| l["line"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 2000, "{kept} bytes kept");
    assert!(kept >= 1000, "the cap is used, not a few lines: {kept}");
    let ticks: Vec<&str> = lines_of(&lines, "stderr")
        .into_iter()
        .filter(|l| l.starts_with("tick "))
        .collect();
    assert_eq!(ticks[0], "tick 1");
    assert!(ticks.len() < 400, "{} lines kept", ticks.len());

    // Following it ends too, with the same lines.
    let events = server.follow_logs(id).await.collect(WAIT).await;
    assert_eq!(events.len(), lines.len() + 1);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_very_long_line_is_kept_in_pieces() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "long",
            "python3 long_line.py 40000",
            json!({}),
        ))
        .await;
    let (status, body) = server.invoke("long", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines = server
        .log_lines(body["executionId"].as_str().unwrap())
        .await;
    let pieces: Vec<&str> = lines_of(&lines, "stderr")
        .into_iter()
        .filter(|line| !line.is_empty() && line.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(pieces.len() >= 2, "split into pieces: {}", pieces.len());
    assert!(pieces.iter().all(|piece| piece.len() <= 16 * 1024));
    let whole = pieces.concat();
    let expected = "0123456789".repeat(4000);
    assert_eq!(whole, expected, "nothing lost or reordered");
    server.assert_no_instances().await;
}
