//! `gantry fn build DIR` and `gantry fn deploy --build` against the real Docker engine
//! (it must answer: these tests fail, never skip, when it does not). The runtime images
//! are built once with `make runtime-images` when gantry/runtime-python is missing.
//! Every image is tagged uniquely per run and removed at the end; after the deploy,
//! no container of the server is left.

mod cli_support;
mod support;

use cli_support::build::{
    assert_build_error, assert_built, function_dir, path, ready, run_image, Images,
};
use cli_support::{cli, cli_without_token, gantry};
use serde_json::Value;
use support::docker::{assert_no_containers, docker, repo};
use support::{Server, ServerOptions};

fn example_handler() -> String {
    std::fs::read_to_string(repo().join("examples/runtime-python/handler.py")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fn_build_builds_runs_and_fails_clearly() {
    ready();
    let mut images = Images(Vec::new());

    // The example folder with its own Dockerfile, tagged through a manifest elsewhere.
    let tag = images.tag("example");
    let manifest = function_dir(&format!("name: hello-python\nimage: {tag}\n"), &[]);
    let example = repo().join("examples/runtime-python");
    let out = gantry([
        "fn",
        "build",
        &path(&example),
        "-f",
        &path(&manifest.path().join("function.yaml")),
    ])
    .run()
    .await;
    assert_built(&out, &tag);
    assert!(
        out.stderr.contains("COPY handler.py /app/handler.py"),
        "{out}\nprogress is streamed to stderr"
    );
    assert!(!out.stderr.contains("generated"), "{out}");
    let report = run_image(&tag, r#"{"name":"build-test"}"#);
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(
        report["output"]["greeting"], "hello, build-test",
        "{report}"
    );

    // Only handler.py: a Dockerfile is generated (and said so); DIR/function.yaml is read.
    let tag = images.tag("generated");
    let dir = function_dir(
        &format!("name: gen\nimage: {tag}\n"),
        &[("handler.py", &example_handler())],
    );
    let out = gantry(["fn", "build", &path(dir.path())]).run().await;
    assert_built(&out, &tag);
    assert!(
        out.stderr
            .contains("using a generated one (gantry/runtime-python + handler.py)"),
        "{out}"
    );
    let report = run_image(&tag, r#"{"name":"generated"}"#);
    assert_eq!(report["output"]["greeting"], "hello, generated", "{report}");

    // A Dockerfile whose RUN fails: exit 1 and one error line.
    let tag = images.tag("broken");
    let broken = function_dir(
        &format!("name: broken\nimage: {tag}\n"),
        &[("Dockerfile", "FROM gantry/runtime-python\nRUN exit 3\n")],
    );
    let out = gantry(["fn", "build", &path(broken.path())]).run().await;
    let line = assert_build_error(&out, &format!("error: build of {tag} failed: "));
    assert!(line.contains("non-zero code: 3"), "{out}");
    assert!(
        !docker(&["image", "inspect", &tag]).0,
        "no image after a failure"
    );

    // A Dockerfile the engine cannot parse.
    std::fs::write(broken.path().join("Dockerfile"), "FROMM nothing\n").unwrap();
    let out = gantry(["fn", "build", &path(broken.path())]).run().await;
    assert_build_error(&out, "unknown instruction");

    // A runtime base that was never built: the hint, no pull attempt.
    let missing = format!("gantry/runtime-missing-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(
        broken.path().join("Dockerfile"),
        format!("FROM {missing}\n"),
    )
    .unwrap();
    let out = gantry(["fn", "build", &path(broken.path())]).run().await;
    let line = assert_build_error(&out, &missing);
    assert!(
        line.contains("run `make runtime-images` first; there is no registry to pull from"),
        "{out}"
    );

    // The engine does not answer: one line naming DOCKER_HOST and the socket.
    let out = gantry(["fn", "build", &path(dir.path())])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .run()
        .await;
    let line = out.assert_error(
        1,
        "error: the Docker engine at unix:///nonexistent/docker.sock",
    );
    assert!(line.contains("DOCKER_HOST"), "{out}");

    // Usage errors (exit 2): no `image`, no manifest, nothing to build from.
    let no_image = function_dir("name: no-image\n", &[("handler.py", "x")]);
    let out = gantry(["fn", "build", &path(no_image.path())]).run().await;
    let line = out.assert_error(2, "error: ");
    assert!(line.contains("has no `image`"), "{out}");
    let empty = tempfile::tempdir().unwrap();
    let out = gantry(["fn", "build", &path(empty.path())]).run().await;
    assert!(out.assert_error(2, "error: ").contains("no function.yaml"));
    let no_handler = function_dir("name: n\nimage: gantry-test/never:1\n", &[]);
    let out = gantry(["fn", "build", &path(no_handler.path())])
        .run()
        .await;
    assert!(out
        .assert_error(2, "error: ")
        .contains("no Dockerfile and no handler"));
}

#[tokio::test(flavor = "multi_thread")]
async fn fn_deploy_build_then_invoke_on_the_docker_runtime() {
    ready();
    let mut images = Images(Vec::new());
    let tag = images.tag("deploy");
    let token = "build-test-token";
    let mut server = Server::start_with(ServerOptions {
        token: Some(token.into()),
        args: vec!["--runtime".into(), "docker".into()],
        ..Default::default()
    })
    .await;
    let dir = function_dir(
        &format!("name: built-hello\nimage: {tag}\nmode: STDIO\nresources:\n  timeout_ms: 10000\n"),
        &[("handler.py", &example_handler())],
    );
    let manifest = path(&dir.path().join("function.yaml"));

    let out = cli(&server, ["fn", "deploy", "--build", "-f", &manifest])
        .env("GANTRY_TOKEN", token)
        .run()
        .await;
    out.assert_code(0);
    assert!(
        out.stdout
            .starts_with("deployed built-hello version 1 (sha256:"),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!("built {tag} (id sha256:")),
        "{out}"
    );
    assert!(docker(&["image", "inspect", &tag]).0, "{out}");

    let out = cli(
        &server,
        [
            "fn",
            "invoke",
            "built-hello",
            "-d",
            r#"{"name":"deployed"}"#,
        ],
    )
    .env("GANTRY_TOKEN", token)
    .run()
    .await;
    out.assert_code(0);
    let output: Value = out.json();
    assert_eq!(output["greeting"], "hello, deployed", "{out}");
    assert_eq!(output["runtime"], "python", "{out}");

    // Without the token the deploy is refused after the build (exit 1, one line).
    let out = cli_without_token(&server, ["fn", "deploy", "--build", "-f", &manifest])
        .run()
        .await;
    out.assert_code(1);
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{out}"
    );

    assert_no_containers(&server, "deploy --build and invoke").await;
    server.stop().await;
}
