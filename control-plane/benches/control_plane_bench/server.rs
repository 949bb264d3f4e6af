//! The processes of the benchmark: the release `gantry serve` (started on port 0 with a
//! data directory, stopped with SIGTERM, restarted on the same directory), the watchdog
//! run directly, and the sweep that finds anything a server left running.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gantry_bench_support::children;
use gantry_bench_support::process::{self, log_tail, path_only, terminate};
use gantry_bench_support::repository_root;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use gantry_bench_support::process::{cpu_time, is_alive};

use crate::client::Call;
use crate::BenchResult;

/// Where the servers' stderr goes: one log file per start, under the system temp dir.
pub fn log_dir() -> PathBuf {
    process::log_dir("control-plane")
}

/// The `gantry` binary: `GANTRY_BIN`, else the one cargo built for this bench (the
/// release profile under `cargo bench`: target/release/gantry).
pub fn gantry_bin() -> PathBuf {
    std::env::var_os("GANTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gantry")))
}

/// The watchdog the servers run: `WATCHDOG_BIN`, else target/static/watchdog.
pub fn watchdog_bin() -> PathBuf {
    std::env::var_os("WATCHDOG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/static/watchdog"))
}

/// Fails unless the `gantry` and watchdog binaries the servers run are there, naming
/// `make_target` as what builds them.
pub fn check_binaries(make_target: &str) -> BenchResult<()> {
    for (what, path) in [
        ("GANTRY_BIN", gantry_bin()),
        ("WATCHDOG_BIN", watchdog_bin()),
    ] {
        if !path.is_file() {
            return Err(format!(
                "{what}: {} does not exist; `{make_target}` builds both",
                path.display()
            )
            .into());
        }
    }
    Ok(())
}

/// A running `gantry serve`; stopped (and its leftovers killed) when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// From spawn until it printed its listening line (recovery included).
    pub started_in: Duration,
    data_dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    /// Killed with SIGKILL on purpose: its processes are left for recovery to find.
    crashed: bool,
}

impl Server {
    /// Starts `gantry serve --listen 127.0.0.1:0 --data-dir DATA_DIR
    /// --shutdown-grace-ms 0` with the static watchdog and `GANTRY_LOG=warn`, and waits
    /// for its `gantry listening on http://…` line.
    pub fn start(name: &str, data_dir: &Path) -> BenchResult<Server> {
        Server::start_with(name, data_dir, &[], &[])
    }

    /// [`Server::start`] with more arguments after the usual ones (`--database-url`,
    /// `--node-id`, …) and more environment variables (`GANTRY_SECRET_KEY`, …).
    pub fn start_with(
        name: &str,
        data_dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> BenchResult<Server> {
        std::fs::create_dir_all(log_dir())?;
        let log = log_dir().join(format!("{name}.log"));
        let mut command = Command::new(gantry_bin());
        // Settings of the caller's shell (a token, say) must not change what is measured.
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("GANTRY_") {
                command.env_remove(var);
            }
        }
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--shutdown-grace-ms", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("GANTRY_WATCHDOG", watchdog_bin())
            .env("GANTRY_TOKEN", crate::client::TOKEN)
            .env("GANTRY_LOG", "warn")
            .args(args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = children::spawn(&mut command)
            .map_err(|err| format!("cannot start {}: {err}", gantry_bin().display()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let mut file = std::fs::File::create(&log)?;
        let (tx, rx) = mpsc::channel();
        // Copies stderr to the log until the server exits; the first listening line's
        // URL is sent back.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(rest) = line.strip_prefix("gantry listening on ") {
                    if let Some(tx) = tx.take() {
                        let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = tx.send(url);
                    }
                }
            }
        });
        let mut server = Server {
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            started_in: Duration::ZERO,
            data_dir: data_dir.to_owned(),
            child: Some(child),
            log,
            crashed: false,
        };
        let limit = Duration::from_secs(120);
        let url = rx.recv_timeout(limit).map_err(|_| {
            format!(
                "{name}: no `gantry listening on` line within {limit:?}; its log ({}) ends with:\n{}",
                server.log.display(),
                log_tail(&server.log, 15)
            )
        })?;
        server.started_in = started.elapsed();
        server.addr = url
            .strip_prefix("http://")
            .and_then(|host| host.parse().ok())
            .ok_or_else(|| format!("{name}: cannot parse the listening URL {url:?}"))?;
        server.url = url;
        Ok(server)
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Deploys a function from its JSON manifest (`POST /v1/functions`).
    pub async fn deploy(&self, manifest: serde_json::Value) -> BenchResult<()> {
        let answer = Call::post("/v1/functions", manifest.to_string())
            .once(self.addr)
            .await?;
        if !answer.status.is_success() {
            return Err(format!(
                "deploying {manifest} answered {}: {}",
                answer.status,
                answer.text()
            )
            .into());
        }
        Ok(())
    }

    /// `GET path`, which must answer 200; the body as JSON, or as text for /metrics.
    pub async fn get(&self, path: &str) -> BenchResult<crate::client::Answer> {
        let answer = Call::get(path).once(self.addr).await?;
        if answer.status != hyper::StatusCode::OK {
            return Err(format!("GET {path} answered {}: {}", answer.status, answer.text()).into());
        }
        Ok(answer)
    }

    /// SIGTERM (the server runs with `--shutdown-grace-ms 0`), then waits up to `limit`
    /// for the exit. Returns the status and how long the exit took.
    pub fn stop(&mut self, limit: Duration) -> BenchResult<(ExitStatus, Duration)> {
        let child = self.child.take().ok_or("the server was already stopped")?;
        terminate(child, limit, "the server")
    }

    /// Kills the server with SIGKILL, like a crash, and reaps it; the processes it
    /// started keep running, for the next server on the data directory to find.
    pub fn crash(mut self) -> BenchResult<()> {
        let mut child = self.child.take().ok_or("the server was already stopped")?;
        child.kill()?;
        child.wait()?;
        self.crashed = true;
        Ok(())
    }

    /// Stops the server and returns how many of its processes were still running after
    /// it exited (they are SIGKILLed).
    pub fn stop_and_sweep(&mut self) -> BenchResult<(Duration, usize)> {
        let (status, took) = self.stop(Duration::from_secs(30))?;
        if !status.success() {
            return Err(format!(
                "the server exited with {status} on SIGTERM; its log ({}) ends with:\n{}",
                self.log.display(),
                log_tail(&self.log, 15)
            )
            .into());
        }
        Ok((took, sweep(&self.data_dir)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.crashed {
            return; // what it left is the next server's to clean up
        }
        if self.child.is_some() {
            if let Err(err) = self.stop(Duration::from_secs(10)) {
                eprintln!("cleanup: {err}");
            }
        }
        let left = sweep(&self.data_dir);
        if left > 0 {
            eprintln!("cleanup: killed {left} process(es) a stopped server left running");
        }
    }
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Pids of the live processes marked `GANTRY_OWNER=<DATA_DIR/owner-id>`: what a server
/// on that data directory started (watchdogs and functions).
pub fn marked(data_dir: &Path) -> Vec<u32> {
    let Ok(owner) = std::fs::read_to_string(data_dir.join("owner-id")) else {
        return Vec::new();
    };
    let marker = format!("GANTRY_OWNER={}", owner.trim());
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            // A zombie's environ reads empty, so only live processes match.
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let has = environ
                .split(|&byte| byte == 0)
                .any(|var| var == marker.as_bytes());
            (has && pid != own).then_some(pid)
        })
        .collect()
}

/// SIGKILLs every process [`marked`] for `data_dir` and returns how many there were.
pub fn sweep(data_dir: &Path) -> usize {
    marked(data_dir)
        .into_iter()
        .filter(|&pid| kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok())
        .count()
}

/// Runs the watchdog once, directly, as a one-shot STDIO execution of `cat` with the
/// payload `{}` and no CALLBACK_URL (it prints its report on stdout and exits 0).
/// Returns the time from spawn to exit.
pub fn run_watchdog_directly() -> BenchResult<Duration> {
    let mut command = path_only(watchdog_bin());
    command
        .env("EXECUTION_MODE", "STDIO")
        .env("WATCHDOG_CMD", "cat")
        .env("INVOCATION_PAYLOAD", "{}")
        .env("EXECUTION_ID", "bench-direct")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let output = command.output()?;
    let took = started.elapsed();
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !report.contains(r#""success":true"#) {
        return Err(format!(
            "the watchdog run directly exited with {}: {report}",
            output.status
        )
        .into());
    }
    Ok(took)
}

/// Context switches of a process so far, all its threads together (voluntary and not,
/// from /proc/PID/task/*/status).
pub fn context_switches(pid: u32) -> BenchResult<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue; // a thread that just exited
        };
        for line in status.lines() {
            if let Some((name, value)) = line.split_once(':') {
                if name.ends_with("voluntary_ctxt_switches") {
                    total += value.trim().parse::<u64>()?;
                }
            }
        }
    }
    Ok(total)
}
