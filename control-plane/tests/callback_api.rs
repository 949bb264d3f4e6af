//! The watchdog's callback, `POST /v1/internal/executions/{id}:complete`: only the
//! execution's own token is accepted, the first report wins, and a repeated or late
//! report is answered `{"applied": false}` without changing anything.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{callback_token, error_code, stdio_function, Server};

const WAIT: Duration = Duration::from_secs(30);

async fn report(
    server: &Server,
    id: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = server
        .client
        .post(format!(
            "{}/v1/internal/executions/{id}:complete",
            server.url
        ))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let (status, _, body) = server.call(request).await;
    (status, body)
}

/// Enqueues `sleep 30` and answers its id and callback token once it runs.
async fn running(server: &Server) -> (String, String) {
    let id = server.enqueue("slow", json!(null)).await;
    server.wait_status(&id, "running", WAIT).await;
    // Read from /proc, which can lag the status by a moment on a loaded machine.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(token) = callback_token(&id) {
            return (id, token);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no watchdog of {id} holds a CALLBACK_TOKEN: {:?}",
            server.execution_processes(&id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn slow_server() -> Server {
    let server = Server::start().await;
    server
        .deploy(stdio_function("slow", "sleep 30", json!({})))
        .await;
    server
}

fn success(from: &str) -> Value {
    json!({"success": true, "output": {"from": from}})
}

#[tokio::test]
async fn missing_wrong_and_foreign_tokens_are_refused() {
    let server = slow_server().await;
    let (id, token) = running(&server).await;
    let (other, other_token) = running(&server).await;
    assert_ne!(token, other_token, "each execution has its own token");

    let (status, body) = report(&server, &id, None, &success("anyone")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "UNAUTHORIZED");
    let (status, body) = report(&server, &id, Some("0000"), &success("guess")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "FORBIDDEN");
    // One execution's token does not complete another.
    let (status, body) = report(&server, &other, Some(&token), &success("neighbour")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let unknown = "0190a2b4-7c3e-7000-8000-000000000000";
    let (status, body) = report(&server, unknown, Some(&token), &success("nobody")).await;
    assert!(
        [StatusCode::NOT_FOUND, StatusCode::FORBIDDEN].contains(&status),
        "{status}: {body}"
    );
    let (status, body) = report(&server, "not-an-id", Some(&token), &success("x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = server
        .call(
            server
                .client
                .post(format!("{}/v1/internal/executions/{id}:finish", server.url))
                .bearer_auth(&token)
                .json(&success("x")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = report(&server, &id, Some(&token), &json!({"output": 1})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a report without `success`: {body}"
    );
    let (status, body) = report(&server, &id, None, &json!({"output": 1})).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "authentication comes first: {body}"
    );

    for id in [&id, &other] {
        let record = server.execution(id).await;
        assert_eq!(record["status"], "running", "nothing was applied: {record}");
        let (status, _, _) = server
            .call(server.request(
                reqwest::Method::POST,
                &format!("/v1/executions/{id}:cancel"),
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Once finished, a wrong token is still refused.
    let (status, body) = report(&server, &id, Some(&other_token), &success("late")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn the_first_report_wins_and_a_repeat_is_not_applied() {
    let server = slow_server().await;
    let (id, token) = running(&server).await;
    let (status, body) = report(&server, &id, Some(&token), &success("first")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"applied": true}));
    let done = server.execution(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"from": "first"}));

    // A repeat is answered at once, while the instance is still being let go (the control
    // plane grants it seconds to exit after its report), not held until it is gone.
    let failure = json!({"success": false, "error": {"code": "FUNCTION_ERROR", "message": "late"}});
    let (status, body) = report(&server, &id, Some(&token), &failure).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"applied": false}));
    assert!(
        !server.instance_processes().is_empty(),
        "the repeat was answered only after the instance was stopped"
    );
    server.assert_no_instances().await;

    // After the instance is gone, a late report is not applied either.
    let (status, body) = report(&server, &id, Some(&token), &success("later")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"applied": false}));
    let record = server.execution(&id).await;
    assert_eq!(record["status"], "success");
    assert_eq!(record["output"], json!({"from": "first"}));
    assert_eq!(record["error"], Value::Null);
    assert_eq!(
        record["finishedAt"], done["finishedAt"],
        "the record never changed"
    );
}

#[tokio::test]
async fn a_report_after_a_cancel_changes_nothing() {
    let server = slow_server().await;
    let (id, token) = running(&server).await;
    let (status, _, body) = server
        .call(server.request(
            reqwest::Method::POST,
            &format!("/v1/executions/{id}:cancel"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = report(&server, &id, Some(&token), &success("too late")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"applied": false}));
    let record = server.execution(&id).await;
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["output"], Value::Null);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_reported_failure_and_timeout_keep_their_codes() {
    let server = slow_server().await;
    let (id, token) = running(&server).await;
    let failure = json!({
        "success": false,
        "error": {"code": "SOMETHING_NEW", "message": "a code from a newer watchdog"},
        "exit_code": 9,
    });
    let (status, body) = report(&server, &id, Some(&token), &failure).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"applied": true}));
    let record = server.wait_terminal(&id, WAIT).await;
    assert_eq!(record["status"], "error");
    assert_eq!(record["error"]["code"], "SOMETHING_NEW");
    assert_eq!(record["exitCode"], 9);

    let (id, token) = running(&server).await;
    let timeout = json!({"success": false, "error": {"code": "TIMEOUT", "message": "too slow"}});
    let (status, _) = report(&server, &id, Some(&token), &timeout).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.execution(&id).await["status"], "timeout");
    server.assert_no_instances().await;
}
