//! The watchdog's report as the control plane reads it (callback body, WARM answer,
//! stdout line of a watchdog whose callback failed).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::domain::{codes, ExecutionError};

/// Deepest nesting of an output that is kept. Records, API answers and chain contexts
/// wrap the output in a few more levels, and each must still parse within serde_json's
/// limit of 128.
pub const MAX_OUTPUT_DEPTH: usize = 100;

/// The watchdog's callback body, read leniently: unknown error codes from a newer
/// watchdog are kept as sent, and an output the control plane cannot hold (a number
/// like `1e400`, nesting deeper than [`MAX_OUTPUT_DEPTH`]) makes the report a failure
/// with INVALID_OUTPUT instead of an unreadable body. The watchdog only checks that
/// the output is JSON, so such outputs do arrive.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "WireReport")]
pub struct CallbackReport {
    /// Whether the function produced a result.
    pub success: bool,
    /// Its JSON result.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<ExecutionError>,
    /// Run time measured by the watchdog.
    pub duration_ms: Option<u64>,
    /// The function's exit code.
    pub exit_code: Option<i32>,
}

/// The body as sent; `output` stays raw until it is known to be holdable.
#[derive(Deserialize)]
struct WireReport {
    success: bool,
    #[serde(default)]
    output: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ExecutionError>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    exit_code: Option<i32>,
}

impl From<WireReport> for CallbackReport {
    fn from(wire: WireReport) -> CallbackReport {
        let mut report = CallbackReport {
            success: wire.success,
            output: None,
            error: wire.error,
            duration_ms: wire.duration_ms,
            exit_code: wire.exit_code,
        };
        let Some(raw) = wire.output else {
            return report;
        };
        match held_output(raw.get()) {
            Ok(output) => report.output = Some(output),
            Err(reason) => {
                report.success = false;
                report.error = Some(ExecutionError::new(
                    codes::INVALID_OUTPUT,
                    format!("the function's output cannot be kept: {reason}"),
                ));
            }
        }
        report
    }
}

/// `raw` as a value, or why it cannot be one.
fn held_output(raw: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(raw).map_err(|err| err.to_string())?;
    if depth(&value) > MAX_OUTPUT_DEPTH {
        return Err(format!("it nests deeper than {MAX_OUTPUT_DEPTH} levels"));
    }
    Ok(value)
}

/// How deeply `value` nests (a scalar is 0), without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|item| (item, level + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> CallbackReport {
        serde_json::from_str(body).expect("a report")
    }

    #[test]
    fn an_output_out_of_range_or_too_deep_is_invalid_output() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for output in ["1e400", "-1e400", "[1, 2e999]", deep.as_str()] {
            let report = read(&format!(
                r#"{{"success":true,"output":{output},"error":null}}"#
            ));
            assert!(!report.success, "{output}");
            assert!(report.output.is_none());
            let error = report.error.expect("an error");
            assert_eq!(error.code, codes::INVALID_OUTPUT);
            assert!(
                error.message.contains("cannot be kept"),
                "{}",
                error.message
            );
        }
        let fine = format!(
            "{}1{}",
            "[".repeat(MAX_OUTPUT_DEPTH),
            "]".repeat(MAX_OUTPUT_DEPTH)
        );
        let report = read(&format!(r#"{{"success":true,"output":{fine}}}"#));
        assert!(report.success && report.output.is_some());
    }

    #[test]
    fn ordinary_reports_read_as_sent() {
        let report = read(
            r#"{"success":false,"output":null,"error":{"code":"NEWER_CODE","message":"m"},"exit_code":3}"#,
        );
        assert!(!report.success && report.output.is_none());
        assert_eq!(report.error.unwrap().code.to_string(), "NEWER_CODE");
        assert_eq!(report.exit_code, Some(3));
        let report: CallbackReport =
            serde_json::from_value(serde_json::json!({"success": true, "output": {"a": [1]}}))
                .unwrap();
        assert_eq!(report.output, Some(serde_json::json!({"a": [1]})));
    }
}
