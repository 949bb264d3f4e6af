//! How an attempt's end becomes a finished record: one builder for each kind of end
//! (a report, an instance that exited without one, a crash, a cancel, a deadline, a
//! restart), so every path writes the same fields the same way.

use std::time::Duration;

use super::CallbackReport;
use crate::domain::{codes, ErrorCode, ExecutionError, ExecutionStatus, Finished};
use crate::registry::catalog::LoadedFunction;
use crate::runtime::{Instance, InstanceExit};
use crate::secrets::Masker;

pub(super) async fn report_outcome(
    function: &LoadedFunction,
    report: CallbackReport,
    elapsed: Duration,
) -> Finished {
    let duration_ms = report.duration_ms.or(Some(elapsed.as_millis() as u64));
    if report.success {
        let output = report.output.unwrap_or(serde_json::Value::Null);
        if let Some(schema) = &function.output_schema {
            let violations = schema
                .check(&output)
                .await
                .unwrap_or_else(|slow| vec![slow.to_string()]);
            if !violations.is_empty() {
                return Finished {
                    status: ExecutionStatus::Error,
                    output: Some(output),
                    error: Some(ExecutionError::new(
                        codes::OUTPUT_SCHEMA_VIOLATION,
                        format!(
                            "the output does not match the output_schema: {}",
                            violations.join("; ")
                        ),
                    )),
                    exit_code: report.exit_code,
                    duration_ms,
                    finished_at: crate::domain::now(),
                    dead_letter: false,
                };
            }
        }
        return Finished {
            status: ExecutionStatus::Success,
            output: Some(output),
            error: None,
            exit_code: report.exit_code,
            duration_ms,
            finished_at: crate::domain::now(),
            dead_letter: false,
        };
    }
    let error = report.error.unwrap_or_else(|| {
        ExecutionError::new(
            codes::FUNCTION_ERROR,
            "the watchdog reported a failure without a reason",
        )
    });
    let status = if error.code == codes::TIMEOUT {
        ExecutionStatus::Timeout
    } else {
        ExecutionStatus::Error
    };
    Finished {
        status,
        output: None,
        error: Some(error),
        exit_code: report.exit_code,
        duration_ms,
        finished_at: crate::domain::now(),
        dead_letter: false,
    }
}

pub(super) async fn exit_outcome(
    function: &LoadedFunction,
    masker: &Masker,
    exit: InstanceExit,
    elapsed: Duration,
) -> Finished {
    // Exit 75: the watchdog could not deliver its report and printed it on stdout.
    if exit.code == Some(75) {
        if let Some(report) = exit
            .last_stdout_line
            .as_deref()
            .and_then(|line| serde_json::from_str::<CallbackReport>(line).ok())
        {
            return report_outcome(function, masked(masker, report), elapsed).await;
        }
    }
    let error = ExecutionError::new(
        codes::RUNTIME_CRASHED,
        format!("the watchdog ended with {exit} without reporting a result"),
    );
    failed(ExecutionStatus::Error, error, Some(elapsed))
}

/// `report` with the function's secret values hidden in its output and error message.
pub(super) fn masked(masker: &Masker, mut report: CallbackReport) -> CallbackReport {
    if masker.is_empty() {
        return report;
    }
    report.output = report.output.map(|output| masker.json(output));
    if let Some(error) = &mut report.error {
        error.message = masker.text(&error.message);
    }
    report
}

/// The error of an instance its memory limit killed.
pub(super) fn oom_error() -> ExecutionError {
    ExecutionError::new(
        codes::OOM_KILLED,
        "the function ran out of its memory limit (resources.memory_mb) and was killed",
    )
}

/// A failure report of an instance that was OOM-killed becomes an OOM_KILLED error.
pub(super) async fn oom_checked(
    instance: &mut dyn Instance,
    mut report: CallbackReport,
) -> CallbackReport {
    if !report.success && instance.oom_killed().await {
        report.error = Some(oom_error());
    }
    report
}

pub(super) fn failed(
    status: ExecutionStatus,
    error: ExecutionError,
    elapsed: Option<Duration>,
) -> Finished {
    Finished {
        status,
        output: None,
        error: Some(error),
        exit_code: None,
        duration_ms: elapsed.map(|elapsed| elapsed.as_millis() as u64),
        finished_at: crate::domain::now(),
        dead_letter: false,
    }
}

/// A failure with `code` and `message` (status `error`).
pub(super) fn error(
    code: ErrorCode,
    message: impl Into<String>,
    elapsed: Option<Duration>,
) -> Finished {
    failed(
        ExecutionStatus::Error,
        ExecutionError::new(code, message),
        elapsed,
    )
}

/// An instance that died or answered nonsense mid-call.
pub(super) fn crashed(message: String, elapsed: Duration) -> Finished {
    error(codes::RUNTIME_CRASHED, message, Some(elapsed))
}

/// Cancelled while its `instance` ran; the instance was stopped.
pub(super) fn cancelled_running(instance: &str, elapsed: Duration) -> Finished {
    let message = format!("cancelled while running; its {instance} was stopped");
    failed(
        ExecutionStatus::Cancelled,
        ExecutionError::new(codes::CANCELLED, message),
        Some(elapsed),
    )
}

/// Cancelled before it ran, `when` ("before it started", "while waiting to retry").
pub(super) fn cancelled(when: &str) -> Finished {
    failed(
        ExecutionStatus::Cancelled,
        ExecutionError::new(codes::CANCELLED, format!("cancelled {when}")),
        None,
    )
}

/// No result within `timeout_ms`; the control plane stopped its `instance`.
pub(super) fn timed_out(timeout_ms: u64, instance: &str, elapsed: Duration) -> Finished {
    let message =
        format!("no result within {timeout_ms} ms; the control plane stopped the {instance}");
    failed(
        ExecutionStatus::Timeout,
        ExecutionError::new(codes::TIMEOUT, message),
        Some(elapsed),
    )
}

/// The control plane stopped while the execution ran and will not run it again.
pub(super) fn restarted(message: String) -> Finished {
    error(codes::CONTROL_PLANE_RESTARTED, message, None)
}
