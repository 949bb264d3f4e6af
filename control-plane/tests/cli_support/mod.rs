//! Running the `gantry` CLI as a user does, for the end-to-end CLI tests
//! (tests/cli*.rs): a clean environment pointed at one server, stdout, stderr and the
//! exit code captured, and a way to start `gantry serve` the way a user would.

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub mod build;

use crate::support::{gantry_bin, processes_with_env, watchdog_bin, Server};

/// How long any one CLI command may take before the test fails.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Environment variables of the CLI that must not leak in from the test's environment.
const CLI_ENV: [&str; 6] = [
    "GANTRY_URL",
    "GANTRY_TOKEN",
    "GANTRY_TOKEN_FILE",
    "GANTRY_DATA_DIR",
    "GANTRY_OUTPUT",
    "GANTRY_LOG",
];

/// A `gantry` command being put together.
pub struct Gantry {
    command: Command,
    stdin: Option<Vec<u8>>,
    shown: String,
}

/// A `gantry` command without a server: clean environment, run from the temp directory
/// (so nothing resolves against the repository by accident).
pub fn gantry<I, S>(args: I) -> Gantry
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(gantry_bin());
    let mut shown = String::from("gantry");
    for arg in args {
        shown.push(' ');
        shown.push_str(&arg.as_ref().to_string_lossy());
        command.arg(arg);
    }
    for key in CLI_ENV {
        command.env_remove(key);
    }
    command
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Gantry {
        command,
        stdin: None,
        shown,
    }
}

/// A `gantry` command talking to `server` through `GANTRY_URL`, with the server's
/// token in GANTRY_TOKEN.
pub fn cli<I, S>(server: &Server, args: I) -> Gantry
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let command = gantry(args).env("GANTRY_URL", &server.url);
    match &server.token {
        Some(token) => command.env("GANTRY_TOKEN", token),
        None => command,
    }
}

/// A `gantry` command talking to `server` without any token.
pub fn cli_without_token<I, S>(server: &Server, args: I) -> Gantry
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    gantry(args).env("GANTRY_URL", &server.url)
}

impl Gantry {
    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Gantry {
        self.command.env(key, value);
        self
    }

    /// Runs in `dir`.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Gantry {
        self.command.current_dir(dir);
        self
    }

    /// Feeds `bytes` on standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Gantry {
        self.stdin = Some(bytes.into());
        self.command.stdin(Stdio::piped());
        self
    }

    /// Starts the command with stdout and stderr piped, for reading while it runs.
    pub fn spawn(mut self) -> Child {
        self.command
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.shown))
    }

    /// Runs the command to its end (at most [`COMMAND_LIMIT`]).
    pub async fn run(mut self) -> Output {
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.shown));
        if let Some(bytes) = self.stdin.take() {
            let mut stdin = child.stdin.take().expect("stdin piped");
            stdin.write_all(&bytes).await.expect("write stdin");
            drop(stdin);
        }
        let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish within {COMMAND_LIMIT:?}", self.shown))
            .expect("wait for gantry");
        Output {
            shown: self.shown,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs the command and asserts exit code 0 and a quiet stderr.
    pub async fn ok(self) -> Output {
        let out = self.run().await;
        out.assert_code(0);
        assert!(out.stderr.is_empty(), "{out}\nexpected nothing on stderr");
        out
    }
}

/// What a finished command printed, and how it exited.
pub struct Output {
    pub shown: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.shown, self.code, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// Asserts the exit code.
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, Some(code), "{self}");
        self
    }

    /// Asserts a failure as a user sees it: exit `code`, nothing on stdout, and exactly
    /// one stderr line, which starts with `prefix`. Answers that line.
    pub fn assert_error(&self, code: i32, prefix: &str) -> String {
        self.assert_code(code);
        assert!(self.stdout.is_empty(), "{self}\nexpected nothing on stdout");
        self.one_error_line(prefix)
    }

    /// Asserts that stderr is exactly one line starting with `prefix`; answers it.
    pub fn one_error_line(&self, prefix: &str) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{self}\nexpected one line on stderr");
        assert!(
            lines[0].starts_with(prefix),
            "{self}\nexpected stderr to start with {prefix:?}"
        );
        lines[0].to_owned()
    }

    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("{self}\nstdout is not JSON: {err}"))
    }

    /// The non-empty stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The table rows (after the header) whose first column is `first`, split on runs
    /// of whitespace.
    pub fn rows_of(&self, first: &str) -> Vec<Vec<&str>> {
        self.lines()
            .into_iter()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|cells| cells.first() == Some(&first))
            .collect()
    }

    /// The columns of the table's header line.
    pub fn header(&self) -> Vec<&str> {
        self.lines()
            .first()
            .map(|line| line.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// The value of a `key: value` line (`exec get`, `fn get`).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then(|| v.trim())
        })
    }
}

/// A `gantry serve` started by hand, the way a user starts it: from `cwd`, with `args`
/// after `serve` (no harness defaults), the test's watchdog, and no token.
pub struct ManualServer {
    pub url: String,
    pub owner_file: PathBuf,
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ManualServer {
    /// Starts it and waits (at most 30 s) for its "listening on" line.
    pub async fn start(cwd: &Path, args: &[&str], data_dir: &Path) -> ManualServer {
        let mut command = Command::new(gantry_bin());
        command.arg("serve").args(args);
        for key in CLI_ENV {
            command.env_remove(key);
        }
        let mut child = command
            .env_remove("GANTRY_DATA_DIR")
            .env_remove("GANTRY_LISTEN")
            .env("GANTRY_WATCHDOG", watchdog_bin())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start gantry serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = stderr.clone();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.split_whitespace().next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("gantry serve prints its address");
        // Keep draining stderr so the server never blocks on a full pipe.
        let seen = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        ManualServer {
            url,
            owner_file: data_dir.join("owner-id"),
            child,
            stderr,
        }
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Live processes this server started.
    pub fn instances(&self) -> Vec<(u32, String)> {
        let owner = std::fs::read_to_string(&self.owner_file).expect("owner-id");
        processes_with_env(&format!("GANTRY_OWNER={}", owner.trim()))
    }

    /// Stops it (SIGKILL) and waits.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

impl Drop for ManualServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Ok(owner) = std::fs::read_to_string(&self.owner_file) {
            crate::support::remove_what_a_killed_server_leaves(owner.trim());
        }
    }
}

/// Reads `reader` line by line until a line satisfying `want` arrives (at most
/// `within`); answers every line read, the matching one last.
pub async fn read_until<R>(
    lines: &mut tokio::io::Lines<BufReader<R>>,
    within: Duration,
    want: impl Fn(&str) -> bool,
) -> Vec<String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = want(&line);
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "the wanted line never came within {within:?}; got {seen:?}"
    );
    seen
}
