//! Support for the `gantry fn build` tests: runtime images that have their installers
//! (pip, npm), unique image tags removed at the end, function folders in temp dirs, and
//! checks of what a build printed and of the image it made.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use super::{cli, Output};
use crate::support::docker::{docker, image_exists, make, require_engine};
use crate::support::{Server, ServerOptions};

/// The engine answers and the runtime images exist with pip and npm in them; builds
/// them (`make runtime-images`, which rebuilds bases made without the installers) once.
pub fn ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        require_engine();
        let has = |image: &str, program: &str, args: &[&str]| {
            let mut command = vec!["run", "--rm", "--network", "none", "--entrypoint"];
            command.extend([program, image]);
            command.extend_from_slice(args);
            image_exists(image) && docker(&command).0
        };
        let python = has(
            "gantry/runtime-python",
            "python3",
            &["-m", "pip", "--version"],
        );
        let node = has("gantry/runtime-node", "npm", &["--version"]);
        if !python || !node {
            make("runtime-images");
        }
    });
}

/// Unique image tags, removed (with `docker rmi -f --no-prune`) when dropped.
pub struct Images(pub Vec<String>);

impl Images {
    /// A new unique tag under `gantry-test/build-WHAT`.
    pub fn tag(&mut self, what: &str) -> String {
        let tag = format!("gantry-test/build-{what}:{}", uuid::Uuid::new_v4().simple());
        self.0.push(tag.clone());
        tag
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for tag in &self.0 {
            // Its untagged parent layers stay: a build running beside it may be using one as
            // its cache or parent, and that build fails when it goes away.
            let _ = docker(&["rmi", "-f", "--no-prune", tag]);
        }
    }
}

/// A function folder in a temp dir: `files` plus a function.yaml from `manifest`.
pub fn function_dir(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("function.yaml"), manifest).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A path as a command-line argument.
pub fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Asserts `gantry fn build` printed `built TAG (id sha256:<64 hex>)`.
pub fn assert_built(out: &Output, tag: &str) {
    out.assert_code(0);
    let prefix = format!("built {tag} (id sha256:");
    let line = out.stdout.trim_end();
    let hash = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{out}\nexpected {prefix}…)"));
    assert_eq!(hash.len(), 64, "{out}");
    let (exists, inspect) = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert!(exists, "{out}\nthe image is not there: {inspect}");
    assert_eq!(inspect.trim(), format!("sha256:{hash}"), "{out}");
}

/// Runs the image once in STDIO mode (no network) and answers the watchdog's report.
pub fn run_image(tag: &str, payload: &str) -> Value {
    let (ok, text) = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        &format!("INVOCATION_PAYLOAD={payload}"),
        tag,
    ]);
    assert!(ok, "docker run {tag} failed: {text}");
    let report = text
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report from {tag}: {text}"));
    serde_json::from_str(report).unwrap_or_else(|err| panic!("{err}: {text}"))
}

/// Asserts a failed build: exit 1, nothing on stdout, exactly one `error:` line, last
/// on stderr (progress lines may come before it), containing `contains`. Answers it.
pub fn assert_build_error(out: &Output, contains: &str) -> String {
    assert_last_error(out, 1, contains)
}

/// Asserts a failed command: exit `code`, nothing on stdout, exactly one `error:` line,
/// last on stderr (log or progress lines may come before it), containing `contains`.
pub fn assert_last_error(out: &Output, code: i32, contains: &str) -> String {
    out.assert_code(code);
    assert!(out.stdout.is_empty(), "{out}\nexpected nothing on stdout");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{out}\nexpected one error line");
    assert_eq!(out.stderr.lines().last(), Some(errors[0]), "{out}");
    assert!(errors[0].contains(contains), "{out}\nexpected {contains:?}");
    errors[0].to_owned()
}

/// The real server on the docker runtime, with `token` as its admin token.
pub async fn docker_server(token: &str) -> Server {
    Server::start_with(ServerOptions {
        token: Some(token.into()),
        args: vec!["--runtime".into(), "docker".into()],
        ..Default::default()
    })
    .await
}

/// `gantry fn deploy --build -f MANIFEST` (asserting it made version 1 of `name`), then
/// `gantry fn invoke NAME -d INPUT`; answers the invoke.
pub async fn deploy_built_and_invoke(
    server: &Server,
    token: &str,
    manifest: &Path,
    name: &str,
    input: &str,
) -> Output {
    let out = cli(server, ["fn", "deploy", "--build", "-f", &path(manifest)])
        .env("GANTRY_TOKEN", token)
        .run()
        .await;
    out.assert_code(0);
    let deployed = format!("deployed {name} version 1");
    assert!(out.stdout.starts_with(&deployed), "{out}");
    invoke(server, token, name, input).await
}

/// `gantry fn invoke NAME -d INPUT` with `token`.
pub async fn invoke(server: &Server, token: &str, name: &str, input: &str) -> Output {
    cli(server, ["fn", "invoke", name, "-d", input])
        .env("GANTRY_TOKEN", token)
        .run()
        .await
}

/// The image's layers (`RootFS.Layers`), oldest first.
pub fn layers(tag: &str) -> Vec<String> {
    let (ok, text) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        tag,
    ]);
    assert!(ok, "cannot inspect {tag}: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("{err}: {text}"))
}
