//! The runtime images end to end: `gantry serve --runtime docker` against the
//! real Docker engine (it must answer: these tests fail, never skip, when it does not).
//! Each example under examples/runtime-*/ is built under a unique tag (after
//! `make runtime-images` when gantry/runtime-python is missing), deployed from its own
//! function.yaml and invoked sync and async; the python one also in HTTP and FILE mode.
//! A probe function checks that a container cannot use the control plane's API. No container of the server's owner and no test image is left at the end.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::docker::{
    assert_no_containers, assert_ran_in_container, make, repo, require_engine, Image,
};
use support::{Server, ServerOptions};

const TOKEN: &str = "docker-runtimes-token";

/// The example's function.yaml as JSON, with `image` replaced by `image`.
fn manifest(example: &str, image: &str) -> Value {
    let path = repo().join("examples").join(example).join("function.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let mut manifest: Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|err| panic!("parse {}: {err}", path.display()));
    assert!(
        manifest.get("image").is_some(),
        "{} has an image",
        path.display()
    );
    manifest["image"] = json!(image);
    manifest
}

/// The runtime images exist (built once with `make runtime-images` otherwise).
fn ensure_runtime_images() {
    let images = ["python", "node", "shell", "binary"].map(|r| format!("gantry/runtime-{r}"));
    if images
        .iter()
        .any(|image| !support::docker::image_exists(image))
    {
        make("runtime-images");
    }
    for image in &images {
        assert!(
            support::docker::image_exists(image),
            "{image} is missing after make runtime-images"
        );
    }
}

/// examples/runtime-binary/handler, from build.sh (a static musl executable).
fn build_binary_handler() {
    let script = repo().join("examples/runtime-binary/build.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|err| panic!("run {}: {err}", script.display()));
    assert!(status.success(), "{} failed", script.display());
}

/// Invokes `name` with `input` sync, then enqueues it and waits: answers both outputs,
/// each checked to be a success, with the execution id each ran under.
async fn invoke_both(server: &Server, name: &str, input: Value) -> [(String, Value); 2] {
    let (status, body) = server.invoke(name, input.clone()).await;
    assert_eq!(status, StatusCode::OK, "sync {name}: {body}");
    assert_eq!(body["status"], "success", "sync {name}: {body}");
    assert_ran_in_container(server, &body).await;
    let sync = (
        body["executionId"].as_str().unwrap().to_owned(),
        body["output"].clone(),
    );
    let id = server.enqueue(name, input).await;
    let done = server.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "success", "async {name}: {done}");
    [sync, (id, done["output"].clone())]
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_images_end_to_end() {
    require_engine();
    ensure_runtime_images();
    build_binary_handler();
    let examples = repo().join("examples");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docker-runtimes");
    let python = Image::build("example-python", &examples.join("runtime-python"));
    let node = Image::build("example-node", &examples.join("runtime-node"));
    let shell = Image::build("example-shell", &examples.join("runtime-shell"));
    let binary = Image::build("example-binary", &examples.join("runtime-binary"));
    let probe = Image::build("probe", &fixtures.join("probe"));
    let server = Server::start_with(ServerOptions {
        token: Some(TOKEN.into()),
        args: vec!["--runtime".into(), "docker".into()],
        ..Default::default()
    })
    .await;

    // Python and Node greet and echo their context.
    for (example, image, runtime) in [
        ("runtime-python", &python, "python"),
        ("runtime-node", &node, "node"),
    ] {
        let manifest = manifest(example, &image.0);
        let name = manifest["name"].as_str().unwrap().to_owned();
        server.deploy(manifest).await;
        for (id, output) in invoke_both(&server, &name, json!({"name": "gantry"})).await {
            assert_eq!(output["greeting"], "hello, gantry", "{runtime}: {output}");
            assert_eq!(output["runtime"], runtime, "{output}");
            assert_eq!(output["execution_id"], id.as_str(), "{output}");
            assert_eq!(output["timeout_ms"], 5000, "{output}");
        }
        assert_no_containers(&server, example).await;
    }

    // Shell and binary echo their input with its size.
    for (example, image, runtime) in [
        ("runtime-shell", &shell, "shell"),
        ("runtime-binary", &binary, "binary"),
    ] {
        let manifest = manifest(example, &image.0);
        let name = manifest["name"].as_str().unwrap().to_owned();
        server.deploy(manifest).await;
        let input = json!({"name": "gantry", "n": [1, 2, 3]});
        for (id, output) in invoke_both(&server, &name, input.clone()).await {
            assert_eq!(output["runtime"], runtime, "{output}");
            assert_eq!(output["input"], input, "{runtime}: {output}");
            assert_eq!(output["execution_id"], id.as_str(), "{output}");
            assert!(output["bytes"].as_u64().unwrap_or(0) > 0, "{output}");
        }
        assert_no_containers(&server, example).await;
    }

    // The python runtime in HTTP and FILE mode (EXECUTION_MODE from the manifest's mode).
    for mode in ["HTTP", "FILE"] {
        let mut manifest = manifest("runtime-python", &python.0);
        let name = format!("python-{}", mode.to_lowercase());
        manifest["name"] = json!(name);
        manifest["mode"] = json!(mode);
        server.deploy(manifest).await;
        for (id, output) in invoke_both(&server, &name, json!({"name": mode})).await {
            assert_eq!(output["greeting"], format!("hello, {mode}"), "{output}");
            assert_eq!(output["execution_id"], id.as_str(), "{mode}: {output}");
        }
        // A handler exception is the function's error, in every mode.
        let (status, body) = server.invoke(&name, json!({"name": "fail"})).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{mode}: {body}");
        assert_eq!(body["status"], "error", "{mode}: {body}");
        assert_no_containers(&server, &format!("python in {mode} mode")).await;
    }

    // A function cannot use the control plane's API: the origin of its CALLBACK_URL (the
    // gateway listener) serves no API at all, and its own execution's callback needs the
    // token the function never sees.
    server
        .deploy(json!({"name": "probe", "mode": "STDIO", "image": probe.0, "resources": {"timeout_ms": 20000}}))
        .await;
    let (status, body) = server.invoke("probe", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = &body["output"];
    assert!(
        output["callback_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/v1/internal/executions"),
        "the function sees CALLBACK_URL: {output}"
    );
    assert_eq!(
        output["functions"], 404,
        "GET /v1/functions from a container, on the gateway listener: {output}"
    );
    assert_eq!(
        output["complete"], 401,
        "its own callback without the token from a container: {output}"
    );
    assert_no_containers(&server, "the probe").await;

    let owner = server.owner_id();
    let mut server = server;
    server.stop().await;
    let (ok, left) = support::docker::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=gantry.owner={owner}"),
    ]);
    assert!(ok && left.trim().is_empty(), "containers left: {left}");
    let tags: Vec<String> = [&python, &node, &shell, &binary, &probe]
        .iter()
        .map(|image| image.0.clone())
        .collect();
    drop((python, node, shell, binary, probe));
    for tag in tags {
        assert!(
            !support::docker::image_exists(&tag),
            "the test image {tag} was not removed"
        );
    }
}
