//! Result destinations through the real server: signed results POSTed to a receiver
//! this test runs on 127.0.0.1 (so the server runs with --allow-private-destinations),
//! retries with their attempts recorded, the undeliverable list and its re-drive, the
//! address policy, and a pending delivery that outlives a restart.

mod cli_support;
mod receiver_support;
mod support;

use cli_support::cli;
use gantry::destinations::sign::hmac_sha256;
use receiver_support::{Received, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{error_code, error_message, stdio_function, Server, ServerOptions};

/// A server that may send to 127.0.0.1, retrying quickly.
fn open_options() -> ServerOptions {
    ServerOptions {
        args: [
            "--allow-private-destinations",
            "--destination-backoff-ms",
            "100",
            "--destination-max-attempts",
            "3",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..ServerOptions::default()
    }
}

/// Asserts the signature headers of `received` verify with `key`.
fn assert_signed(received: &Received, key: &str) {
    let timestamp = received.headers["x-gantry-timestamp"].to_str().unwrap();
    let seconds: i64 = timestamp.parse().expect("a Unix time");
    assert!((chrono::Utc::now().timestamp() - seconds).abs() < 120);
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(&received.body);
    let expected = format!(
        "sha256={}",
        hex::encode(hmac_sha256(key.as_bytes(), &message))
    );
    assert_eq!(
        received.headers["x-gantry-signature"].to_str().unwrap(),
        expected
    );
    assert!(received.headers.contains_key("x-gantry-delivery"));
}

fn json_body(received: &Received) -> Value {
    serde_json::from_slice(&received.body).expect("a JSON body")
}

/// `:enqueue` with an `X-Callback-Url`; answers status and body.
async fn enqueue_with_callback(server: &Server, name: &str, url: &str) -> (StatusCode, Value) {
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, &format!("/v1/functions/{name}:enqueue"))
                .header("x-callback-url", url)
                .json(&json!({"n": 1})),
        )
        .await;
    (status, body)
}

/// Polls execution `id` until each of its deliveries is in a final state.
async fn wait_deliveries_final(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let execution = server.execution(id).await;
        let deliveries = execution["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = !deliveries.is_empty()
            && deliveries
                .iter()
                .all(|d| ["delivered", "failed"].contains(&d["state"].as_str().unwrap_or("")));
        if done {
            return execution;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never ended: {execution}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_arrive_signed_with_the_generated_key_and_a_named_secret() {
    let receiver = Receiver::start().await;
    let server = Server::start_with(open_options()).await;
    let (status, _, _) = server
        .call(
            server
                .request(Method::PUT, "/v1/secrets/hook-key")
                .json(&json!({"value": "shared-hook-key-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let on_success =
        json!({"destinations": {"on_success": {"url": format!("{}/success", receiver.url)}}});
    server
        .deploy(stdio_function("good", "python3 echo.py", on_success))
        .await;
    let on_failure = json!({"destinations": {
        "on_failure": {"url": format!("{}/failure", receiver.url)},
        "secret": "hook-key",
    }});
    server
        .deploy(stdio_function("bad", "sh -c 'exit 3'", on_failure))
        .await;

    let (status, accepted) =
        enqueue_with_callback(&server, "good", &format!("{}/callback", receiver.url)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["executionId"].as_str().unwrap().to_owned();
    let failed_id = server.enqueue("bad", json!({})).await;

    let (_, _, key) = server
        .call(server.request(Method::GET, "/v1/functions/good/destination-key"))
        .await;
    let key = key["key"].as_str().expect("the generated key").to_owned();
    let success = receiver.wait_for("success", 1).await;
    assert_signed(&success[0], &key);
    let result = json_body(&success[0]);
    assert_eq!(result["executionId"], id.as_str());
    assert_eq!(result["function"], "good");
    assert_eq!(result["status"], "success");
    assert_eq!(result["output"], json!({"echo": {"n": 1}}));
    assert_eq!(result["attempt"], 1);
    for field in ["version", "createdAt", "startedAt", "finishedAt", "error"] {
        assert!(result.get(field).is_some(), "{field} missing: {result}");
    }
    let callback = receiver.wait_for("callback", 1).await;
    assert_signed(&callback[0], &key);
    assert_eq!(json_body(&callback[0])["executionId"], id.as_str());

    let failure = receiver.wait_for("failure", 1).await;
    assert_signed(&failure[0], "shared-hook-key-1");
    let result = json_body(&failure[0]);
    assert_eq!(result["executionId"], failed_id.as_str());
    assert_eq!(result["status"], "error");
    assert!(result["error"]["code"].is_string(), "{result}");

    let execution = wait_deliveries_final(&server, &id).await;
    let mut kinds: Vec<&str> = execution["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["callback", "on_success"]);
    for delivery in execution["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["state"], "delivered");
        assert_eq!(delivery["attempts"][0]["statusCode"], 200);
    }
    // Only admins read the key.
    let (status, _, _) = server
        .call(
            server
                .client
                .get(format!("{}/v1/functions/good/destination-key", server.url)),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_recorded_listed_and_redriven() {
    let receiver = Receiver::start().await;
    receiver.answer("flaky", &[500, 500]);
    receiver.always("down", 503);
    receiver.always("gone", 404);
    let server = Server::start_with(open_options()).await;
    server
        .deploy(stdio_function("job", "python3 echo.py", json!({})))
        .await;

    let mut ids = Vec::new();
    for path in ["flaky", "down", "gone"] {
        let (status, body) =
            enqueue_with_callback(&server, "job", &format!("{}/{path}", receiver.url)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["executionId"].as_str().unwrap().to_owned());
    }

    let flaky = wait_deliveries_final(&server, &ids[0]).await;
    let delivery = &flaky["deliveries"][0];
    assert_eq!(delivery["state"], "delivered", "{flaky}");
    let codes: Vec<u64> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(receiver.received("flaky").len(), 3);

    let down = wait_deliveries_final(&server, &ids[1]).await;
    assert_eq!(down["deliveries"][0]["state"], "failed");
    assert_eq!(
        down["deliveries"][0]["attempts"].as_array().unwrap().len(),
        3
    );
    // A 404 is final at once.
    let gone = wait_deliveries_final(&server, &ids[2]).await;
    assert_eq!(gone["deliveries"][0]["state"], "failed");
    assert_eq!(
        gone["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1
    );
    assert_eq!(receiver.received("gone").len(), 1);

    let (status, _, page) = server
        .call(server.request(Method::GET, "/v1/deliveries?state=failed"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let failed: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["executionId"].as_str().unwrap())
        .collect();
    assert_eq!(failed, [ids[1].as_str(), ids[2].as_str()]);

    // The receiver is back: a re-drive delivers.
    receiver.always("down", 200);
    let delivery_id = page["deliveries"][0]["id"].as_str().unwrap();
    let path = format!("/v1/deliveries/{delivery_id}:redrive");
    let (status, _, redriven) = server.call(server.request(Method::POST, &path)).await;
    assert_eq!(status, StatusCode::OK, "{redriven}");
    assert_eq!(redriven["state"], "pending");
    let (status, _, again) = server.call(server.request(Method::POST, &path)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let down = wait_deliveries_final(&server, &ids[1]).await;
    assert_eq!(down["deliveries"][0]["state"], "delivered", "{down}");
    assert_eq!(
        down["deliveries"][0]["attempts"].as_array().unwrap().len(),
        4
    );
    let (_, _, page) = server
        .call(server.request(Method::GET, "/v1/deliveries?state=failed"))
        .await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1);
    let (status, _, bad) = server
        .call(server.request(Method::GET, "/v1/deliveries?state=lost"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&bad).contains("state"), "{bad}");
}

/// A listing query the server cannot read at all answers in the usual JSON error shape
/// (it used to be axum's plain-text rejection).
#[tokio::test]
async fn an_unreadable_listing_query_is_a_json_400() {
    let server = Server::start().await;
    for query in ["limit=-1", "limit=x", "cursor=not-a-uuid"] {
        let (status, headers, bad) = server
            .call(server.request(Method::GET, &format!("/v1/deliveries?{query}")))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {bad}");
        assert_eq!(headers["content-type"], "application/json", "{query}");
        assert_eq!(error_code(&bad), "BAD_REQUEST", "{query}: {bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_and_malformed_destinations_are_refused() {
    let server = Server::start().await;
    let local = json!({"destinations": {"on_success": {"url": "http://127.0.0.1:9/hook"}}});
    let (status, body) = server
        .try_deploy(stdio_function("local", "python3 echo.py", local))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let text = body.to_string();
    assert!(text.contains("destinations.on_success.url"), "{text}");
    assert!(text.contains("--allow-private-destinations"), "{text}");
    for (url, field) in [
        ("ftp://example.com/hook", "destinations.on_failure.url"),
        (
            "http://user:pass@example.com/hook",
            "destinations.on_failure.url",
        ),
    ] {
        let manifest = json!({"destinations": {"on_failure": {"url": url}}});
        let (status, body) = server
            .try_deploy(stdio_function("odd", "python3 echo.py", manifest))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(body.to_string().contains(field), "{body}");
    }
    let unknown_secret =
        json!({"destinations": {"on_failure": {"url": "http://example.com/"}, "secret": "nope"}});
    let (status, body) = server
        .try_deploy(stdio_function("nokey", "python3 echo.py", unknown_secret))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("destinations.secret"), "{body}");

    server
        .deploy(stdio_function("plain", "python3 echo.py", json!({})))
        .await;
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "ftp://example.com/",
        "http://user:pass@example.com/",
        "not a url",
    ] {
        let (status, body) = enqueue_with_callback(&server, "plain", url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(error_message(&body).contains("X-Callback-Url"), "{body}");
    }
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/plain:invoke")
                .header("x-callback-url", "http://example.com/")
                .json(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_outlives_a_restart() {
    // A port nothing listens on yet.
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut options = open_options();
    // Slow retries, so the delivery is still pending when the server is killed.
    options.args[2] = "1000".to_owned();
    options.args[4] = "8".to_owned();
    let mut server = Server::start_with(options.clone()).await;
    server
        .deploy(stdio_function("job", "python3 echo.py", json!({})))
        .await;
    let (status, body) =
        enqueue_with_callback(&server, "job", &format!("http://{address}/late")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["executionId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let execution = server.execution(&id).await;
        let attempts = execution["deliveries"][0]["attempts"]
            .as_array()
            .map_or(0, Vec::len);
        if attempts > 0 {
            assert_eq!(
                execution["deliveries"][0]["state"], "pending",
                "{execution}"
            );
            assert!(execution["deliveries"][0]["attempts"][0]["error"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "no attempt: {execution}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill9().await;

    let receiver = Receiver::start_on(address).await;
    let server = server.restart(options).await;
    let got = receiver.wait_for("late", 1).await;
    assert_eq!(json_body(&got[0])["executionId"], id.as_str());
    let execution = wait_deliveries_final(&server, &id).await;
    assert_eq!(
        execution["deliveries"][0]["state"], "delivered",
        "{execution}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_destinations_deliveries_and_the_key() {
    let receiver = Receiver::start().await;
    receiver.always("no", 410);
    let server = Server::start_with(open_options()).await;
    let manifest = json!({"destinations": {"on_success": {"url": format!("{}/no", receiver.url)}}});
    server
        .deploy(stdio_function("shown", "python3 echo.py", manifest))
        .await;
    let got = cli(&server, ["fn", "get", "shown"]).ok().await;
    assert!(
        got.stdout
            .contains(&format!("on_success: {}/no", receiver.url)),
        "{got}"
    );
    assert!(
        got.stdout.contains("gantry fn destination-key shown"),
        "{got}"
    );

    let callback = format!("{}/yes", receiver.url);
    let id = cli(
        &server,
        [
            "fn",
            "enqueue",
            "shown",
            "-d",
            "{}",
            "--callback-url",
            &callback,
        ],
    )
    .ok()
    .await
    .stdout
    .split_whitespace()
    .find(|word| uuid::Uuid::parse_str(word).is_ok())
    .expect("the execution id")
    .to_owned();
    let received = receiver.wait_for("yes", 1).await;
    let key = cli(&server, ["fn", "destination-key", "shown"]).ok().await;
    assert_signed(&received[0], key.stdout.trim());
    wait_deliveries_final(&server, &id).await;

    let shown = cli(&server, ["exec", "get", &id]).ok().await;
    assert!(shown.stdout.contains("deliveries:"), "{shown}");
    assert!(
        shown.stdout.contains(&format!(
            "on_success {}/no failed (1 attempts)",
            receiver.url
        )),
        "{shown}"
    );
    assert!(shown.stdout.contains("HTTP 410"), "{shown}");
    assert!(
        shown
            .stdout
            .contains(&format!("callback {callback} delivered")),
        "{shown}"
    );
    let listed = cli(&server, ["exec", "deliveries"]).ok().await;
    assert!(listed.stdout.contains(&id), "{listed}");
    assert!(!listed.stdout.contains("callback"), "{listed}");
}
