//! The browser console (`/ui/`) in a real headless Chromium, driven by
//! `tests/browser/console.mjs` (playwright-core) against a real `gantry serve`: sign
//! in, the functions, an invoke through the generated form (an invalid input refused
//! first), an execution's live logs, a chain tree of three functions, a warm pool's
//! instance and the charts. Screenshots of each page at 1280×800 and at a phone's width
//! land in `target/ui-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::*;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Runs `program args` in the browser script's directory; panics with its output on
/// failure, or with how to install it when it is missing.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(browser_dir())
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}): this test needs node 18+ and npm (apt-get install -y nodejs npm)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{text}",
        args.first().copied().unwrap_or_default(),
        output.status
    );
    text
}

fn greet() -> serde_json::Value {
    stdio_function(
        "greet",
        "python3 echo.py",
        json!({
            "description": "Echoes a greeting request",
            "input_schema": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    // `not` is left to the server: the form checks the simple keywords only.
                    "name": {"type": "string", "minLength": 1, "not": {"const": "nobody"}, "description": "Who to greet"},
                    "times": {"type": "integer", "minimum": 1, "maximum": 5},
                    "mood": {"type": "string", "enum": ["happy", "calm"]},
                    "loud": {"type": "boolean"}
                }
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install it (apt-get install -y chromium) or set CHROMIUM"
    );
    if !browser_dir().join("node_modules/playwright-core").exists() {
        run(
            "npm",
            &["ci", "--no-audit", "--no-fund"],
            &[("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")],
        );
    }

    let server = Server::start().await;
    let token = server.token.clone().expect("the admin token");
    server.deploy(greet()).await;
    // A second version, so the versions diff has two to compare.
    let mut second = greet();
    second["description"] = json!("Echoes a greeting request, politely");
    let (status, _, body) = server
        .call(
            server
                .request(reqwest::Method::PUT, "/v1/functions/greet")
                .json(&second),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // chain-a -> chain-b -> chain-c, deployed from the end (a chain's target must exist).
    for (name, next) in [
        ("chain-c", None),
        ("chain-b", Some("chain-c")),
        ("chain-a", Some("chain-b")),
    ] {
        let chains = next.map_or(json!({}), |target| json!({"chains": [{"target": target}]}));
        server
            .deploy(stdio_function(name, "python3 echo.py", chains))
            .await;
    }
    server
        .deploy(warm_function(
            "warm-fn",
            json!({"min_instances": 1}),
            json!({}),
        ))
        .await;
    wait_pool(&server, "warm-fn", "one idle instance", |pool| {
        pool["idle"] == 1
    })
    .await;
    // Executions before the browser comes, so the charts and lists have history.
    for i in 0..3 {
        let (status, body) = server
            .invoke("greet", json!({"name": format!("n{i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server.invoke("warm-fn", json!({"x": 1})).await;
    assert_eq!(status, 200, "{body}");

    let shots = gantry_bin()
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join("ui-screenshots");
    let shots = shots.to_str().expect("a UTF-8 path").to_owned();
    let url = server.url.clone();
    let chromium_env = chromium.clone();
    let output = tokio::task::spawn_blocking(move || {
        run(
            "node",
            &["console.mjs", &url, &token, &shots],
            &[("CHROMIUM", &chromium_env)],
        )
    })
    .await
    .expect("the browser run");
    println!("{output}");
    assert!(output.contains("console checks passed"), "{output}");
}
