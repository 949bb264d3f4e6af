//! `gantry fn init` end to end: for every runtime the folder it writes passes its own
//! tests in the language's runner (unittest, node --test, sh, Rust's harness), is never
//! overwritten, and — for every runtime and mode — builds, deploys and answers on a
//! real server with the docker runtime, its input_schema enforced.

mod cli_support;
mod support;

use std::path::Path;
use std::process::Command;

use cli_support::build::{deploy_built_and_invoke, docker_server, invoke, path, ready, Images};
use cli_support::{gantry, Output};
use support::docker::assert_no_containers;

/// Runs `program args` in `dir` and asserts it succeeds; answers stdout and stderr.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} in {}: {text}",
        dir.display()
    );
    text
}

async fn init(name: &str, runtime: &str, mode: &str, image: &str, dir: &Path) -> Output {
    gantry([
        "fn",
        "init",
        name,
        "--runtime",
        runtime,
        "--mode",
        mode,
        "--image",
        image,
        &path(dir),
    ])
    .run()
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn fn_init_writes_folders_whose_tests_pass_and_never_overwrites() {
    let root = tempfile::tempdir().unwrap();
    for (runtime, test, says) in [
        ("python", &["python3", "-m", "unittest", "-v"][..], "OK"),
        ("node", &["node", "--test"], "# pass 2"),
        ("shell", &["sh", "test_handler.sh"], "ok: {}"),
        ("binary", &["sh", "test.sh"], "test result: ok. 2 passed"),
    ] {
        let dir = root.path().join(runtime);
        let out = init("hello", runtime, "STDIO", "gantry-test/init:never", &dir).await;
        out.assert_code(0);
        assert!(
            out.stdout.starts_with(&format!(
                "created {} ({runtime} runtime, STDIO mode): ",
                dir.display()
            )),
            "{out}"
        );
        assert!(out.stdout.contains("gantry fn deploy --build -f "), "{out}");
        assert!(out.stdout.contains("gantry fn invoke hello -d "), "{out}");
        for file in ["function.yaml", "README.md"] {
            assert!(dir.join(file).is_file(), "{out}\nno {file}");
        }
        let text = run_in(&dir, test[0], &test[1..]);
        assert!(text.contains(says), "{runtime} tests: {text}");

        // A second init into the same folder changes nothing.
        let manifest = std::fs::read_to_string(dir.join("function.yaml")).unwrap();
        std::fs::write(dir.join("README.md"), "mine\n").unwrap();
        let out = init("other", runtime, "STDIO", "gantry-test/init:never", &dir).await;
        let line = out.assert_error(2, "error: not overwriting ");
        assert!(line.contains("function.yaml"), "{out}");
        assert_eq!(
            std::fs::read_to_string(dir.join("function.yaml")).unwrap(),
            manifest
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("README.md")).unwrap(),
            "mine\n"
        );
    }
    // The binary runtime's build script makes the static executable the image needs.
    let binary = root.path().join("binary");
    run_in(&binary, "sh", &["build.sh"]);
    let file = run_in(&binary, "file", &["handler"]);
    assert!(
        file.contains("statically linked") || file.contains("static-pie"),
        "{file}"
    );

    // Modes a runtime cannot serve, bad names and images: usage errors, nothing written.
    let dir = root.path().join("refused");
    for (args, says) in [
        (
            &["hello", "--runtime", "shell", "--mode", "HTTP"][..],
            "use --runtime python or node",
        ),
        (
            &["hello", "--runtime", "binary", "--mode", "WARM"],
            "use --runtime python or node",
        ),
        (
            &["Hello_World", "--runtime", "python"],
            "is not a function name",
        ),
        (
            &["hello", "--runtime", "python", "--image", "a b"],
            "--image",
        ),
    ] {
        let mut all = vec!["fn", "init"];
        all.extend_from_slice(args);
        let dir_arg = path(&dir);
        all.push(&dir_arg);
        let out = gantry(all).run().await;
        assert!(out.assert_error(2, "error: ").contains(says), "{out}");
        assert!(!dir.exists(), "{out}\nsomething was written");
    }
    let out = gantry(["fn", "init", "hello", "--runtime", "cobol"])
        .run()
        .await;
    out.assert_code(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn fn_init_functions_deploy_and_answer_in_every_mode() {
    ready();
    let mut images = Images(Vec::new());
    let token = "init-test-token";
    let mut server = docker_server(token).await;
    let root = tempfile::tempdir().unwrap();
    for (runtime, mode) in [
        ("python", "STDIO"),
        ("python", "HTTP"),
        ("python", "WARM"),
        ("node", "STDIO"),
        ("node", "HTTP"),
        ("node", "WARM"),
        ("shell", "STDIO"),
        ("binary", "STDIO"),
    ] {
        let name = format!("init-{runtime}-{}", mode.to_ascii_lowercase());
        let tag = images.tag(&name);
        let dir = root.path().join(&name);
        init(&name, runtime, mode, &tag, &dir).await.assert_code(0);
        if runtime == "binary" {
            run_in(&dir, "sh", &["build.sh"]);
        }
        let manifest = dir.join("function.yaml");
        let out =
            deploy_built_and_invoke(&server, token, &manifest, &name, r#"{"name":"Ada"}"#).await;
        out.assert_code(0);
        assert_eq!(
            out.json()["greeting"],
            "hello, Ada",
            "{runtime} {mode}: {out}"
        );
        // The generated input_schema is the server's to enforce.
        let out = invoke(&server, token, &name, r#"{"name":"<script>"}"#).await;
        let line = out.assert_error(1, "error: ");
        assert!(
            line.contains("INVALID_INPUT") || line.contains("input"),
            "{out}"
        );
    }
    server.stop().await;
    assert_no_containers(&server, "fn init functions deployed and called").await;
}
