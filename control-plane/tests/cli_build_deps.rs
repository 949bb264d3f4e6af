//! Dependencies in `gantry fn build` against the real Docker engine: the vendored
//! examples (a Python function importing a library installed by pip from a local wheel,
//! a Node function requiring a package npm ci installs from a local tarball) build, run
//! and deploy on the docker runtime; a handler-only change reuses the dependency layer;
//! installer settings go in as build arguments; a failed install shows the installer's
//! own message. Nothing reaches a registry: containers run without a network.

mod cli_support;
mod support;

use std::path::Path;

use cli_support::build::{
    assert_build_error, assert_built, deploy_built_and_invoke, docker_server, invoke, layers, path,
    ready, run_image, Images,
};
use cli_support::{gantry, Output};
use serde_json::Value;
use support::docker::{assert_no_containers, repo};

/// A copy of `examples/NAME` (without node_modules) in a temp dir, its manifest
/// tagging the image `tag`. Its dependency file is made unique (a comment, a
/// description) so the first build installs rather than reuse an earlier run's layer.
fn example_copy(name: &str, tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&repo().join("examples").join(name), dir.path());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let requirements = dir.path().join("requirements.txt");
    if requirements.is_file() {
        let text = std::fs::read_to_string(&requirements).unwrap();
        std::fs::write(&requirements, format!("# test run {run}\n{text}")).unwrap();
    }
    let package = dir.path().join("package.json");
    if package.is_file() {
        let text = std::fs::read_to_string(&package).unwrap();
        let text = text.replacen(
            "\"description\": \"",
            &format!("\"description\": \"test run {run}: "),
            1,
        );
        std::fs::write(&package, text).unwrap();
    }
    let manifest = dir.path().join("function.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text: String = text
        .lines()
        .map(|line| match line.starts_with("image:") {
            true => format!("image: {tag}\n"),
            false => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&manifest, text).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "node_modules" {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Builds `dir` with extra arguments.
async fn build(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["fn".to_owned(), "build".to_owned(), path(dir)];
    args.extend(extra.iter().map(|s| s.to_string()));
    gantry(args).run().await
}

/// Asserts the second build reused every layer of the first but the handler's (the
/// last), and said so ("Using cache" for the install step).
fn assert_dependency_layer_reused(first: &[String], second: &[String], out: &Output) {
    assert_eq!(first.len(), second.len(), "{out}");
    let n = first.len();
    assert_eq!(
        first[..n - 1],
        second[..n - 1],
        "{out}\nthe dependency layers changed"
    );
    assert_ne!(
        first[n - 1],
        second[n - 1],
        "{out}\nthe handler layer did not change"
    );
    let install = out
        .stderr
        .lines()
        .position(|line| line.starts_with("Step ") && line.contains(" : RUN "))
        .unwrap_or_else(|| panic!("{out}\nno RUN step"));
    let next = out.stderr.lines().nth(install + 1).unwrap_or_default();
    assert!(next.contains("Using cache"), "{out}\nthe install ran again");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_dependency_from_a_local_wheel_installs_once() {
    ready();
    let mut images = Images(Vec::new());
    let tag = images.tag("py-deps");
    let dir = example_copy("python-deps", &tag);

    let out = build(dir.path(), &[]).await;
    assert_built(&out, &tag);
    assert!(
        out.stderr
            .contains("gantry/runtime-python + handler.py, dependencies through pip"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("Successfully installed inflection-0.5.1"),
        "{out}"
    );
    let report = run_image(&tag, r#"{"word":"octopus"}"#);
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(report["output"]["plural"], "octopi", "{report}");
    let file = report["output"]["library_file"]
        .as_str()
        .unwrap_or_default();
    assert!(
        file.starts_with("/opt/gantry/packages/inflection"),
        "{report}"
    );
    let first = layers(&tag);

    // A handler-only change: the install layer comes from the cache.
    let handler = dir.path().join("handler.py");
    let text = std::fs::read_to_string(&handler).unwrap();
    std::fs::write(
        &handler,
        text.replace("\"inflection\",", "\"inflection (v2)\","),
    )
    .unwrap();
    let out = build(dir.path(), &[]).await;
    assert_built(&out, &tag);
    assert!(!out.stderr.contains("Successfully installed"), "{out}");
    assert_dependency_layer_reused(&first, &layers(&tag), &out);
    let report = run_image(&tag, r#"{"word":"person"}"#);
    assert_eq!(report["output"]["plural"], "people", "{report}");
    assert_eq!(report["output"]["library"], "inflection (v2)", "{report}");

    // pip's settings as build arguments: the same wheel through PIP_NO_INDEX and
    // PIP_FIND_LINKS instead of options in requirements.txt.
    // Unique, like the first: a layer an earlier run left would make pip skip the install.
    let run = uuid::Uuid::new_v4().simple();
    let requirements = format!("# test run {run}, settings as arguments\ninflection==0.5.1\n");
    std::fs::write(dir.path().join("requirements.txt"), requirements).unwrap();
    let out = build(
        dir.path(),
        &[
            "--build-arg",
            "PIP_NO_INDEX=1",
            "--build-arg",
            "PIP_FIND_LINKS=/app/vendor",
        ],
    )
    .await;
    assert_built(&out, &tag);
    assert!(
        out.stderr
            .contains("Successfully installed inflection-0.5.1"),
        "{out}"
    );
    assert_eq!(
        run_image(&tag, r#"{"word":"child"}"#)["output"]["plural"],
        "children"
    );

    // A requirement that cannot be found: pip's own message, then one error line.
    std::fs::write(
        dir.path().join("requirements.txt"),
        "--no-index\n--find-links vendor\ngantry-no-such-package==1.0\n",
    )
    .unwrap();
    let failed = images.tag("py-deps-missing");
    std::fs::write(
        dir.path().join("function.yaml"),
        format!("name: missing\nimage: {failed}\n"),
    )
    .unwrap();
    let out = build(dir.path(), &[]).await;
    let line = assert_build_error(
        &out,
        "installing the dependencies failed (pip's messages are above)",
    );
    assert!(line.contains(&format!("build of {failed} failed")), "{out}");
    assert!(
        out.stderr
            .contains("ERROR: No matching distribution found for gantry-no-such-package==1.0"),
        "{out}"
    );

    // A bad build argument is a usage error, before any build.
    let out = build(dir.path(), &["--build-arg", "PIP-NO-INDEX=1"]).await;
    assert!(
        out.assert_error(2, "error: ").contains("the name must be"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_dependency_from_a_local_tarball_installs_once() {
    ready();
    let mut images = Images(Vec::new());
    let tag = images.tag("node-deps");
    let dir = example_copy("node-deps", &tag);

    let out = build(dir.path(), &[]).await;
    assert_built(&out, &tag);
    assert!(
        out.stderr
            .contains("gantry/runtime-node + handler.js, dependencies through npm"),
        "{out}"
    );
    assert!(out.stderr.contains("npm ci"), "{out}");
    let report = run_image(&tag, r#"{"duration":"2h"}"#);
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(report["output"]["millis"], 7_200_000, "{report}");
    assert_eq!(report["output"]["long"], "2 hours", "{report}");
    assert_eq!(
        report["output"]["library_file"], "/app/node_modules/ms/index.js",
        "{report}"
    );
    let first = layers(&tag);

    let handler = dir.path().join("handler.js");
    let text = std::fs::read_to_string(&handler).unwrap();
    std::fs::write(&handler, text.replace("library: 'ms'", "library: 'ms v2'")).unwrap();
    let out = build(dir.path(), &[]).await;
    assert_built(&out, &tag);
    assert_dependency_layer_reused(&first, &layers(&tag), &out);
    let report = run_image(&tag, r#"{"duration":"1d"}"#);
    assert_eq!(report["output"]["millis"], 86_400_000, "{report}");
    assert_eq!(report["output"]["library"], "ms v2", "{report}");

    // A dependency whose tarball is missing from vendor/: npm's own message.
    let package = dir.path().join("package.json");
    let text = std::fs::read_to_string(&package).unwrap();
    std::fs::write(
        &package,
        text.replacen(
            "\"dependencies\": {",
            "\"dependencies\": {\n    \"left-pad\": \"file:vendor/left-pad-1.3.0.tgz\",",
            1,
        ),
    )
    .unwrap();
    let out = build(dir.path(), &[]).await;
    assert_build_error(
        &out,
        "installing the dependencies failed (npm's messages are above)",
    );
    assert!(out.stderr.contains("npm ERR! code ENOENT"), "{out}");
    assert!(
        out.stderr.contains("/app/vendor/left-pad-1.3.0.tgz"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_with_dependencies_deploy_and_answer_on_the_docker_runtime() {
    ready();
    let mut images = Images(Vec::new());
    let token = "deps-test-token";
    let mut server = docker_server(token).await;
    for (example, name, input, key, expected) in [
        (
            "python-deps",
            "inflect",
            r#"{"word":"mouse"}"#,
            "plural",
            Value::from("mice"),
        ),
        (
            "node-deps",
            "duration",
            r#"{"duration":"1m"}"#,
            "millis",
            Value::from(60_000),
        ),
    ] {
        let tag = images.tag(example);
        let dir = example_copy(example, &tag);
        let manifest = dir.path().join("function.yaml");
        let out = deploy_built_and_invoke(&server, token, &manifest, name, input).await;
        out.assert_code(0);
        assert_eq!(out.json()[key], expected, "{out}");
        // The manifest's input_schema is enforced by the server.
        let out = invoke(&server, token, name, r#"{"word":7,"duration":7}"#).await;
        out.assert_code(1);
    }
    assert_no_containers(&server, "deploy --build and invoke with dependencies").await;
    server.stop().await;
}
