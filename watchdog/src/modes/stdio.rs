//! STDIO: the payload goes to the process's stdin, the result comes from its stdout
//! (whole output as JSON, else the last non-empty line), stderr is forwarded line by line.

use gantry_protocol::{ErrorCode, FunctionError};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{Invocation, LogForwarders, RunContext};
use crate::config::CommandLine;
use crate::logs;
use crate::outcome::{self, parse_output, process_failure, read_capped, Outcome};
use crate::process::{Pipes, Process};
use crate::supervise::{supervise, ForwardedSignals, Supervised};

/// Runs `command` once for `invocation`.
pub async fn run(
    command: &CommandLine,
    invocation: &Invocation,
    ctx: &RunContext,
    signals: Option<&mut ForwardedSignals>,
) -> Outcome {
    let started = Instant::now();
    let mut process = match Process::spawn(command, &invocation.env(), Pipes::ALL) {
        Ok(process) => process,
        Err(err) => {
            let error = FunctionError::new(ErrorCode::SpawnError, err.to_string());
            return Outcome::failed(error, started.elapsed());
        }
    };
    let stdin = process.stdin.take();
    let stdout = process.stdout.take();
    let attribution = invocation.attribution(ctx);
    let forwarders = LogForwarders::start(&mut process, ctx.child_stdout, attribution.clone());
    let pgid = process.pid();
    let payload = invocation.payload.clone();
    let work = async {
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A function that exits without reading its input is not an error here.
                let _ = stdin.write_all(&payload).await;
            }
            Ok(())
        };
        let exit = async {
            let status = process.wait().await;
            // Whatever the function left running in its group goes with it; this also
            // closes stdout for a background child that inherited it.
            process.terminate(ctx.kill_grace).await;
            Ok(status)
        };
        tokio::try_join!(feed, read_capped(stdout, ctx.max_output), exit)
    };
    let supervised = supervise(
        pgid,
        work,
        Some(invocation.timeout),
        ctx.kill_grace,
        signals,
    )
    .await;
    let (stdout, status) = match supervised {
        Supervised::Finished(Ok(((), stdout, status))) => (stdout, status),
        Supervised::Finished(Err(outcome::TooLarge)) => {
            process.terminate(ctx.kill_grace).await;
            forwarders.finish().await;
            return Outcome::failed(outcome::output_too_large(ctx.max_output), started.elapsed());
        }
        Supervised::TimedOut => {
            process.terminate(ctx.kill_grace).await;
            forwarders.finish().await;
            return Outcome::failed(outcome::timeout(invocation.timeout), started.elapsed());
        }
    };
    let last_stderr = forwarders.finish().await;
    let result = if status.success() {
        match parse_output(&stdout, "stdout") {
            Ok(parsed) => {
                logs::forward_buffer(parsed.logs, ctx.child_stdout, &attribution).await;
                Ok(parsed.value)
            }
            Err(error) => Err(error),
        }
    } else {
        Err(process_failure(status, last_stderr.as_deref()))
    };
    Outcome {
        result,
        exit_code: status.code(),
        duration: started.elapsed(),
    }
}
