//! The process runtime on a host with cgroups, as root (as CI runs it): every execution
//! and warm instance runs in a cgroup of its own, so a process that leaves the
//! function's session and environment still ends with the execution (also when its
//! watchdog is SIGKILLed or the server crashes), and `memory_mb`, `pids` and `cpu` hold.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{
    function_tempdir, processes_with_env, sigkill, stdio_function, wait_pool, Server, ServerOptions,
};

const LONG: Duration = Duration::from_secs(30);

/// Controller hierarchies a server running as root puts its cgroups in.
const HIERARCHIES: &[&str] = &["memory", "pids", "cpu", "freezer", ""];

/// A server whose process runtime uses cgroups (the test fails where it cannot).
async fn contained_server() -> Server {
    contained_server_with(&[]).await
}

/// [`contained_server`], started with `args`.
async fn contained_server_with(args: &[&str]) -> Server {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root and cgroups; CI runs it as root"
    );
    let server = Server::start_with(ServerOptions {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        ..ServerOptions::default()
    })
    .await;
    assert!(
        server
            .stderr()
            .contains("every instance runs in a cgroup of its own"),
        "the server runs without cgroups: {}",
        server.stderr()
    );
    assert!(
        server.stderr().contains(", cgroups v"),
        "{}",
        server.stderr()
    );
    server
}

/// The parent cgroups of the server's data directory, in every hierarchy.
fn parents(owner: &str) -> Vec<PathBuf> {
    HIERARCHIES
        .iter()
        .map(|name| {
            Path::new("/sys/fs/cgroup")
                .join(name)
                .join(format!("gantry-{owner}"))
        })
        .filter(|dir| dir.is_dir())
        .collect()
}

/// The instance cgroups under the server's parents.
fn instance_cgroups(owner: &str) -> Vec<PathBuf> {
    parents(owner)
        .iter()
        .flat_map(|parent| std::fs::read_dir(parent).unwrap())
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

/// The cgroup file `file` of execution `id` in hierarchy `hierarchy` (or the v2 one).
fn execution_file(owner: &str, id: &str, hierarchy: &str, file: &str) -> String {
    any_execution_file(owner, id, hierarchy, file)
        .unwrap_or_else(|| panic!("no {file} for execution {id}"))
}

/// [`execution_file`], `None` where the execution has no cgroup in that hierarchy.
fn any_execution_file(owner: &str, id: &str, hierarchy: &str, file: &str) -> Option<String> {
    let name = format!("gantry-{owner}/exec-{id}/{file}");
    [
        Path::new("/sys/fs/cgroup").join(hierarchy).join(&name),
        Path::new("/sys/fs/cgroup").join(&name),
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .map(|text| text.trim().to_owned())
}

/// Cancels execution `id` and fails unless its cgroups are then removed.
async fn cancel_and_check(server: &Server, owner: &str, id: &str) {
    let (status, _, _) = server
        .call(server.request(Method::POST, &format!("/v1/executions/{id}:cancel")))
        .await;
    assert!(status.is_success());
    server.wait_terminal(id, LONG).await;
    assert_no_cgroups(owner, "the cancelled execution").await;
}

/// Waits until the escapee wrote its pid to `file` and answers it.
async fn escapee(file: &Path) -> u32 {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the function never started its escapee"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether `pid` runs (zombies do not count).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Fails unless `pid` is gone within 5 s.
async fn assert_gone(pid: u32, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the escapee {pid} outlived {after}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fails unless the server's instance cgroups are all removed within 5 s.
async fn assert_no_cgroups(owner: &str, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = instance_cgroups(owner);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cgroups left after {after}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn escaping_function(name: &str, pid_file: &Path, hold: bool) -> Value {
    let env = json!({"PID_FILE": pid_file, "HOLD": if hold { "1" } else { "0" }});
    stdio_function(name, "sh escape.sh", json!({"env": env}))
}

#[tokio::test]
async fn a_process_that_escapes_session_and_environment_ends_with_the_execution() {
    let server = contained_server().await;
    assert!(
        server
            .stderr()
            .contains("joined by the watchdog as it starts"),
        "{}",
        server.stderr()
    );
    escapee_ends_with_its_execution(&server).await;
}

#[tokio::test]
async fn a_watchdog_that_cannot_join_by_itself_is_joined_by_the_forked_child() {
    // A watchdog build from before `--features` (which ignores CGROUP_PROCS): the server
    // must contain it all the same.
    let temp = function_tempdir();
    let older = temp.path().join("older-watchdog");
    let script = format!(
        "#!/bin/bash\n[ \"$1\" = --features ] && exit 64\nunset CGROUP_PROCS\nexec -a \"$0\" {} \"$@\"\n",
        support::watchdog_bin().display()
    );
    std::fs::write(&older, script).unwrap();
    std::fs::set_permissions(&older, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let server = contained_server_with(&["--watchdog", older.to_str().unwrap()]).await;
    assert!(
        server.stderr().contains("joined between fork and exec"),
        "{}",
        server.stderr()
    );
    escapee_ends_with_its_execution(&server).await;
}

/// A function's process that leaves its session and environment ends with its execution,
/// and the execution's cgroups are removed.
async fn escapee_ends_with_its_execution(server: &Server) {
    let owner = server.owner_id();
    let temp = function_tempdir();
    let pid_file = temp.path().join("escapee.pid");
    server
        .deploy(escaping_function("escape", &pid_file, false))
        .await;
    let (status, body) = server.invoke("escape", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], "escaped", "{body}");
    let pid = escapee(&pid_file).await;
    // Nothing marks it as the function's: only the cgroup knew.
    assert!(!support::process_has_env(
        pid,
        &format!("GANTRY_OWNER={owner}")
    ));
    assert_gone(pid, "its execution").await;
    assert_no_cgroups(&owner, "the execution").await;
}

#[tokio::test]
async fn the_escapee_ends_too_when_the_watchdog_is_killed_hard() {
    let server = contained_server().await;
    let owner = server.owner_id();
    let temp = function_tempdir();
    let pid_file = temp.path().join("escapee.pid");
    server
        .deploy(escaping_function("held", &pid_file, true))
        .await;
    let id = server.enqueue("held", json!(null)).await;
    let pid = escapee(&pid_file).await;
    let processes = server.wait_process(&id, "watchdog", LONG).await;
    let (watchdog, _) = processes
        .iter()
        .find(|(_, cmdline)| cmdline.contains("watchdog"))
        .unwrap_or_else(|| panic!("no watchdog among {processes:?}"));
    sigkill(*watchdog);
    let execution = server.wait_terminal(&id, LONG).await;
    assert_eq!(execution["status"], "error", "{execution}");
    assert_gone(pid, "its killed watchdog").await;
    assert_no_cgroups(&owner, "the killed watchdog").await;
}

#[tokio::test]
async fn memory_pids_and_cpu_limits_hold() {
    let server = contained_server().await;
    let owner = server.owner_id();
    let limits = json!({"resources": {"memory_mb": 64, "timeout_ms": 30000}});
    let hog = server
        .deploy(stdio_function("hog", "python3 hog.py", limits))
        .await;
    assert!(hog.get("warnings").is_none(), "limits are enforced: {hog}");
    let (status, body) = server.invoke("hog", json!({"hog": true})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "OOM_KILLED", "{body}");
    // The server stays up, and so does the function below its limit.
    let (status, body) = server.invoke("hog", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"ok": true}));

    let forks = json!({"resources": {"pids": 16, "timeout_ms": 30000}});
    server
        .deploy(stdio_function("forks", "python3 forks.py", forks))
        .await;
    let (status, body) = server.invoke("forks", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let forked = body["output"]["forked"].as_u64().expect("forked");
    assert!((1..16).contains(&forked), "forked {forked} of 100: {body}");
    assert_no_cgroups(&owner, "the fork bomb").await;
    let (status, _) = server.invoke("hog", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "the host still runs functions");

    let temp = function_tempdir();
    let pid_file = temp.path().join("escapee.pid");
    let mut held = escaping_function("held", &pid_file, true);
    held["resources"] = json!({"cpu": 0.5, "memory_mb": 96, "pids": 40});
    let deployed = server.deploy(held).await;
    assert!(deployed.get("warnings").is_none(), "{deployed}");
    let id = server.enqueue("held", json!(null)).await;
    escapee(&pid_file).await;
    assert_eq!(
        execution_file(&owner, &id, "cpu", "cpu.cfs_quota_us"),
        "50000"
    );
    assert_eq!(
        execution_file(&owner, &id, "cpu", "cpu.cfs_period_us"),
        "100000"
    );
    assert_eq!(
        execution_file(&owner, &id, "memory", "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(execution_file(&owner, &id, "pids", "pids.max"), "40");
    cancel_and_check(&server, &owner, &id).await;
}

/// The memory and process limits a manifest does not set are the server's defaults,
/// which `--process-memory-mb` and `--process-pids` change and 0 turns off (a memory
/// limit too small to start anything is refused).
#[tokio::test]
async fn a_manifest_without_limits_gets_the_servers_defaults() {
    let (code, stderr) = support::serve_exits(&["--process-memory-mb", "5"], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("0 (no limit) or at least 6"), "{stderr}");
    let (code, stderr) = support::serve_exits(&["--process-pids", "4194305"], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("4194305 is not in 0..=4194304"), "{stderr}");
    let temp = function_tempdir();
    let pid_file = temp.path().join("escapee.pid");
    let unlimited = [None, Some("max".to_owned())];
    for (args, memory_mb, pids) in [
        (&[][..], Some(256u64), Some("256")),
        (
            &["--process-memory-mb", "128", "--process-pids", "64"][..],
            Some(128),
            Some("64"),
        ),
        (
            &["--process-memory-mb", "0", "--process-pids", "0"][..],
            None,
            None,
        ),
    ] {
        let _ = std::fs::remove_file(&pid_file);
        let server = contained_server_with(args).await;
        let owner = server.owner_id();
        let deployed = server
            .deploy(escaping_function("plain", &pid_file, true))
            .await;
        assert!(deployed.get("warnings").is_none(), "{deployed}");
        let id = server.enqueue("plain", json!(null)).await;
        escapee(&pid_file).await;
        let memory = any_execution_file(&owner, &id, "memory", "memory.limit_in_bytes");
        match memory_mb {
            Some(mb) => assert_eq!(memory, Some((mb << 20).to_string()), "{args:?}"),
            // No cgroup in the hierarchy, or one without a limit (the page-rounded
            // largest value).
            None => assert!(
                memory.as_ref().is_none_or(|bytes| bytes.len() >= 18),
                "{args:?}: {memory:?}"
            ),
        }
        let max = any_execution_file(&owner, &id, "pids", "pids.max");
        match pids {
            Some(pids) => assert_eq!(max.as_deref(), Some(pids), "{args:?}"),
            None => assert!(unlimited.contains(&max), "{args:?}: {max:?}"),
        }
        cancel_and_check(&server, &owner, &id).await;
    }
}

#[tokio::test]
async fn a_warm_instance_reports_the_oom_kill_of_a_call_and_serves_on() {
    let server = contained_server().await;
    let owner = server.owner_id();
    let mut manifest = stdio_function(
        "warm-hog",
        "python3 hog.py",
        json!({"resources": {"memory_mb": 64, "timeout_ms": 30000}}),
    );
    manifest["warm"] = json!({"min_instances": 1, "max_instances": 1});
    server.deploy(manifest).await;
    wait_pool(&server, "warm-hog", "an idle instance", |p| p["idle"] == 1).await;
    assert!(
        !instance_cgroups(&owner).is_empty(),
        "the instance has a cgroup"
    );
    let (status, body) = server.invoke("warm-hog", json!({"hog": true})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "OOM_KILLED", "{body}");
    let (status, body) = server.invoke("warm-hog", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"ok": true}));
    // A later failure is its own, not the earlier kill's.
    let (status, body) = server.invoke("warm-hog", json!({"fail": true})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_ne!(body["error"]["code"], "OOM_KILLED", "{body}");
    // Removing the function stops the instance and removes its cgroup.
    let (status, _, _) = server
        .call(server.request(Method::DELETE, "/v1/functions/warm-hog"))
        .await;
    assert!(status.is_success());
    assert_no_cgroups(&owner, "the warm instance").await;
}

#[tokio::test]
async fn the_next_start_kills_and_removes_a_crashed_servers_cgroups() {
    let mut server = contained_server().await;
    let owner = server.owner_id();
    let temp = function_tempdir();
    let pid_file = temp.path().join("escapee.pid");
    server
        .deploy(escaping_function("held", &pid_file, true))
        .await;
    let id = server.enqueue("held", json!(null)).await;
    let pid = escapee(&pid_file).await;
    server.kill9().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(pid), "the escapee outlives the crashed server");
    assert!(!instance_cgroups(&owner).is_empty());

    let restarted = server.restart(ServerOptions::default()).await;
    assert_gone(pid, "the next start").await;
    assert_no_cgroups(&owner, "the next start").await;
    let execution = restarted.wait_terminal(&id, LONG).await;
    assert_ne!(execution["status"], "running", "{execution}");
    assert!(processes_with_env(&format!("GANTRY_OWNER={owner}")).is_empty());
}

#[tokio::test]
async fn joins_are_made_fast_for_the_host_unless_turned_off() {
    let server = contained_server().await;
    let said = server.stderr();
    let Some((_, on)) = said.split_once("fast cgroup joins (favordynmods, on ") else {
        panic!("{said}");
    };
    let dir = on.split(')').next().unwrap();
    // The hierarchy that carries the option stays mounted, once however many servers
    // start together: tools that look up the mount of each hierarchy a process is in
    // (containerd's OOM watch) must find it.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let carriers: Vec<&str> = mounts
        .lines()
        .filter(|line| line.contains("favordynmods"))
        .collect();
    let here = carriers
        .iter()
        .filter(|line| line.split(' ').nth(1) == Some(dir));
    assert_eq!(here.count(), 1, "{dir}: {mounts}");
    if dir == "/run/gantry-dynmods" {
        assert!(carriers[0].contains("name=gantry-dynmods"), "{mounts}");
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(
            cgroups
                .lines()
                .any(|line| line.ends_with(":name=gantry-dynmods:/")),
            "{cgroups}"
        );
    }
    drop(server);

    let server = contained_server_with(&["--cgroup-favordynmods", "off"]).await;
    assert!(
        server
            .stderr()
            .contains("cgroup joins as the host has them (--cgroup-favordynmods off)"),
        "{}",
        server.stderr()
    );
}

#[test]
fn joins_are_made_fast_when_only_warnings_are_logged() {
    // A mount namespace of its own, without the hierarchy an earlier server mounted, is a
    // host where nobody has turned the mode on yet.
    const FRESH_HOST: &str = r#"umount /run/gantry-dynmods 2>/dev/null
        if grep -q favordynmods /proc/self/mounts; then echo "a hierarchy with favordynmods is mounted elsewhere" >&2; exit 3; fi
        exec "$0" serve --listen 127.0.0.1:0 --data-dir "$1""#;
    let data = function_tempdir();
    let mut server = support::serve_command("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            FRESH_HOST,
        ])
        .arg(support::gantry_bin())
        .arg(data.path().join("data"))
        .env("GANTRY_LOG", "warn")
        .spawn()
        .expect("run unshare (util-linux)");
    let said = support::said_until_listening(server.stderr.take().unwrap());
    let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", server.id()));
    let stopped = support::sigterm_and_wait(&mut server);
    let Ok(mounts) = mounts else {
        panic!("the server did not start: {said}");
    };
    assert!(
        mounts
            .lines()
            .any(|line| line.starts_with("cgroup /run/gantry-dynmods ")
                && line.contains("favordynmods")),
        "{said}\n{mounts}"
    );
    assert!(stopped.success(), "{stopped}: {said}");
}
