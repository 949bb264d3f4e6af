//! The result of one invocation and the rules that turn process behaviour into it:
//! output parsing, and the error code for each kind of failure (the same in every mode).

use std::time::Duration;

use gantry_protocol::{CompletionReport, ErrorCode, FunctionError};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::process::ExitStatus;

/// What one invocation produced.
#[derive(Debug)]
pub struct Outcome {
    /// The function's JSON output, or why there is none.
    pub result: Result<Box<RawValue>, FunctionError>,
    /// The function process's exit code, when it exited on its own.
    pub exit_code: Option<i32>,
    /// Wall time from start to result.
    pub duration: Duration,
}

impl Outcome {
    /// A failure that happened before or without a process exit code.
    pub fn failed(error: FunctionError, duration: Duration) -> Outcome {
        Outcome {
            result: Err(error),
            exit_code: None,
            duration,
        }
    }

    /// Whether the function succeeded.
    pub fn is_success(&self) -> bool {
        self.result.is_ok()
    }

    /// The callback body.
    pub fn into_report(self) -> CompletionReport {
        let mut report = match self.result {
            Ok(output) => CompletionReport::success(output),
            Err(error) => CompletionReport::failure(error),
        };
        report.duration_ms = Some(millis(self.duration));
        report.exit_code = self.exit_code;
        report
    }
}

/// Whole milliseconds of `duration`, as a `u64`: formatting a `u128` (what
/// `Duration::as_millis` answers) would link a formatter of its own into the binary.
pub fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

/// TIMEOUT, worded the same in every mode.
pub fn timeout(limit: Duration) -> FunctionError {
    FunctionError::new(
        ErrorCode::Timeout,
        format!(
            "function exceeded its timeout of {} ms and was stopped",
            millis(limit)
        ),
    )
}

/// OUTPUT_TOO_LARGE, worded the same in every mode.
pub fn output_too_large(limit: usize) -> FunctionError {
    FunctionError::new(
        ErrorCode::OutputTooLarge,
        format!("function output exceeded MAX_OUTPUT_BYTES ({limit} bytes)"),
    )
}

/// The failure for a process that ended on its own with a non-success `status`:
/// an exit code is the function reporting failure, a signal is a crash.
pub fn process_failure(status: ExitStatus, last_stderr: Option<&str>) -> FunctionError {
    let (code, what) = match status {
        ExitStatus::Code(_) => (ErrorCode::FunctionError, "function exited with"),
        _ => (ErrorCode::RuntimeCrashed, "function was killed by"),
    };
    let message = match last_stderr {
        Some(line) => format!("{what} {status}: {line}"),
        None => format!("{what} {status}"),
    };
    FunctionError::new(code, message)
}

/// `report` as one line of JSON, for stdout, where the control plane reads the last
/// line. The output is forwarded as the function wrote it and may span lines; its line
/// breaks can only be whitespace (inside strings they are escaped), so they become spaces.
pub fn report_line(report: &CompletionReport) -> Vec<u8> {
    let mut line = serde_json::to_vec(report).expect("a report always serializes");
    for byte in &mut line {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
    line
}

/// Output bytes that were read up to a limit.
#[derive(Debug)]
pub struct TooLarge;

/// Reads `reader` to the end, failing as soon as more than `limit` bytes arrive.
pub async fn read_capped(
    reader: Option<impl AsyncRead + Unpin>,
    limit: usize,
) -> Result<Vec<u8>, TooLarge> {
    let Some(reader) = reader else {
        return Ok(Vec::new());
    };
    let mut buffer = Vec::new();
    // One byte more than allowed tells "exactly at the limit" from "over it".
    let mut limited = reader.take(limit as u64 + 1);
    if limited.read_to_end(&mut buffer).await.is_err() {
        // A read error on a pipe means the writer is gone; what we have is all there is.
    }
    if buffer.len() > limit {
        return Err(TooLarge);
    }
    Ok(buffer)
}

/// Parsed output, and the log lines that preceded it when the result was the last line.
#[derive(Debug)]
pub struct ParsedOutput<'a> {
    /// The JSON result.
    pub value: Box<RawValue>,
    /// Text printed before the result line (logs), empty when the whole output was JSON.
    pub logs: &'a [u8],
}

/// STDIO output rules: the whole output as JSON; else its last non-empty line as JSON
/// (earlier lines are logs); else INVALID_OUTPUT.
pub fn parse_output<'a>(output: &'a [u8], source: &str) -> Result<ParsedOutput<'a>, FunctionError> {
    let trimmed = output.trim_ascii();
    if trimmed.is_empty() {
        return Err(FunctionError::new(
            ErrorCode::InvalidOutput,
            format!("function wrote nothing to {source}; it must write a JSON value (null for no result)"),
        ));
    }
    if let Ok(value) = serde_json::from_slice::<Box<RawValue>>(trimmed) {
        return Ok(ParsedOutput { value, logs: &[] });
    }
    let line_start = trimmed
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |newline| newline + 1);
    let last_line = trimmed[line_start..].trim_ascii();
    match serde_json::from_slice::<Box<RawValue>>(last_line) {
        Ok(value) => Ok(ParsedOutput {
            value,
            logs: &trimmed[..line_start],
        }),
        Err(err) => Err(FunctionError::new(
            ErrorCode::InvalidOutput,
            format!(
                "{source} is not JSON, neither as a whole nor its last line ({err}): {}",
                preview(last_line)
            ),
        )),
    }
}

/// The first 200 characters of `bytes`, for error messages.
pub fn preview(bytes: &[u8]) -> String {
    const LIMIT: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LIMIT)]);
    if bytes.len() > LIMIT {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_output_json_wins_even_over_several_lines() {
        let parsed = parse_output(b"{\n  \"a\": 1\n}\n", "stdout").unwrap();
        assert_eq!(parsed.value.get(), "{\n  \"a\": 1\n}");
        assert!(parsed.logs.is_empty());
    }

    #[test]
    fn last_line_is_the_result_and_earlier_lines_are_logs() {
        let parsed = parse_output(b"loading model\nstep 2\n{\"ok\":true}\n\n", "stdout").unwrap();
        assert_eq!(parsed.value.get(), "{\"ok\":true}");
        assert_eq!(parsed.logs, b"loading model\nstep 2\n");
    }

    #[test]
    fn scalars_are_valid_output() {
        assert_eq!(parse_output(b"42", "stdout").unwrap().value.get(), "42");
        assert_eq!(
            parse_output(b"log\nnull", "stdout").unwrap().value.get(),
            "null"
        );
    }

    #[test]
    fn non_json_and_empty_output_are_invalid_output() {
        for bad in [
            &b"hello world\n"[..],
            b"{\"a\":1}\nnot json",
            b"",
            b"  \n\n",
        ] {
            let err = parse_output(bad, "stdout").unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidOutput, "{bad:?}");
        }
    }

    #[test]
    fn exit_code_is_function_error_and_signal_is_crash() {
        let err = process_failure(ExitStatus::Code(3), Some("ValueError: x"));
        assert_eq!(err.code, ErrorCode::FunctionError);
        assert_eq!(
            err.message,
            "function exited with exit code 3: ValueError: x"
        );
        let err = process_failure(ExitStatus::Signal(9), None);
        assert_eq!(err.code, ErrorCode::RuntimeCrashed);
        assert_eq!(err.message, "function was killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn a_report_of_multi_line_output_is_one_line() {
        let parsed =
            parse_output(b"{\r\n  \"a\": \"x\\ny\",\n  \"b\": [1,\n2]\n}\n", "stdout").unwrap();
        let line = report_line(&CompletionReport::success(parsed.value));
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        let report: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            report["output"],
            serde_json::json!({"a": "x\ny", "b": [1, 2]})
        );
    }

    #[tokio::test]
    async fn read_capped_allows_exactly_the_limit() {
        assert_eq!(read_capped(Some(&b"12345"[..]), 5).await.unwrap(), b"12345");
        assert!(read_capped(Some(&b"123456"[..]), 5).await.is_err());
    }
}
