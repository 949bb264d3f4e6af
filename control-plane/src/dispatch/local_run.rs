//! The dispatcher's checks and its reading of an attempt's end, for a run outside the
//! server (`gantry fn run`): the same input check, report reading and error codes as an
//! execution the server dispatches.

use std::time::Duration;

use serde_json::Value;

use super::{check_schema, outcome, CallbackReport, DispatchError};
use crate::domain::Finished;
use crate::registry::catalog::LoadedFunction;

/// The server's check of an input for a run outside it (`gantry fn run`): the error
/// code and message the API would answer with when `input` is refused.
pub async fn validate_input(
    function: &LoadedFunction,
    input: &Value,
) -> Result<(), (&'static str, String)> {
    check_schema(function, &function.version.name, input)
        .await
        .map_err(|err| {
            let message = err.to_string();
            match err {
                DispatchError::InvalidInput { violations, .. } => (
                    "INVALID_INPUT",
                    format!("{message}: {}", violations.join("; ")),
                ),
                _ => ("INPUT_TOO_COMPLEX", message),
            }
        })
}

/// How a run outside the server ended (`gantry fn run`), read as the dispatcher reads
/// an attempt: the watchdog's report (printed on stdout, as there is no callback)
/// through the output_schema check, else a crash.
pub async fn run_outcome(
    function: &LoadedFunction,
    exit: crate::runtime::InstanceExit,
    elapsed: Duration,
) -> Finished {
    let report = exit
        .last_stdout_line
        .as_deref()
        .and_then(|line| serde_json::from_str::<CallbackReport>(line).ok());
    match report {
        Some(report) => outcome::report_outcome(function, report, elapsed).await,
        None => outcome::exit_outcome(function, &Default::default(), exit, elapsed).await,
    }
}

/// A run outside the server that the caller stopped at its deadline.
pub fn timed_out_run(timeout_ms: u64, instance: &str, elapsed: Duration) -> Finished {
    outcome::timed_out(timeout_ms, instance, elapsed)
}
