//! The shortest path through the server: deploy, invoke, read back.

mod support;

use serde_json::json;
use support::{stdio_function, Server};

#[tokio::test]
async fn deploy_invoke_and_read_back() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let (status, body) = server.invoke("echo", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({"echo": {"n": 1}}));
    let id = body["executionId"].as_str().unwrap();
    let execution = server.execution(id).await;
    assert_eq!(execution["status"], "success");
    server.assert_no_instances().await;
}
