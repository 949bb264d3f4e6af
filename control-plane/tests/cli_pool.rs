//! End-to-end tests of the CLI side of warm pools against a real `gantry serve`:
//! `gantry fn scale` (its message, its usage and server errors) and the pool section of
//! `gantry fn get`.

mod cli_support;
mod support;

use std::time::{Duration, Instant};

use cli_support::{cli, gantry, Output};
use serde_json::json;
use support::{stdio_function, Server};

/// How long a pool may take to reach the wanted instances (each start runs a watchdog
/// and waits for its health check).
const POOL_DEADLINE: Duration = Duration::from_secs(60);

/// The rows of the instance table `fn get` prints after its `pool:` line, split on runs
/// of whitespace (ID, VERSION, STATE, IN FLIGHT, INVOCATIONS, STARTED, LAST USED).
fn instance_rows(out: &Output) -> Vec<Vec<&str>> {
    out.stdout
        .lines()
        .skip_while(|line| !line.starts_with("ID "))
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect()
}

/// A warm STDIO function (`echo.py`) keeping `min` instances.
fn warm_function(name: &str, min: u32) -> serde_json::Value {
    stdio_function(
        name,
        "python3 echo.py",
        json!({"warm": {"min_instances": min}}),
    )
}

#[tokio::test]
async fn scale_without_limits_is_a_usage_error() {
    // Usage errors never reach a server: none is running at this address.
    for args in [
        &["fn", "scale", "f"][..],
        &["fn", "scale", "f", "--min", "-1"],
        &["fn", "scale", "f", "--max", "0"],
        &["fn", "scale", "f", "--min", "lots"],
    ] {
        let out = gantry(args)
            .env("GANTRY_URL", "http://127.0.0.1:9")
            .run()
            .await;
        out.assert_code(2);
        assert!(out.stdout.is_empty(), "{out}");
        assert!(out.stderr.starts_with("error: "), "{out}");
        assert!(
            out.stderr.contains("--min") || out.stderr.contains("--max"),
            "{out}"
        );
    }
    let out = gantry(["fn", "scale", "--help"]).ok().await;
    assert!(out.stdout.contains("--min <N>"), "{out}");
    assert!(out.stdout.contains("--max <N>"), "{out}");
}

#[tokio::test]
async fn scale_of_an_unknown_function_fails_in_one_line() {
    let server = Server::start().await;
    let out = cli(&server, ["fn", "scale", "nope", "--min", "1"])
        .run()
        .await;
    let line = out.assert_error(1, "error: 404 ");
    assert!(line.contains("nope"), "{out}");
}

#[tokio::test]
async fn scale_with_min_above_max_is_refused() {
    let server = Server::start().await;
    server.deploy(warm_function("f", 0)).await;
    let out = cli(&server, ["fn", "scale", "f", "--min", "3", "--max", "2"])
        .run()
        .await;
    out.assert_error(1, "error: 400 ");
    let out = cli(&server, ["fn", "versions", "f"]).ok().await;
    assert_eq!(out.lines().len(), 2, "still one version: {out}");
}

#[tokio::test]
async fn a_function_without_warm_section_has_no_pool_section() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("cold", "python3 echo.py", json!({})))
        .await;
    let out = cli(&server, ["fn", "get", "cold"]).ok().await;
    assert_eq!(out.field("pool"), None, "{out}");
    assert!(instance_rows(&out).is_empty(), "{out}");
    let out = cli(&server, ["fn", "get", "cold", "-o", "json"]).ok().await;
    assert!(out.json().get("pool").is_none(), "{out}");
}

#[tokio::test]
async fn scale_then_get_shows_the_pool() {
    let server = Server::start().await;
    server.deploy(warm_function("f", 1)).await;

    let out = cli(&server, ["fn", "scale", "f", "--min", "2", "--max", "3"])
        .ok()
        .await;
    assert_eq!(out.stdout, "scaled f: min 2, max 3 (version 2)\n", "{out}");

    // Poll until the pool has exactly two instances, both idle.
    let deadline = Instant::now() + POOL_DEADLINE;
    let out = loop {
        let out = cli(&server, ["fn", "get", "f"]).ok().await;
        let rows = instance_rows(&out);
        if rows.len() == 2 && rows.iter().all(|row| row.get(2) == Some(&"idle")) {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the pool never had 2 idle instances within {POOL_DEADLINE:?}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(out.field("name"), Some("f"), "{out}");
    assert_eq!(out.field("version"), Some("2"), "{out}");
    let summary = out.field("pool").expect("a pool: line");
    assert!(
        summary.starts_with("2 idle, 0 busy, 0 starting, 0 draining;"),
        "{out}"
    );
    assert!(
        summary.ends_with("min 2, max 3, concurrency 1 per instance"),
        "{out}"
    );
    let header = out
        .stdout
        .lines()
        .find(|line| line.starts_with("ID "))
        .expect("an instance table");
    assert_eq!(
        header
            .split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        [
            "ID",
            "VERSION",
            "STATE",
            "IN FLIGHT",
            "INVOCATIONS",
            "STARTED",
            "LAST USED"
        ],
        "{out}"
    );
    for row in instance_rows(&out) {
        assert_eq!(row.len(), 7, "{out}");
        assert!(row[5].ends_with('Z'), "STARTED is a UTC time: {out}");
    }

    let out = cli(&server, ["fn", "get", "f", "-o", "json"]).ok().await;
    let body = out.json();
    assert_eq!(body["pool"]["minInstances"], 2, "{out}");
    assert_eq!(body["pool"]["maxInstances"], 3, "{out}");
    assert_eq!(body["spec"]["warm"]["min_instances"], 2, "{out}");

    // -o json prints the scale answer unchanged.
    let out = cli(&server, ["fn", "scale", "f", "--max", "4", "-o", "json"])
        .ok()
        .await;
    let body = out.json();
    assert_eq!(body["name"], "f", "{out}");
    assert_eq!(body["version"], 3, "{out}");
    assert_eq!(body["spec"]["warm"]["max_instances"], 4, "{out}");
    assert!(body["pool"].is_object(), "{out}");
}
