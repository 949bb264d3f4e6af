//! End-to-end tests of how the `gantry` CLI reaches a server: tokens, no server at all,
//! help and usage errors, and `gantry serve` started the way a user starts it.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{cli, cli_without_token, gantry, ManualServer};
use serde_json::json;
use support::{examples_dir, stdio_function, Server, ServerOptions};

#[tokio::test]
async fn tokens_are_asked_for_checked_and_accepted() {
    let server = Server::start_with(ServerOptions {
        token: Some("right-token".into()),
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;

    let out = cli_without_token(&server, ["fn", "list"]).run().await;
    let line = out.assert_error(1, "error: 401 UNAUTHORIZED: ");
    assert!(line.contains("token"), "{out}");
    assert!(line.contains("GANTRY_TOKEN"), "{out}");
    let out = cli_without_token(&server, ["fn", "invoke", "echo", "-d", "1"])
        .run()
        .await;
    out.assert_error(1, "error: 401 UNAUTHORIZED: ");

    let out = cli_without_token(&server, ["--token", "wrong", "fn", "list"])
        .run()
        .await;
    out.assert_code(1);
    assert!(out.stderr.contains("error: 401 UNAUTHORIZED: "), "{out}");
    let out = cli_without_token(&server, ["exec", "list"])
        .env("GANTRY_TOKEN", "wrong")
        .run()
        .await;
    out.assert_error(1, "error: 401 UNAUTHORIZED: ");

    let out = cli_without_token(&server, ["fn", "list"])
        .env("GANTRY_TOKEN", "right-token")
        .ok()
        .await;
    assert_eq!(out.rows_of("echo").len(), 1, "{out}");
    // The flag wins over the environment, may come after the subcommand, and is
    // warned about: other users can read a command line.
    let out = cli_without_token(
        &server,
        ["fn", "invoke", "echo", "-d", "7", "--token", "right-token"],
    )
    .env("GANTRY_TOKEN", "wrong")
    .run()
    .await;
    out.assert_code(0);
    assert_eq!(out.json(), json!({"echo": 7}));
    assert!(out.stderr.contains("warning: --token is visible"), "{out}");
    // A token file works like the variable, and the variable wins over it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "right-token\n").unwrap();
    let out = cli_without_token(&server, ["fn", "list"])
        .env("GANTRY_TOKEN_FILE", &file)
        .ok()
        .await;
    assert_eq!(out.rows_of("echo").len(), 1, "{out}");
    let out = cli_without_token(&server, ["fn", "list", "--token-file"])
        .run()
        .await;
    out.assert_code(2);
    let out = cli_without_token(&server, ["fn", "list"])
        .env("GANTRY_TOKEN_FILE", dir.path().join("missing"))
        .run()
        .await;
    out.assert_error(2, "error: the token file");
    let out = cli_without_token(&server, ["exec", "logs", "-f", "x"])
        .env("GANTRY_TOKEN", "right-token")
        .run()
        .await;
    out.assert_error(1, "error: 404 NOT_FOUND: ");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn no_server_is_one_clear_line() {
    let out = gantry(["--server", "http://127.0.0.1:1", "fn", "list"])
        .run()
        .await;
    let line = out.assert_error(
        1,
        "error: cannot reach the Gantry server at http://127.0.0.1:1",
    );
    assert!(line.contains("gantry serve"), "{out}");
    let out = gantry(["exec", "logs", "-f", "some-id"])
        .env("GANTRY_URL", "http://127.0.0.1:1/")
        .run()
        .await;
    out.assert_error(
        1,
        "error: cannot reach the Gantry server at http://127.0.0.1:1",
    );
    let out = gantry([
        "fn",
        "invoke",
        "x",
        "-d",
        "{}",
        "--server",
        "127.0.0.1:8080",
    ])
    .run()
    .await;
    out.assert_error(2, "error: --server \"127.0.0.1:8080\" is not usable");
}

#[tokio::test]
async fn help_and_usage_errors() {
    let out = gantry(["--help"]).ok().await;
    for needle in [
        "serve",
        "fn",
        "exec",
        "--server",
        "GANTRY_URL",
        "--token",
        "-d @",
    ] {
        assert!(out.stdout.contains(needle), "{out}\nmissing {needle:?}");
    }
    let out = gantry(["fn", "invoke", "--help"]).ok().await;
    for needle in [
        "-d, --data",
        "@FILE",
        "@-",
        "stdin",
        "--timeout-ms",
        "--idempotency-key",
    ] {
        assert!(out.stdout.contains(needle), "{out}\nmissing {needle:?}");
    }
    gantry(["fn", "enqueue", "--help"]).ok().await;
    gantry(["exec", "logs", "--help"]).ok().await;
    let out = gantry(["--version"]).ok().await;
    assert!(out.stdout.starts_with("gantry "), "{out}");

    let out = gantry(["frobnicate"]).run().await;
    out.assert_code(2);
    assert!(out.stderr.starts_with("error: "), "{out}");
    assert!(out.stderr.contains("frobnicate"), "{out}");
    for args in [
        &["fn", "invoke"][..],
        &["fn", "deploy"],
        &["fn", "nope"],
        &["exec", "list", "--status", "done"],
        &["exec", "list", "--since", "last tuesday"],
        &["-o", "yaml", "fn", "list"],
    ] {
        let out = gantry(args).run().await;
        out.assert_code(2);
        assert!(out.stdout.is_empty(), "{out}");
        assert!(out.stderr.starts_with("error: "), "{out}");
    }
    // A manifest that cannot be read is a usage error too, before any server is asked.
    let out = gantry(["fn", "deploy", "-f", "/no/such/function.yaml"])
        .env("GANTRY_URL", "http://127.0.0.1:1")
        .run()
        .await;
    out.assert_error(2, "error: cannot read /no/such/function.yaml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("function.yaml");
    std::fs::write(&file, "command: [unclosed\n").unwrap();
    let out = gantry(["fn", "deploy", "-f", file.to_str().unwrap()])
        .env("GANTRY_URL", "http://127.0.0.1:1")
        .run()
        .await;
    out.assert_error(2, &format!("error: {}", file.display()));
}

#[tokio::test]
async fn invalid_manifest_is_one_line_from_the_server() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("function.yaml");
    std::fs::write(&file, "name: Bad_Name!\nmode: STDIO\n").unwrap();
    let out = cli(&server, ["fn", "deploy", "-f", file.to_str().unwrap()])
        .run()
        .await;
    let line = out.assert_error(1, "error: 400 INVALID_FUNCTION: ");
    // Each problem the server lists is said once, though its message repeats them.
    let (_, body) = server
        .try_deploy(json!({"name": "Bad_Name!", "mode": "STDIO"}))
        .await;
    let details = body["error"]["details"].as_array().cloned().unwrap();
    assert!(details.len() >= 2, "{body}");
    for detail in details {
        let detail = detail.as_str().unwrap();
        assert_eq!(
            line.matches(detail).count(),
            1,
            "{out}
not once: {detail:?}"
        );
    }
}

#[tokio::test]
async fn serve_refuses_to_serve_without_tokens_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = gantry([
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--insecure-no-auth",
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .env("GANTRY_WATCHDOG", support::watchdog_bin())
    .run()
    .await;
    out.assert_code(64);
    assert!(out.stderr.contains("GANTRY_INSECURE_NO_AUTH"), "{out}");
    let out = gantry(["serve", "--listen", "not-an-address"]).run().await;
    out.assert_code(2);
}

#[tokio::test]
async fn serve_with_a_relative_data_dir_runs_file_mode_functions() {
    // `make run` starts `gantry serve` with its default ./gantry-data; FILE mode hands
    // the function paths under it, which must work from the function's own folder.
    let dir = tempfile::tempdir().unwrap();
    let server = ManualServer::start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "./gantry-data"],
        &dir.path().join("gantry-data"),
    )
    .await;
    // The CLI, run where the server was started, finds the admin token the server
    // wrote in ./gantry-data: the quick start needs no token in the environment.
    let data = dir.path().join("gantry-data");
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&data), 0o700, "the data directory is private");
    assert_eq!(mode(&data.join("admin-token")), 0o600);
    let manifest = examples_dir().join("shell-file/function.yaml");
    let out = gantry(["fn", "deploy", "-f", manifest.to_str().unwrap()])
        .env("GANTRY_URL", &server.url)
        .cwd(dir.path())
        .ok()
        .await;
    assert!(
        out.stdout.starts_with("deployed measure version 1"),
        "{out}"
    );
    let out = gantry(["fn", "invoke", "measure", "-d", r#"{"input":"hello"}"#])
        .env("GANTRY_URL", &server.url)
        .cwd(dir.path())
        .ok()
        .await;
    assert_eq!(
        out.json(),
        json!({"bytes": 17, "received": {"input": "hello"}})
    );
    assert!(
        server.stderr().contains("admin token: "),
        "the server says where its token is: {}",
        server.stderr()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server.instances().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "processes survived: {:?}",
            server.instances()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.kill().await;
}
