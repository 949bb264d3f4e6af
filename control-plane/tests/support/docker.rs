//! Helpers shared by the tests against the real Docker engine: the `docker` CLI, a
//! check that the engine answers (a clear failure, never a skip), images removed on
//! drop, container lists by label, and the wait for a server's function containers
//! (one-shot and warm) to be gone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Server;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `docker args…`; answers whether it succeeded and its stdout + stderr.
pub fn docker(args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run the docker CLI ({err}); install Docker (scripts/ensure-docker.sh)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Fails with a clear message unless the Docker engine answers.
pub fn require_engine() {
    let (up, info) = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        up,
        "the Docker engine does not answer (start it with scripts/ensure-docker.sh); docker info said: {info}"
    );
}

/// Whether the engine holds `image`.
pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image]).0
}

/// Runs `make target` at the repository root and asserts it succeeds.
pub fn make(target: &str) {
    let status = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg(target)
        .status()
        .unwrap_or_else(|err| panic!("cannot run make {target}: {err}"));
    assert!(status.success(), "make {target} failed");
}

/// A unique tag under `gantry-test/`.
pub fn unique_tag(name: &str) -> String {
    format!("gantry-test/{name}:{}", uuid::Uuid::new_v4().simple())
}

/// Removes the image when dropped (also when an assertion fails).
pub struct Image(pub String);

impl Image {
    /// `docker build -q -t <unique tag> context`; the image is removed on drop.
    pub fn build(name: &str, context: &Path) -> Image {
        let image = Image(unique_tag(name));
        let (built, log) = docker(&["build", "-q", "-t", &image.0, context.to_str().unwrap()]);
        assert!(built, "docker build of {} failed: {log}", context.display());
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // Its untagged parent layers stay: a build running beside this test may be
        // using one as its cache, and the legacy builder fails when it goes away.
        let _ = docker(&["rmi", "-f", "--no-prune", &self.0]);
    }
}

/// Labels of the containers that run functions: one-shot executions and warm instances.
pub const FUNCTION_LABELS: [&str; 2] = ["gantry.execution", "gantry.instance"];

/// Ids of the containers (running or not) that carry every label of `labels`
/// (`key` or `key=value`).
pub fn containers(labels: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "-aq", "--no-trunc"];
    let filters: Vec<String> = labels
        .iter()
        .map(|label| format!("label={label}"))
        .collect();
    for filter in &filters {
        args.extend(["--filter", filter.as_str()]);
    }
    let (ok, listed) = docker(&args);
    assert!(ok, "docker ps failed: {listed}");
    listed.split_whitespace().map(str::to_owned).collect()
}

/// The function containers (one-shot or warm) of the server's owner.
pub fn function_containers(server: &Server) -> Vec<String> {
    let owner = format!("gantry.owner={}", server.owner_id());
    FUNCTION_LABELS
        .iter()
        .flat_map(|label| containers(&[&owner, label]))
        .collect()
}

/// Fails unless no function container of the server (one-shot or warm; network
/// sandboxes aside) is left within 10 s.
pub async fn assert_no_containers(server: &Server, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = function_containers(server);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers left after {after}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The FROM scratch test image of tests/fixtures/docker: the static watchdog (built
/// with `make watchdog-static` when missing) and Debian's static busybox.
pub fn busybox_image(name: &str) -> Image {
    require_engine();
    let watchdog = repo().join("target/static/watchdog");
    if !watchdog.is_file() {
        make("watchdog-static");
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install Debian's busybox-static"
    );
    let context = tempfile::tempdir().expect("temp dir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docker");
    std::fs::copy(
        fixtures.join("Dockerfile"),
        context.path().join("Dockerfile"),
    )
    .unwrap();
    std::fs::copy(&watchdog, context.path().join("watchdog")).unwrap();
    std::fs::copy(busybox, context.path().join("busybox")).unwrap();
    Image::build(name, context.path())
}

/// Asserts the execution of a sync answer ran in a container (`instanceId` `docker-…`).
pub async fn assert_ran_in_container(server: &Server, answer: &serde_json::Value) {
    let record = server
        .execution(answer["executionId"].as_str().expect("executionId"))
        .await;
    assert!(
        record["instanceId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("docker-"),
        "not run in a container: {record}"
    );
}

/// An image built `FROM base` with `files` (name, path on the host) copied to `/` and
/// `lines` (Dockerfile instructions) after them; removed on drop.
pub fn derived_image(name: &str, base: &Image, files: &[(&str, &Path)], lines: &[&str]) -> Image {
    let context = tempfile::tempdir().expect("temp dir");
    let mut dockerfile = format!("FROM {}\n", base.0);
    for (file, source) in files {
        std::fs::copy(source, context.path().join(file)).expect("copy into the build context");
        dockerfile.push_str(&format!("COPY {file} /{file}\n"));
    }
    for line in lines {
        dockerfile.push_str(line);
        dockerfile.push('\n');
    }
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    Image::build(name, context.path())
}
