//! Runners for one invocation in each mode. One-shot modes use them once; WARM uses
//! them per invocation (STDIO, FILE) or keeps an HTTP runtime between invocations.

pub mod file;
pub mod http;
pub mod stdio;

use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::{env, headers};
use tokio::task::JoinHandle;

use crate::logs::{self, Attribution, Target};
use crate::process::Process;

/// One invocation's input.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The execution it belongs to.
    pub execution_id: String,
    /// Trace id, forwarded as `TRACE_ID` / `X-Trace-Id`.
    pub trace_id: Option<String>,
    /// W3C trace context, forwarded as `TRACEPARENT` / `traceparent`.
    pub traceparent: Option<String>,
    /// Forwarded as `TRACESTATE` / `tracestate`.
    pub tracestate: Option<String>,
    /// The payload, valid JSON.
    pub payload: Bytes,
    /// How long it may run.
    pub timeout: Duration,
}

impl Invocation {
    /// Variables the function process gets for this invocation.
    fn env(&self) -> Vec<(&'static str, &str)> {
        let mut vars = vec![(env::EXECUTION_ID, self.execution_id.as_str())];
        for (var, _, value) in self.trace() {
            if let Some(value) = value {
                vars.push((var, value));
            }
        }
        vars
    }

    /// Whose lines its processes write: this execution's when lines are marked.
    pub fn attribution(&self, ctx: &RunContext) -> Attribution {
        if ctx.mark_lines {
            Attribution::Execution(self.execution_id.as_str().into())
        } else {
            Attribution::Unmarked
        }
    }

    /// The trace fields it carries: environment name, header name, value if set.
    pub fn trace(&self) -> [(&'static str, &'static str, Option<&str>); 3] {
        [
            (env::TRACE_ID, headers::TRACE_ID, self.trace_id.as_deref()),
            (
                env::TRACEPARENT,
                headers::TRACEPARENT,
                self.traceparent.as_deref(),
            ),
            (
                env::TRACESTATE,
                headers::TRACESTATE,
                self.tracestate.as_deref(),
            ),
        ]
    }
}

/// Settings shared by every invocation of a watchdog.
#[derive(Debug, Clone, Copy)]
pub struct RunContext {
    /// Time between SIGTERM and SIGKILL when a group is stopped.
    pub kill_grace: Duration,
    /// Largest output accepted.
    pub max_output: usize,
    /// Where the function's stdout log lines go (stderr when the watchdog's stdout
    /// carries the result, for local runs without a callback).
    pub child_stdout: Target,
    /// Whether output lines are marked with their execution (WARM mode, where one
    /// output stream serves many executions).
    pub mark_lines: bool,
}

/// Tasks forwarding a process's stdout and stderr, line by line.
pub struct LogForwarders {
    stdout: Option<JoinHandle<Option<String>>>,
    stderr: Option<JoinHandle<Option<String>>>,
}

impl LogForwarders {
    /// Forwards whichever of `process`'s output pipes have not been taken already,
    /// lines marked as `attribution` says.
    pub fn start(
        process: &mut Process,
        stdout_target: Target,
        attribution: Attribution,
    ) -> LogForwarders {
        let forward =
            |pipe, target| tokio::spawn(logs::forward_lines(pipe, target, attribution.clone()));
        LogForwarders {
            stdout: process
                .stdout
                .take()
                .map(|pipe| forward(pipe, stdout_target)),
            stderr: process
                .stderr
                .take()
                .map(|pipe| forward(pipe, Target::Stderr)),
        }
    }

    /// Waits for both streams to end, so every line is out before the result is
    /// reported, and returns the last stderr line. A descendant that escaped the
    /// process group could hold a pipe open: after a second, forwarding stops.
    pub async fn finish(mut self) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        if let Some(stdout) = self.stdout.as_mut() {
            let _ = tokio::time::timeout_at(deadline, stdout).await;
        }
        match self.stderr.as_mut() {
            Some(stderr) => tokio::time::timeout_at(deadline, stderr)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            None => None,
        }
    }
}

impl Drop for LogForwarders {
    fn drop(&mut self) {
        for task in [&self.stdout, &self.stderr].into_iter().flatten() {
            task.abort();
        }
    }
}
