//! `gantry serve --database-url`: the server keeps its state in PostgreSQL (a server the
//! test starts), serves calls, and after a SIGKILL a new start on the same database
//! finishes every enqueued execution once. A URL it cannot use stops the start with a
//! message naming the server, never the password.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::postgres::TestPostgres;
use support::{serve_exits, stdio_function, Server, ServerOptions};

/// Executions enqueued before the crash.
const ENQUEUED: usize = 12;

fn on_database(url: &str) -> ServerOptions {
    ServerOptions {
        env: vec![("GANTRY_DATABASE_URL".into(), url.into())],
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn serve_on_postgres_finishes_each_execution_once_across_a_kill9() {
    let url = TestPostgres::shared().create_database().await;
    let mut server = Server::start_with(on_database(&url)).await;
    assert!(
        server.stderr().contains("store PostgreSQL on 127.0.0.1:"),
        "{}",
        server.stderr()
    );
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    // One at a time and slow enough that most wait in the queue when the server dies.
    server
        .deploy(stdio_function(
            "counted",
            r#"sh -c 'sleep 0.2; echo "$EXECUTION_ID" >> "$COUNT_FILE"; cat'"#,
            json!({
                "env": {"COUNT_FILE": runs.to_str().unwrap()},
                "concurrency": {"max_in_flight": 1},
            }),
        ))
        .await;
    let (status, answer) = server.invoke("counted", json!({"call": 0})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["output"], json!({"call": 0}), "{answer}");
    let mut ids = Vec::new();
    for n in 0..ENQUEUED {
        ids.push(server.enqueue("counted", json!({ "n": n })).await);
    }
    // 12 runs of 0.2 s one at a time: the last ones are still waiting at the crash,
    // so only the new start can finish them.
    let last = server.execution(ids.last().unwrap()).await;
    assert_eq!(last["status"], "queued", "{last}");
    server.kill9().await;

    let mut restarted = server.restart(on_database(&url)).await;
    let (status, _, body) = restarted
        .call(restarted.request(Method::GET, "/readyz"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended: BTreeMap<String, String> = restarted
        .wait_all_terminal(&ids, Duration::from_secs(120))
        .await
        .into_iter()
        .map(|(id, record)| (id, record["status"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let counted = support::count_lines(&runs);
    let twice: Vec<_> = counted.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "executions that ran twice: {twice:?}");
    for (id, status) in &ended {
        if status == "success" {
            assert_eq!(counted.get(id), Some(&1), "{id} succeeded once");
        } else {
            // Only the one running at the crash may have ended otherwise.
            let record = restarted.execution(id).await;
            assert_eq!(
                record["error"]["code"], "CONTROL_PLANE_RESTARTED",
                "{record}"
            );
        }
    }
    let failed = ended.values().filter(|status| *status != "success").count();
    assert!(failed <= 1, "at most max_in_flight were running: {failed}");
    // The listing reads the same database: every execution, the first call's included.
    let (status, body) = restarted
        .list_executions(&[("function", "counted"), ("limit", "100")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["executions"].as_array().map(Vec::len),
        Some(ENQUEUED + 1)
    );
    restarted.stop().await;
}

#[tokio::test]
async fn an_unusable_database_url_stops_the_start_naming_the_server_not_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://gantry:hunter2@127.0.0.1:{port}/jobs");
    let (code, stderr) = serve_exits(&["--database-url", &url], &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}, database jobs")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (code, stderr) = serve_exits(
        &[],
        &[("GANTRY_DATABASE_URL", "postgres://h/db?sslmode=maybe")],
    )
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("GANTRY_DATABASE_URL"), "{stderr}");

    // TLS asked of a server without it: refused at once.
    let plain = TestPostgres::shared().create_database().await;
    let (code, stderr) = serve_exits(
        &["--database-url", &format!("{plain}?sslmode=require")],
        &[],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
}
