//! Bad input from a token holder costs little: schemas that loop or explode are refused
//! at deploy naming the place, patterns cannot backtrack, and the server's memory stays
//! bounded while it checks hostile inputs.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{error_message, stdio_function, Server};

/// The server's resident memory, in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn schemas_that_loop_or_explode_are_refused_at_deploy() {
    let server = Server::start().await;
    let cyclic = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
    let mut defs = serde_json::Map::new();
    defs.insert("d0".into(), json!({"type": "string"}));
    for level in 1..=16 {
        let below = format!("#/$defs/d{}", level - 1);
        defs.insert(
            format!("d{level}"),
            json!({"allOf": [{"$ref": below}, {"$ref": below}]}),
        );
    }
    let exploding = json!({"$defs": defs, "$ref": "#/$defs/d16"});
    for (field, schema, expected) in [
        ("input_schema", cyclic.clone(), "reference cycle"),
        ("output_schema", cyclic, "reference cycle"),
        ("input_schema", exploding, "subschemas"),
        (
            "input_schema",
            json!({"$ref": "http://169.254.169.254/schema"}),
            "not local",
        ),
    ] {
        let manifest = stdio_function("looped", "cat", json!({ field: schema }));
        let (status, body) = server.try_deploy(manifest).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = error_message(&body);
        assert!(
            message.contains(field) && message.contains(expected),
            "{message}"
        );
    }
    let (status, _, _) = server
        .call(server.request(reqwest::Method::GET, "/v1/functions/looped"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was deployed");
}

#[tokio::test]
async fn hostile_inputs_are_checked_quickly_in_bounded_memory() {
    let server = Server::start().await;
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}},
        "required": ["name"]
    });
    server
        .deploy(stdio_function(
            "strict",
            "cat",
            json!({"input_schema": schema}),
        ))
        .await;
    let before = rss_kib(&server);
    // Catastrophic for a backtracking engine; the linear one answers at once.
    let evil = format!("{}!", "a".repeat(50_000));
    for _ in 0..20 {
        let (status, body) = server.invoke("strict", json!({"name": evil})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error_message(&body).contains("/name"), "{body}");
    }
    let after = rss_kib(&server);
    assert!(
        after < before + 200 * 1024,
        "the server grew from {before} KiB to {after} KiB"
    );
    let (status, body) = server.invoke("strict", json!({"name": "aaa"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.assert_no_instances().await;
}

/// Lines in `file`: how often the counting fixtures ran.
fn runs(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_failure_is_redriven_once_and_only_into_an_enabled_function() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let count = temp.path().join("runs");
    let flaky = |enabled: bool| {
        stdio_function(
            "flaky",
            "python3 flaky.py",
            json!({"env": {"COUNT_FILE": count.to_str().unwrap(), "FAIL_TIMES": "2"}, "enabled": enabled}),
        )
    };
    server.deploy(flaky(true)).await;
    let (status, first) = server.invoke("flaky", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{first}");
    let (_, second) = server.invoke("flaky", json!({"n": 2})).await;
    let retry = |id: &str| {
        server.call(server.request(reqwest::Method::POST, &format!("/v1/executions/{id}:retry")))
    };
    let id = first["executionId"].as_str().unwrap();
    let (status, _, redrive) = retry(id).await;
    assert!(status.is_success(), "{redrive}");
    let redriven = redrive["executionId"]
        .as_str()
        .or(redrive["id"].as_str())
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let (status, _, body) = retry(id).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "ALREADY_REDRIVEN", "{body}");
        assert_eq!(
            body["error"]["details"]["redrivenBy"],
            redriven.as_str(),
            "{body}"
        );
    }
    server
        .wait_terminal(&redriven, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(runs(&count), 3, "two calls and one re-drive ran");
    assert_eq!(server.execution(id).await["redrivenBy"], redriven.as_str());

    // Disabled, a function takes no re-drive either.
    let (status, _, _) = server
        .call(
            server
                .request(reqwest::Method::PUT, "/v1/functions/flaky")
                .json(&flaky(false)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = retry(second["executionId"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "FUNCTION_DISABLED", "{body}");
    assert_eq!(runs(&count), 3, "nothing more ran");
}

#[tokio::test]
async fn chains_are_capped_and_never_overflow_their_targets() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("sink", "cat", json!({})))
        .await;
    let many: Vec<serde_json::Value> = (0..17).map(|_| json!({"target": "sink"})).collect();
    let (status, body) = server
        .try_deploy(stdio_function("wide", "cat", json!({"chains": many})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("--max-chains"), "{body}");

    // A child whose target is disabled, or whose queue is full, is recorded failed.
    server
        .deploy(stdio_function("off", "cat", json!({"enabled": false})))
        .await;
    server
        .deploy(stdio_function(
            "busy",
            "sleep 30",
            json!({"concurrency": {"max_in_flight": 1, "max_queue": 0}}),
        ))
        .await;
    let blocker = server.enqueue("busy", json!(null)).await;
    server
        .wait_status(&blocker, "running", std::time::Duration::from_secs(30))
        .await;
    server
        .deploy(stdio_function(
            "parent",
            "cat",
            json!({"chains": [{"target": "off"}, {"target": "busy"}, {"target": "sink"}]}),
        ))
        .await;
    let (status, body) = server.invoke("parent", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["executionId"].as_str().unwrap();
    let mut codes = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, _, tree) = server
            .call(server.request(reqwest::Method::GET, &format!("/v1/executions/{id}/chain")))
            .await;
        assert_eq!(status, StatusCode::OK, "{tree}");
        codes.clear();
        for child in tree["children"].as_array().unwrap() {
            codes.insert(
                child["function"].as_str().unwrap().to_owned(),
                (child["status"].clone(), child["error"]["code"].clone()),
            );
        }
        if codes
            .get("sink")
            .is_some_and(|(status, _)| status == "success")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tree}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(codes["off"], (json!("error"), json!("FUNCTION_DISABLED")));
    assert_eq!(codes["busy"], (json!("error"), json!("QUEUE_FULL")));
}

#[tokio::test]
async fn a_chain_tree_comes_in_pages() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("leaf", "cat", json!({})))
        .await;
    let chains: Vec<serde_json::Value> = (0..5).map(|_| json!({"target": "leaf"})).collect();
    server
        .deploy(stdio_function("fan", "cat", json!({"chains": chains})))
        .await;
    let (_, body) = server.invoke("fan", json!(1)).await;
    let id = body["executionId"].as_str().unwrap().to_owned();
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/executions/{id}/chain?limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, _, page) = server
            .call(server.request(reqwest::Method::GET, &path))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["id"], id.as_str());
        pages += 1;
        for child in page["children"].as_array().unwrap() {
            assert_eq!(
                child["parentId"].as_str().or(Some(id.as_str())),
                Some(id.as_str())
            );
            seen.insert(child["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every child once");
    assert!(pages >= 3, "{pages} pages");
    let (status, _, body) = server
        .call(server.request(
            reqwest::Method::GET,
            &format!("/v1/executions/{id}/chain?limit=0"),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_result_as_large_as_the_largest_output_gets_through() {
    // Requests are small here; results may be as large as outputs are allowed to be.
    let server = Server::start_with(support::ServerOptions {
        args: vec!["--max-body-bytes".into(), "65536".into()],
        ..Default::default()
    })
    .await;
    let big = r#"python3 -c 'import json,sys; sys.stdin.read(); print(json.dumps({"blob": "y" * 3000000}))'"#;
    server.deploy(stdio_function("big", big, json!({}))).await;
    let (status, body) = server.invoke("big", json!(null)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        &body.to_string()[..300.min(body.to_string().len())]
    );
    assert_eq!(
        body["output"]["blob"].as_str().map(str::len),
        Some(3_000_000)
    );
    // The watchdog's output limit is the server's, not a manifest's.
    let (status, body) = server
        .try_deploy(stdio_function(
            "sneaky",
            "cat",
            json!({"env": {"MAX_OUTPUT_BYTES": "999999999"}}),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("MAX_OUTPUT_BYTES"), "{body}");
}

#[tokio::test]
async fn listings_answer_payloads_only_when_asked() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let (status, _) = server
        .invoke("echo", json!({"secret-ish": "x".repeat(1000)}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, bare) = server.list_executions(&[]).await;
    assert_eq!(status, StatusCode::OK);
    let first = &bare["executions"][0];
    assert!(
        first.get("input").is_none() && first.get("output").is_none(),
        "{first}"
    );
    assert_eq!(first["status"], "success");
    let (_, full) = server.list_executions(&[("include", "input,output")]).await;
    let first = &full["executions"][0];
    assert_eq!(
        first["input"]["secret-ish"].as_str().map(str::len),
        Some(1000)
    );
    assert!(first["output"].is_object(), "{first}");
    let (_, only_output) = server.list_executions(&[("include", "output")]).await;
    assert!(only_output["executions"][0].get("input").is_none());
    let (status, body) = server.list_executions(&[("include", "everything")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_storm_of_concurrent_redrives_starts_one_run() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let count = temp.path().join("runs");
    server
        .deploy(stdio_function(
            "fails",
            "python3 flaky.py",
            json!({"env": {"COUNT_FILE": count.to_str().unwrap(), "FAIL_TIMES": "1"}}),
        ))
        .await;
    let (status, failed) = server.invoke("fails", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{failed}");
    let id = failed["executionId"].as_str().unwrap();
    let calls = (0..32).map(|_| {
        server.call(server.request(reqwest::Method::POST, &format!("/v1/executions/{id}:retry")))
    });
    let answers = futures_util::future::join_all(calls).await;
    let accepted: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| status.is_success())
        .collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _, body)| status.is_success()
                || body["error"]["code"] == "ALREADY_REDRIVEN"),
        "{answers:?}"
    );
    let redriven = accepted[0].2["executionId"].as_str().unwrap();
    server
        .wait_terminal(redriven, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(runs(&count), 2, "the call and one re-drive ran");
}
