//! The processes a bench starts and watches: where their logs go, a clean environment,
//! stopping one with SIGTERM (then SIGKILL), and what /proc says about a process.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{children, BenchResult};

/// Where a bench's children write their logs: `gantry-<bench>-bench-<pid>` under the
/// system temp dir, one directory per run.
pub fn log_dir(bench: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gantry-{bench}-bench-{}", std::process::id()))
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A command running `program` with only PATH in its environment, about what a
/// watchdog gives its function; the caller adds the variables it needs.
pub fn path_only(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit; returns the status
/// and how long the exit took. After `grace` it is SIGKILLed and reaped, and the error
/// says that `name` (e.g. "the server") ignored SIGTERM. Either way its pid is forgotten
/// by [`children`].
pub fn terminate(
    mut child: Child,
    grace: Duration,
    name: &str,
) -> BenchResult<(ExitStatus, Duration)> {
    let started = Instant::now();
    let pid = child.id();
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    while started.elapsed() < grace {
        if let Some(status) = child.try_wait()? {
            children::forget(pid);
            return Ok((status, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let status = child.wait()?;
    children::forget(pid);
    Err(format!("{name} ignored SIGTERM for {grace:?} and was killed ({status})").into())
}

/// Whether process `pid` still exists (zombies count as gone).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits until processes `pids` together use less than a tenth of one core over 100 ms
/// (work left over from the last measurement, such as records written behind, would
/// otherwise be charged to the next one), or until `limit` has passed.
pub fn settle(pids: &[u32], limit: Duration) -> BenchResult<()> {
    const WINDOW: Duration = Duration::from_millis(100);
    let started = Instant::now();
    let used = || -> BenchResult<Duration> {
        pids.iter()
            .map(|&pid| cpu_time(pid))
            .sum::<BenchResult<Duration>>()
    };
    let mut before = used()?;
    loop {
        std::thread::sleep(WINDOW);
        let now = used()?;
        if now.saturating_sub(before) < WINDOW / 10 || started.elapsed() >= limit {
            return Ok(());
        }
        before = now;
    }
}

/// CPU time a process has used so far, all its threads together (schedstat, in ns).
pub fn cpu_time(pid: u32) -> BenchResult<Duration> {
    Ok(threads(pid)?.values().map(|thread| thread.usage.cpu).sum())
}

/// One thread of a process, as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Its name (`comm`), which threads of one pool share.
    pub name: String,
    /// What it has used so far.
    pub usage: Usage,
}

/// What a thread (or threads) used of the scheduler, from its `schedstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time it ran.
    pub cpu: Duration,
    /// Time it was ready to run but waited for a CPU.
    pub waited: Duration,
    /// Times it was put on a CPU: one more for every switch to it.
    pub runs: u64,
}

impl Usage {
    /// What was used between `earlier` and `self` (readings of the same thread).
    fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            waited: self.waited.saturating_sub(earlier.waited),
            runs: self.runs.saturating_sub(earlier.runs),
        }
    }

    /// Adds `other`'s use to this one.
    pub fn add(&mut self, other: Usage) {
        self.cpu += other.cpu;
        self.waited += other.waited;
        self.runs += other.runs;
    }
}

/// The live threads of process `pid` by thread id (one that exits while they are read
/// is left out).
pub fn threads(pid: u32) -> BenchResult<BTreeMap<u32, Thread>> {
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path();
        let Some(tid) = path
            .file_name()
            .and_then(|name| name.to_str()?.parse().ok())
        else {
            continue;
        };
        let (Ok(schedstat), Ok(name)) = (
            std::fs::read_to_string(path.join("schedstat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue; // a thread that just exited
        };
        // Nanoseconds on a CPU, nanoseconds waiting for one, and times run.
        let mut fields = schedstat.split_whitespace().map(str::parse::<u64>);
        let mut next = || fields.next().unwrap_or(Ok(0));
        let usage = Usage {
            cpu: Duration::from_nanos(next()?),
            waited: Duration::from_nanos(next()?),
            runs: next()?,
        };
        let name = name.trim_end().to_owned();
        threads.insert(tid, Thread { name, usage });
    }
    Ok(threads)
}

/// What was used between two readings of [`threads`], summed by thread name (threads
/// started in between count from zero).
pub fn used_by_name(
    before: &BTreeMap<u32, Thread>,
    after: &BTreeMap<u32, Thread>,
) -> BTreeMap<String, Usage> {
    let mut used = BTreeMap::<String, Usage>::new();
    for (tid, thread) in after {
        let earlier = before
            .get(tid)
            .filter(|earlier| earlier.name == thread.name)
            .map_or(Usage::default(), |earlier| earlier.usage);
        let since = thread.usage.since(earlier);
        used.entry(thread.name.clone()).or_default().add(since);
    }
    used
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::{
        cpu_time, is_alive, log_dir, log_tail, path_only, terminate, threads, used_by_name,
    };

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = log_dir("bench-support-test");
        std::fs::create_dir_all(&dir).expect("log dir");
        let path = dir.join("tail.log");
        std::fs::write(&path, "1\n2\n3\n4\n").expect("write");
        assert_eq!(log_tail(&path, 2), "3\n4");
        assert_eq!(log_tail(&path, 10), "1\n2\n3\n4");
        assert_eq!(log_tail(&dir.join("missing.log"), 3), "");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn path_only_clears_everything_but_path() {
        let output = path_only("env")
            .env("ONLY_THIS", "1")
            .output()
            .expect("env runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["ONLY_THIS", "PATH"]);
    }

    #[test]
    fn terminate_stops_a_process_that_honours_sigterm() {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep runs");
        let pid = child.id();
        assert!(is_alive(pid));
        assert!(cpu_time(pid).is_ok());
        let (status, took) =
            terminate(child, Duration::from_secs(10), "sleep").expect("stopped in time");
        assert!(!status.success());
        assert!(took < Duration::from_secs(10));
        assert!(!is_alive(pid));
    }

    #[test]
    fn a_busy_thread_is_found_by_its_name() {
        let before = threads(std::process::id()).expect("our threads");
        assert!(!before.is_empty());
        let spin = std::thread::Builder::new()
            .name("bench-spinner".into())
            .spawn(|| {
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_millis(50) {
                    std::hint::spin_loop();
                }
                // Read while this thread still runs: a finished thread leaves /proc.
                threads(std::process::id()).expect("our threads")
            })
            .expect("spawned");
        let after = spin.join().expect("joined");
        let used = used_by_name(&before, &after);
        let spinner = used.get("bench-spinner").copied().unwrap_or_default();
        assert!(spinner.cpu >= Duration::from_millis(10), "{used:?}");
        assert!(spinner.runs >= 1, "{used:?}");
    }

    #[test]
    fn terminate_kills_a_process_that_ignores_sigterm() {
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh runs");
        // SIGTERM is ignored from here on (and across the exec).
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout).read_line(&mut ready).expect("ready");
        let err =
            terminate(child, Duration::from_millis(200), "the stubborn one").expect_err("killed");
        assert!(
            err.to_string()
                .starts_with("the stubborn one ignored SIGTERM for 200ms and was killed"),
            "{err}"
        );
    }
}
