//! Connections cannot take the server down: idle and slow ones are closed after the
//! header timeout, past the cap one more is answered 503 and closed, and the results of
//! running executions still arrive while the API's connections are all taken.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{stdio_function, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this test process's open-file limit: it holds many sockets.
fn allow_many_sockets() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Everything the peer sends until it closes (at most `within`); `None` if it stays open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--header-timeout-ms".into(), "500".into()],
        ..ServerOptions::default()
    })
    .await;
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    let mut slow = TcpStream::connect(address(&server)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    for stream in [&mut idle, &mut slow] {
        let closed = read_until_closed(stream, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "the connection stayed open");
    }
    // A keep-alive connection is closed once idle as long, after its answers.
    let mut kept = TcpStream::connect(address(&server)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept, Duration::from_secs(10))
        .await
        .expect("closed after being idle");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn past_the_cap_a_connection_is_refused_and_results_still_arrive() {
    allow_many_sockets();
    let server = Server::start_with(ServerOptions {
        args: vec!["--max-connections".into(), "50".into()],
        ..ServerOptions::default()
    })
    .await;
    let slow = r#"sh -c 'cat >/dev/null; sleep 1; echo "{\"finished\": true}"'"#;
    server.deploy(stdio_function("late", slow, json!({}))).await;
    let id = server.enqueue("late", json!(null)).await;
    // Every API connection is taken by a client that sends nothing.
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(TcpStream::connect(address(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(address(&server)).await.unwrap();
    let answer = read_until_closed(&mut refused, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("TOO_MANY_CONNECTIONS"), "{answer}");
    // Meanwhile the execution finishes: its watchdog calls back on its own listener.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(flood);
    let done = server.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"finished": true}));
}

#[tokio::test]
async fn a_thousand_idle_connections_do_not_stop_invocations() {
    allow_many_sockets();
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(address(&server)).await.unwrap());
    }
    for n in 0..10 {
        let (status, body) = server.invoke("echo", json!({ "n": n })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["output"], json!({"echo": {"n": n}}));
    }
    drop(idle);
    server.assert_no_instances().await;
}
