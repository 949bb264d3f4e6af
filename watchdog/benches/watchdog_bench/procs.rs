//! Child processes of the benchmark: spawning the watchdog and the runtime with their
//! output in log files, stopping them (SIGTERM, then SIGKILL) even on an early return,
//! checking nothing is left behind, and reading a process's memory from /proc.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gantry_bench_support::children;
use gantry_bench_support::process::{self, log_tail, path_only, terminate};
use gantry_bench_support::stats::{Sample, Variant};

pub use gantry_bench_support::process::{cpu_time, is_alive};

use crate::BenchResult;

/// Where the children's output goes: one log file per child, under the system temp dir.
pub fn log_dir() -> PathBuf {
    process::log_dir("watchdog")
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A child that is stopped when dropped: SIGTERM, then SIGKILL after a grace period.
pub struct Guarded {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Guarded {
    /// Spawns `command` with stdin from /dev/null and stdout and stderr appended to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, command: &mut Command) -> BenchResult<Guarded> {
        std::fs::create_dir_all(log_dir())?;
        let log = log_dir().join(format!("{name}.log"));
        let file = File::options().create(true).append(true).open(&log)?;
        let child = children::spawn(
            command
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file),
        )
        .map_err(|err| format!("cannot start {name}: {err}"))?;
        Ok(Guarded {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails, with the end of its log, when the child has exited.
    pub fn check_alive(&mut self) -> BenchResult<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} was already stopped", self.name).into());
        };
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!(
                "{} exited early with {status}; its log ({}) ends with:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 10)
            )
            .into()),
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the exit, then SIGKILLs. Returns the
    /// status and how long the exit took.
    pub fn stop(&mut self, grace: Duration) -> BenchResult<(ExitStatus, Duration)> {
        let Some(child) = self.child.take() else {
            return Err(format!("{} was already stopped", self.name).into());
        };
        terminate(child, grace, &self.name)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(err) = self.stop(Duration::from_secs(3)) {
                eprintln!("cleanup: {err}");
            }
        }
    }
}

/// Pids of the live processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let mut fields = after_comm.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|ppid| ppid.parse::<u32>().ok());
            ppid == Some(parent) && state != Some("Z")
        })
        .collect()
}

/// Memory of a process from /proc/PID/status, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM).
    pub hwm_kib: u64,
    /// Open sockets (listening, accepted and pooled connections).
    pub sockets: usize,
}

/// Reads VmRSS and VmHWM of `pid` and counts its open sockets.
pub fn memory(pid: u32) -> BenchResult<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> BenchResult<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib = line[name.len()..].trim().trim_end_matches("kB").trim();
        Ok(kib.parse()?)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        sockets: std::fs::read_dir(format!("/proc/{pid}/fd"))?
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count(),
    })
}

/// The watchdog binary: `WATCHDOG_BIN`, else the one cargo built for this bench.
pub fn watchdog_bin() -> PathBuf {
    std::env::var_os("WATCHDOG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_watchdog")))
}

/// A command running the watchdog with only `vars` (plus PATH) in its environment.
pub fn watchdog_command(vars: &[(&str, String)]) -> Command {
    let mut command = path_only(watchdog_bin());
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// This benchmark's own executable, quoted for WATCHDOG_CMD's shell-style parsing.
pub fn self_command() -> BenchResult<String> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("the bench's path is not UTF-8")?;
    if exe.contains('\'') {
        return Err(format!("cannot quote the bench's path {exe:?}").into());
    }
    Ok(format!("'{exe}'"))
}

/// `cat` resolved on PATH once. An absolute program lets std spawn it with
/// `posix_spawn` (vfork) even with a cleared environment, which makes this baseline a
/// strict floor: no PATH search per call.
fn cat_path() -> BenchResult<&'static Path> {
    static CAT: OnceLock<Option<PathBuf>> = OnceLock::new();
    CAT.get_or_init(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("cat"))
            .find(|candidate| candidate.is_file())
    })
    .as_deref()
    .ok_or_else(|| "no cat on PATH".into())
}

/// Spawns `cat` directly, writes `payload`, reads it back and reaps it: the baseline
/// for a process per call. Returns how long that took.
pub fn run_cat(payload: &[u8]) -> BenchResult<Duration> {
    let cat = cat_path()?;
    let started = Instant::now();
    // About the environment a watchdog gives its function: PATH and a few variables.
    let mut child = path_only(cat)
        .env("EXECUTION_ID", "bench-exec")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(payload));
    let mut output = Vec::new();
    let read = child
        .stdout
        .take()
        .map(|mut stdout| stdout.read_to_end(&mut output));
    let status = child.wait()?;
    let took = started.elapsed();
    written.transpose()?;
    read.transpose()?;
    if !status.success() || output != payload {
        return Err(format!("cat exited with {status} and echoed {output:?}").into());
    }
    Ok(took)
}

/// The label of the direct-`cat` variant.
pub const CAT_DIRECT: &str = "cat spawned directly";

/// A variant spawning `cat` directly `calls` times per round.
pub fn cat_variant(calls: usize) -> Variant<'static> {
    Variant::new(CAT_DIRECT, move |_warm_up| {
        let started = Instant::now();
        let latencies = (0..calls)
            .map(|_| run_cat(crate::PAYLOAD))
            .collect::<BenchResult<Vec<_>>>()?;
        Ok(Sample::timed(latencies, started.elapsed()))
    })
}
