//! Nothing grows for ever: finished executions and their logs are deleted after the
//! server's `--retention` or their function's `retention`, one can be deleted at once,
//! and old function versions go beyond `--keep-versions`; what has not finished stays.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{stdio_function, Server, ServerOptions};

async fn status_of(server: &Server, id: &str) -> StatusCode {
    let (status, _, _) = server
        .call(server.request(Method::GET, &format!("/v1/executions/{id}")))
        .await;
    status
}

#[tokio::test]
async fn finished_executions_go_after_their_retention() {
    let server = Server::start_with(ServerOptions {
        args: ["--retention", "1s", "--prune-interval-ms", "200"]
            .map(String::from)
            .to_vec(),
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function("brief", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function(
            "kept",
            "python3 echo.py",
            json!({"retention": "1h"}),
        ))
        .await;
    server
        .deploy(stdio_function("long", "sleep 30", json!({})))
        .await;
    let (_, brief) = server.invoke("brief", json!(1)).await;
    let brief = brief["executionId"].as_str().unwrap().to_owned();
    let (_, kept) = server.invoke("kept", json!(2)).await;
    let kept = kept["executionId"].as_str().unwrap().to_owned();
    let running = server.enqueue("long", json!(null)).await;
    assert!(
        !server.log_lines(&brief).await.is_empty(),
        "it logged a line"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(&server, &brief).await != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = server
        .call(server.request(Method::GET, &format!("/v1/executions/{brief}/logs")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "its logs went with it");
    assert_eq!(
        status_of(&server, &kept).await,
        StatusCode::OK,
        "its function keeps it 1h"
    );
    assert_eq!(
        status_of(&server, &running).await,
        StatusCode::OK,
        "unfinished ones stay"
    );

    let (status, body) = server
        .try_deploy(stdio_function(
            "bad",
            "cat",
            json!({"retention": "forever"}),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("retention"), "{body}");
}

#[tokio::test]
async fn an_execution_can_be_deleted_once_it_finished() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function("long", "sleep 30", json!({})))
        .await;
    let (_, done) = server.invoke("echo", json!(1)).await;
    let done = done["executionId"].as_str().unwrap().to_owned();
    let running = server.enqueue("long", json!(null)).await;
    let delete =
        |id: &str| server.call(server.request(Method::DELETE, &format!("/v1/executions/{id}")));
    let (status, _, body) = delete(&running).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, _) = delete(&done).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&server, &done).await, StatusCode::NOT_FOUND);
    let (status, _, _) = delete(&done).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn old_versions_go_beyond_the_kept_count() {
    let server = Server::start_with(ServerOptions {
        args: ["--keep-versions", "2", "--prune-interval-ms", "200"]
            .map(String::from)
            .to_vec(),
        ..ServerOptions::default()
    })
    .await;
    for n in 0..5 {
        let manifest = stdio_function("evolving", "cat", json!({"description": format!("v{n}")}));
        let (status, _, body) = if n == 0 {
            server
                .call(
                    server
                        .request(Method::POST, "/v1/functions")
                        .json(&manifest),
                )
                .await
        } else {
            server
                .call(
                    server
                        .request(Method::PUT, "/v1/functions/evolving")
                        .json(&manifest),
                )
                .await
        };
        assert!(status.is_success(), "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = server
            .call(server.request(Method::GET, "/v1/functions/evolving/versions"))
            .await;
        let versions: Vec<u64> = body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        if versions == [4, 5] {
            break;
        }
        assert!(Instant::now() < deadline, "{versions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, current) = server
        .call(server.request(Method::GET, "/v1/functions/evolving"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["version"], 5);
}

/// Executions of `function` the list route answers with `query` added.
async fn listed(server: &Server, query: &str) -> usize {
    let (status, _, body) = server
        .call(server.request(Method::GET, &format!("/v1/executions?limit=1&{query}")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["executions"].as_array().map_or(0, Vec::len)
}

/// Bytes of the database and its write-ahead log.
fn database_bytes(server: &Server) -> u64 {
    ["gantry.db", "gantry.db-wal"]
        .iter()
        .filter_map(|file| std::fs::metadata(server.data_dir.join(file)).ok())
        .map(|meta| meta.len())
        .sum()
}

#[tokio::test]
async fn the_database_stops_growing_under_a_steady_load() {
    let server = Server::start_with(ServerOptions {
        args: ["--retention", "1s", "--prune-interval-ms", "200"]
            .map(String::from)
            .to_vec(),
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function(
            "steady",
            "cat",
            json!({"concurrency": {"max_in_flight": 8, "max_queue": 1000}}),
        ))
        .await;
    // Each round stores about 200 × 2 × 32 KiB (input and output) = 12.5 MiB.
    let payload = json!({"blob": "x".repeat(32 * 1024)});
    let mut sizes = Vec::new();
    for round in 0..6 {
        for _ in 0..200 {
            server.enqueue("steady", payload.clone()).await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while listed(&server, "function=steady").await > 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: its executions were not all run and pruned within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sizes.push(database_bytes(&server));
    }
    eprintln!("database bytes after each round: {sizes:?}");
    let bound = sizes[1] + sizes[1] / 4 + (1 << 20);
    assert!(
        sizes[5] <= bound,
        "the database kept growing round after round: {sizes:?} (bytes)"
    );
    assert!(
        sizes[5] < 6 * 12 * (1 << 20),
        "six rounds would fill at least 72 MiB without retention: {sizes:?}"
    );
}
