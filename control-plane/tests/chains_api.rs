//! Chains and events with real functions: a three-step pipeline with field and
//! template mappings, every condition kind, the depth cap that stops a cycle, a chain
//! firing once for a callback delivered twice, and event fan-out.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{executable_fixture, send, stdio_function, Server, ServerOptions};
use tokio::time::Instant;

/// `GET /v1/executions/{id}/chain`.
async fn tree(server: &Server, id: &str) -> Value {
    let (status, body) = send(
        server,
        Method::GET,
        &format!("/v1/executions/{id}/chain"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Every node of a tree, depth first.
fn nodes(tree: &Value) -> Vec<&Value> {
    let mut out = vec![tree];
    for child in tree["children"].as_array().into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

fn finished(node: &Value) -> bool {
    !matches!(
        node["status"].as_str(),
        Some("queued" | "starting" | "running")
    )
}

/// Polls the tree of `id` until it has `count` nodes, all finished.
async fn settled_tree(server: &Server, id: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tree = tree(server, id).await;
        let all = nodes(&tree);
        if all.len() >= count && all.iter().all(|node| finished(node)) {
            return tree;
        }
        assert!(Instant::now() < deadline, "the chain never settled: {tree}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn echo(name: &str, extra: Value) -> Value {
    stdio_function(name, "python3 echo.py", extra)
}

#[tokio::test]
async fn a_three_step_pipeline_maps_fields_and_templates() {
    let server = Server::start().await;
    server.deploy(echo("report", json!({}))).await;
    let template = json!({"template": {
        "text": "order {{output.echo.order.id}} for {{output.echo.order.customer}}",
        "id": "{{output.echo.order.id}}",
        "order": "{{output.echo.order}}",
    }});
    server
        .deploy(echo(
            "enrich",
            json!({"chains": [{"target": "report", "input": template}]}),
        ))
        .await;
    let fields = json!({"fields": {"order.id": "output.echo.id", "order.customer": "input.who"}});
    server
        .deploy(echo(
            "intake",
            json!({"chains": [{"target": "enrich", "input": fields}]}),
        ))
        .await;
    let (status, body) = server
        .invoke("intake", json!({"id": 7, "who": "ada"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let root = body["executionId"].as_str().unwrap().to_owned();
    let tree = settled_tree(&server, &root, 3).await;
    let enrich = &tree["children"][0];
    let report = &enrich["children"][0];
    assert_eq!(enrich["function"], "enrich", "{tree}");
    assert_eq!(report["function"], "report", "{tree}");
    assert_eq!(
        (enrich["depth"].clone(), report["depth"].clone()),
        (json!(1), json!(2))
    );
    let enrich = server.execution(enrich["id"].as_str().unwrap()).await;
    assert_eq!(
        enrich["input"],
        json!({"order": {"id": 7, "customer": "ada"}})
    );
    assert_eq!(enrich["parentId"], root.as_str());
    assert_eq!(enrich["rootId"], root.as_str());
    assert_eq!(enrich["trigger"], "chain");
    let report = server.execution(report["id"].as_str().unwrap()).await;
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        report["input"],
        json!({"text": "order 7 for ada", "id": 7, "order": {"id": 7, "customer": "ada"}}),
        "a whole-string placeholder keeps its JSON type"
    );
    assert_eq!(report["rootId"], root.as_str());
    assert_eq!(
        report["traceId"], enrich["traceId"],
        "the trace id follows the chain"
    );
}

#[tokio::test]
async fn each_condition_kind_decides_which_chains_fire() {
    let server = Server::start().await;
    for target in ["ok", "failed", "late", "every", "big", "composite"] {
        server.deploy(echo(target, json!({}))).await;
    }
    let chains = json!([
        {"target": "ok", "condition": "on_success"},
        {"target": "failed", "condition": "on_failure"},
        {"target": "late", "condition": "on_timeout"},
        {"target": "every", "condition": "always"},
        {"target": "big", "condition": {"path": "output.echo.n", "op": "gt", "value": 5}},
        {"target": "composite", "condition": {"all": [
            {"path": "status", "op": "in", "value": ["success"]},
            {"not": {"path": "input.tags", "op": "contains", "value": "quiet"}},
            {"any": [{"path": "input.n", "op": "lte", "value": 1}, {"path": "input.force", "op": "exists"}]}
        ]}},
    ]);
    let mut manifest = stdio_function(
        "decider",
        "python3",
        json!({"chains": chains, "resources": {"timeout_ms": 500}}),
    );
    manifest["command"] = json!(["python3", "-c", DECIDER]);
    server.deploy(manifest).await;
    let cases = [
        (json!({"n": 10}), vec!["big", "every", "ok"]),
        (json!({"n": 1}), vec!["composite", "every", "ok"]),
        (json!({"n": 1, "tags": ["quiet"]}), vec!["every", "ok"]),
        (
            json!({"n": 3, "force": true}),
            vec!["composite", "every", "ok"],
        ),
        (json!({"fail": true}), vec!["every", "failed"]),
        // A timeout is a failure too: on_failure fires with on_timeout.
        (json!({"hang": true}), vec!["every", "failed", "late"]),
    ];
    for (input, expected) in cases {
        let (_, body) = server.invoke("decider", input.clone()).await;
        let root = body["executionId"].as_str().unwrap().to_owned();
        let tree = settled_tree(&server, &root, expected.len() + 1).await;
        let fired: BTreeSet<&str> = tree["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|child| child["function"].as_str().unwrap())
            .collect();
        let expected: BTreeSet<&str> = expected.into_iter().collect();
        assert_eq!(fired, expected, "input {input}: {tree}");
    }
}

/// The decider: echoes `{"echo": input}`, fails with exit 2 on `fail`, sleeps past its
/// timeout on `hang`.
const DECIDER: &str = r#"
import json, sys, time
event = json.load(sys.stdin)
if event.get("fail"):
    sys.exit(2)
if event.get("hang"):
    time.sleep(5)
print(json.dumps({"echo": event}))
"#;

#[tokio::test]
async fn the_depth_cap_stops_a_chain_that_calls_itself() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--max-chain-depth".into(), "3".into()],
        ..ServerOptions::default()
    })
    .await;
    server.deploy(echo("looper", json!({}))).await;
    let looping = echo(
        "looper",
        json!({"chains": [{"target": "looper", "condition": "always"}]}),
    );
    let (status, body) = send(&server, Method::PUT, "/v1/functions/looper", Some(looping)).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = server.invoke("looper", json!({"n": 0})).await;
    let root = body["executionId"].as_str().unwrap().to_owned();
    let settled = settled_tree(&server, &root, 5).await;
    let all = nodes(&settled);
    assert_eq!(
        all.len(),
        5,
        "depths 0 to 3 ran, depth 4 was refused: {settled}"
    );
    for (depth, node) in all.iter().enumerate() {
        assert_eq!(node["depth"], depth, "{settled}");
    }
    let stopped = all[4];
    assert_eq!(stopped["status"], "error", "{settled}");
    assert_eq!(
        stopped["error"]["code"], "CHAIN_DEPTH_EXCEEDED",
        "{settled}"
    );
    assert!(stopped["children"].as_array().unwrap().is_empty());
    // Nothing more appears later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nodes(&tree(&server, &root).await).len(), 5);
}

#[tokio::test]
async fn a_chain_fires_once_when_the_callback_comes_twice() {
    let dir = support::function_tempdir();
    let fake = executable_fixture("fake-watchdog.sh", dir.path());
    let server = Server::start_with(ServerOptions {
        args: vec!["--watchdog".into(), fake.display().to_string()],
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function(
            "sink",
            "true",
            json!({"env": {"FAKE_MODE": "report75"}}),
        ))
        .await;
    let twice = stdio_function(
        "twice",
        "true",
        json!({"env": {"FAKE_MODE": "twice"}, "chains": [{"target": "sink"}]}),
    );
    server.deploy(twice).await;
    let (status, body) = server.invoke("twice", json!(1)).await;
    assert_eq!(status, 200, "{body}");
    let root = body["executionId"].as_str().unwrap().to_owned();
    settled_tree(&server, &root, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tree = tree(&server, &root).await;
    assert_eq!(
        tree["children"].as_array().unwrap().len(),
        1,
        "one child: {tree}"
    );
}

#[tokio::test]
async fn an_event_starts_every_function_whose_trigger_matches() {
    let server = Server::start().await;
    let on = |kind: &str| json!({"triggers": [{"type": kind}]});
    server.deploy(echo("bill", on("order.created"))).await;
    server.deploy(echo("ship", on("order.created"))).await;
    server
        .deploy(echo(
            "vip",
            json!({"triggers": [{"type": "order.created", "condition": {"path": "data.total", "op": "gte", "value": 100}}]}),
        ))
        .await;
    server.deploy(echo("refund", on("order.refunded"))).await;
    let publish = |total: u64| {
        send(
            &server,
            Method::POST,
            "/v1/events",
            Some(json!({"type": "order.created", "data": {"total": total}})),
        )
    };
    for (total, expected) in [
        (50, vec!["bill", "ship"]),
        (150, vec!["bill", "ship", "vip"]),
    ] {
        let (status, body) = publish(total).await;
        assert_eq!(status, 202, "{body}");
        let started: BTreeSet<&str> = body["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["function"].as_str().unwrap())
            .collect();
        assert_eq!(started, expected.into_iter().collect(), "{body}");
        for started in body["executions"].as_array().unwrap() {
            let id = started["executionId"].as_str().unwrap();
            let done = server.wait_terminal(id, Duration::from_secs(20)).await;
            assert_eq!(done["status"], "success", "{done}");
            assert_eq!(done["trigger"], "event", "{done}");
            assert_eq!(done["output"]["echo"]["total"], total, "{done}");
        }
    }
    let (status, body) = send(
        &server,
        Method::POST,
        "/v1/events",
        Some(json!({"type": "nothing.listens", "data": {}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["executions"], json!([]), "{body}");
    for bad in [json!({"data": 1}), json!({"type": ""}), json!([1])] {
        let (status, body) = send(&server, Method::POST, "/v1/events", Some(bad)).await;
        assert_eq!(status, 400, "{body}");
    }
}
