//! Child processes of the watchdog: each user command runs as the leader of its own
//! process group, so a timeout or shutdown stops it and everything it started
//! (SIGTERM to the group, SIGKILL after the grace period). Dropping a [`Process`] whose
//! group may still be alive kills the group, so no early return leaks a process.
//!
//! Every process is started the same way, fixed once at start ([`set_launch`]): as the
//! RUN_AS user when the watchdog switches users, with the SECRET_FILES paths in its
//! environment, and without the variables meant for the watchdog alone.

pub mod reaper;

use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use gantry_protocol::env;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};

use crate::config::CommandLine;
use crate::identity::RunAs;

/// How every process of the function is started; the same for the watchdog's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// The user and group to switch to (with no supplementary groups); `None` keeps
    /// the watchdog's own.
    pub run_as: Option<RunAs>,
    /// Variables added to every process's environment (the SECRET_FILES paths).
    pub env: Vec<(String, String)>,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();

/// Fixes how processes are started. Only the first call counts; returns whether it did.
pub fn set_launch(launch: Launch) -> bool {
    LAUNCH.set(launch).is_ok()
}

/// How processes are started (the default, when [`set_launch`] was never called).
pub fn launch() -> &'static Launch {
    LAUNCH.get_or_init(Launch::default)
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
    /// Its status was lost (the reaper stopped); treated as a crash.
    Unknown,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, when it exited on its own.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(code) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "signal {number} ({})", signal.as_str()),
                Err(_) => write!(f, "signal {number}"),
            },
            ExitStatus::Unknown => f.write_str("an unknown status"),
        }
    }
}

/// A command that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {program:?}: {reason}")]
pub struct SpawnError {
    /// The program that failed.
    pub program: String,
    /// Why, in words.
    pub reason: String,
}

impl SpawnError {
    fn new(program: &str, err: &std::io::Error) -> Self {
        let reason = match err.kind() {
            std::io::ErrorKind::NotFound => "not found (is it installed and on PATH?)".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied (is it executable?)".into(),
            _ => err.to_string(),
        };
        SpawnError {
            program: program.to_owned(),
            reason,
        }
    }
}

/// Which standard streams the parent keeps a pipe to. The others are inherited
/// (stdout, stderr) or `/dev/null` (stdin).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pipes {
    /// Pipe to the child's stdin.
    pub stdin: bool,
    /// Pipe from the child's stdout.
    pub stdout: bool,
    /// Pipe from the child's stderr.
    pub stderr: bool,
}

impl Pipes {
    /// All three streams piped.
    pub const ALL: Pipes = Pipes {
        stdin: true,
        stdout: true,
        stderr: true,
    };
    /// Output streams piped, stdin from `/dev/null`.
    pub const OUTPUT: Pipes = Pipes {
        stdin: false,
        stdout: true,
        stderr: true,
    };
}

/// A running user command, leader of its own process group.
pub struct Process {
    pid: i32,
    exit: Option<oneshot::Receiver<ExitStatus>>,
    status: Option<ExitStatus>,
    group_gone: bool,
    /// Write end of the child's stdin, when piped.
    pub stdin: Option<pipe::Sender>,
    /// Read end of the child's stdout, when piped.
    pub stdout: Option<pipe::Receiver>,
    /// Read end of the child's stderr, when piped.
    pub stderr: Option<pipe::Receiver>,
}

impl Process {
    /// Starts `command` in a new process group as [`launch`] says, with `extra_env`
    /// added to the watchdog's environment minus [`env::WATCHDOG_ONLY`].
    pub fn spawn(
        command: &CommandLine,
        extra_env: &[(&str, &str)],
        pipes: Pipes,
    ) -> Result<Process, SpawnError> {
        let piped =
            |yes: bool, otherwise: fn() -> Stdio| if yes { Stdio::piped() } else { otherwise() };
        let launch = launch();
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args);
        for var in env::WATCHDOG_ONLY {
            cmd.env_remove(var);
        }
        let launch_env = launch.env.iter().map(|(name, value)| (&**name, &**value));
        cmd.envs(launch_env.chain(extra_env.iter().copied()))
            .stdin(piped(pipes.stdin, Stdio::null))
            .stdout(piped(pipes.stdout, Stdio::inherit))
            .stderr(piped(pipes.stderr, Stdio::inherit))
            .process_group(0);
        if let Some(run_as) = launch.run_as {
            // As root, std also calls setgroups(0) before setuid: no supplementary group
            // of the watchdog's is left to the function.
            cmd.uid(run_as.uid).gid(run_as.gid);
        }
        reaper::start().map_err(|err| SpawnError::new(&command.program, &err))?;
        let (mut child, exit) = reaper::spawn_registered(|| {
            let child = cmd.spawn()?;
            let pid = child.id() as i32;
            Ok((child, pid))
        })
        .map_err(|err| SpawnError::new(&command.program, &err))?;
        // From here on the group is owned: an early return kills it (Drop).
        let mut process = Process {
            pid: child.id() as i32,
            exit: Some(exit),
            status: None,
            group_gone: false,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        let wrap_err = |err: std::io::Error| SpawnError::new(&command.program, &err);
        if let Some(fd) = child.stdin.take() {
            process.stdin = Some(pipe::Sender::from_owned_fd(fd.into()).map_err(wrap_err)?);
        }
        if let Some(fd) = child.stdout.take() {
            process.stdout = Some(pipe::Receiver::from_owned_fd(fd.into()).map_err(wrap_err)?);
        }
        if let Some(fd) = child.stderr.take() {
            process.stderr = Some(pipe::Receiver::from_owned_fd(fd.into()).map_err(wrap_err)?);
        }
        // `child` is dropped without waiting: the reaper owns its exit status.
        Ok(process)
    }

    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the leader to exit. Cancel-safe.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = match self.exit.as_mut() {
            Some(exit) => exit.await.unwrap_or(ExitStatus::Unknown),
            None => ExitStatus::Unknown,
        };
        self.exit = None;
        self.status = Some(status);
        status
    }

    /// Sends `signal` to every process in the group.
    pub fn signal_group(&self, signal: Signal) {
        if !self.group_gone {
            signal_group(self.pid, signal);
        }
    }

    /// Whether any process of the group (including an unreaped leader) still exists.
    fn group_alive(&mut self) -> bool {
        if self.group_gone {
            return false;
        }
        match killpg(Pid::from_raw(self.pid), None) {
            Err(Errno::ESRCH) => {
                self.group_gone = true;
                false
            }
            _ => true,
        }
    }

    /// Stops the whole group: SIGTERM, then SIGKILL to whatever is left after `grace`,
    /// and waits until the group is empty and the leader reaped.
    pub async fn terminate(&mut self, grace: Duration) {
        if self.group_alive() {
            self.signal_group(Signal::SIGTERM);
            self.wait_group_gone(Instant::now() + grace).await;
            if self.group_alive() {
                self.signal_group(Signal::SIGKILL);
                // SIGKILL cannot be ignored; this only waits for the kernel and the reaper.
                self.wait_group_gone(Instant::now() + Duration::from_secs(5))
                    .await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.wait()).await;
    }

    /// Waits until the group is empty or `deadline` passes. The leader's exit usually
    /// empties it, so that wakes the wait at once; stragglers are polled for.
    async fn wait_group_gone(&mut self, deadline: Instant) {
        while self.group_alive() && Instant::now() < deadline {
            let pause = POLL.min(deadline - Instant::now());
            if self.status.is_none() {
                let _ = tokio::time::timeout(pause, self.wait()).await;
            } else {
                sleep(pause).await;
            }
        }
    }
}

/// How often a stopping group is checked for survivors.
const POLL: Duration = Duration::from_millis(5);

/// Sends `signal` to process group `pgid`, ignoring a group that is already gone.
pub fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.group_gone {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
