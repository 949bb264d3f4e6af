//! Process helpers for tests: finding, identifying and killing processes by environment.

#![allow(dead_code)]

use super::*;

/// Live processes (not zombies) whose environment holds `KEY=VALUE`.
pub fn processes_with_env(var: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == var.as_bytes()) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

// ---- Helpers for the crash-safety and lifecycle tests (tests/recovery.rs, lifecycle.rs).

impl Server {
    /// Live processes of execution `id` started by this data directory's servers.
    pub fn execution_processes(&self, id: &str) -> Vec<(u32, String)> {
        let marker = format!("EXECUTION_ID={id}");
        self.instance_processes()
            .into_iter()
            .filter(|(pid, _)| process_has_env(*pid, &marker))
            .collect()
    }

    /// Waits (at most `within`) until a live process of execution `id` has `needle` in
    /// its command line, and answers all of the execution's processes then.
    pub async fn wait_process(
        &self,
        id: &str,
        needle: &str,
        within: Duration,
    ) -> Vec<(u32, String)> {
        let deadline = Instant::now() + within;
        loop {
            let found = self.execution_processes(id);
            if found.iter().any(|(_, cmdline)| cmdline.contains(needle)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} never ran {needle:?}: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Whether process `pid` has `KEY=VALUE` in its environment.
pub fn process_has_env(pid: u32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|environ| environ.split(|b| *b == 0).any(|v| v == var.as_bytes()))
        .unwrap_or(false)
}

/// A process's identity that survives pid reuse: its pid and start time (in clock
/// ticks after boot), or `None` if it is gone.
pub fn process_identity(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, starttime field 22 of stat(5).
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((pid, fields.get(19)?.parse().ok()?))
}

/// Whether the process `identity` (from [`process_identity`]) still runs (zombies do not).
pub fn still_alive(identity: (u32, u64)) -> bool {
    process_identity(identity.0) == Some(identity)
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// SIGTERMs `child` and waits for it to end.
pub fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the child");
    child.wait().expect("wait for the child")
}

/// Copies fixture `name` into `dir` as an executable file (so the test does not depend
/// on the checkout keeping the executable bit) and answers its path.
pub fn executable_fixture(name: &str, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let target = dir.join(name);
    std::fs::copy(fixture(name), &target).expect("copy the fixture");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .expect("make the fixture executable");
    target
}

/// `program` (`gantry`, or a wrapper that ends in `gantry serve`) set up to start a
/// server the test drives by signals: the test's watchdog, none of the caller's
/// settings, stderr piped for [`said_until_listening`].
pub fn serve_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    for var in CALLER_SETTINGS {
        command.env_remove(var);
    }
    command
        .env("GANTRY_WATCHDOG", watchdog_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// What `stderr` said until the server listened (or ended, or 30 s passed).
pub fn said_until_listening(stderr: std::process::ChildStderr) -> String {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut said = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        said.push_str(&line);
        said.push('\n');
        if line.contains("listening on ") {
            break;
        }
    }
    said
}
