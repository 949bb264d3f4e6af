//! CGROUP_PROCS: the watchdog joins the listed cgroups before it runs anything, so the
//! function starts inside them and never sees the list; a cgroup it cannot join, or a
//! listed file that is not a cgroup's, stops it before the function runs.
//!
//! Needs root and cgroups (as CI has): the tests fail, not skip, without them.

mod support;

use std::path::{Path, PathBuf};

use support::{require_root, watchdog, Scratch};

/// A fresh cgroup in each hierarchy the test uses (the unified one on cgroup v2, `pids`
/// and `memory` on v1), removed when dropped.
struct TestCgroups(Vec<PathBuf>);

impl TestCgroups {
    fn new() -> TestCgroups {
        require_root();
        let root = Path::new("/sys/fs/cgroup");
        let name = format!("gantry-watchdog-test-{}", uuid::Uuid::new_v4().simple());
        let dirs: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
            vec![root.join(&name)]
        } else {
            ["pids", "memory"]
                .iter()
                .map(|hierarchy| root.join(hierarchy).join(&name))
                .collect()
        };
        for dir in &dirs {
            std::fs::create_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        }
        TestCgroups(dirs)
    }

    /// The CGROUP_PROCS value naming them.
    fn procs_list(&self) -> String {
        let files: Vec<String> = (self.0.iter())
            .map(|dir| dir.join("cgroup.procs").display().to_string())
            .collect();
        files.join("\n")
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[tokio::test]
async fn the_function_starts_inside_the_cgroups_and_does_not_see_the_list() {
    let cgroups = TestCgroups::new();
    let scratch = Scratch::new(0o700);
    let seen = scratch.join("seen");
    let command = format!(
        "sh -c 'cat /proc/self/cgroup > {0}; env >> {0}; echo null'",
        seen.display()
    );
    let finished = watchdog("STDIO", &command)
        .env("CGROUP_PROCS", cgroups.procs_list())
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let seen = std::fs::read_to_string(&seen).unwrap();
    // One line per hierarchy joined, each ending in the test cgroup's name.
    let name = cgroups.0[0].file_name().unwrap().to_str().unwrap();
    let joined = seen
        .lines()
        .filter(|line| line.ends_with(&format!(":/{name}")));
    assert_eq!(joined.count(), cgroups.0.len(), "{seen}");
    assert!(!seen.contains("CGROUP_PROCS"), "{seen}");
}

#[tokio::test]
async fn a_cgroup_it_cannot_join_stops_it_before_the_function_runs() {
    let scratch = Scratch::new(0o700);
    let missing = scratch.join("no-such-cgroup/cgroup.procs");
    let stderr = refused(&scratch, &missing).await;
    assert!(stderr.contains("no-such-cgroup"), "{stderr}");
}

#[tokio::test]
async fn a_file_outside_a_cgroup_filesystem_is_never_written() {
    let scratch = Scratch::new(0o700);
    let victim = scratch.join("cgroup.procs");
    std::fs::write(&victim, "precious").unwrap();
    let stderr = refused(&scratch, &victim).await;
    assert!(stderr.contains("not a cgroup file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// Runs a watchdog told to join `cgroup_procs`, which it must refuse (exit 70) before
/// its function (which would touch a file in `scratch`) runs; answers its stderr.
async fn refused(scratch: &Scratch, cgroup_procs: &Path) -> String {
    let ran = scratch.join("ran");
    let command = format!("sh -c 'touch {}; echo null'", ran.display());
    let finished = watchdog("STDIO", &command)
        .env("CGROUP_PROCS", cgroup_procs)
        .run()
        .await;
    assert_eq!(finished.code, 70, "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("cannot join the instance's cgroup"),
        "{finished:?}"
    );
    assert!(!ran.exists(), "the function ran");
    finished.stderr
}

#[tokio::test]
async fn it_says_it_can_join_cgroups() {
    let output = std::process::Command::new(support::watchdog_bin())
        .arg("--features")
        .output()
        .expect("run the watchdog");
    assert!(output.status.success(), "{output:?}");
    let features = String::from_utf8_lossy(&output.stdout);
    assert!(
        features.lines().any(|line| line == "cgroup-procs"),
        "{features}"
    );
}
