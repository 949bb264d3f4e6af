//! The retry policy (`retry` in the manifest): whether a failed attempt runs again, and
//! after how long (exponential backoff with jitter).

use std::time::Duration;

use serde_json::Value;

use crate::domain::{codes, ExecutionError};
use crate::registry::manifest::RetrySpec;

/// The wait before attempt `attempt + 1` when attempt `attempt` (1-based) failed with
/// `error` and `exit_code`; `None` when the policy does not retry it.
pub fn next_attempt(
    policy: Option<&RetrySpec>,
    attempt: u32,
    error: &ExecutionError,
    exit_code: Option<i32>,
) -> Option<Duration> {
    let policy = policy?;
    if attempt >= policy.max_attempts || !retries(policy, error, exit_code) {
        return None;
    }
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let backoff = (policy.initial_backoff_ms as f64) * policy.multiplier.max(1.0).powi(exponent);
    let capped = backoff.min(policy.max_backoff_ms as f64).max(0.0);
    // ±20 % jitter, so retries of many executions that failed together spread out.
    let jittered = capped * rand::random_range(0.8..=1.2);
    Some(Duration::from_millis(jittered.round() as u64))
}

/// Whether the policy's `retry_on` covers the failure. Empty covers every failure but
/// an output schema violation or a cancel, which another attempt would not change.
fn retries(policy: &RetrySpec, error: &ExecutionError, exit_code: Option<i32>) -> bool {
    // Running it again would only make it older.
    if error.code == codes::EXPIRED {
        return false;
    }
    if policy.retry_on.is_empty() {
        return error.code != codes::OUTPUT_SCHEMA_VIOLATION && error.code != codes::CANCELLED;
    }
    policy.retry_on.iter().any(|entry| match entry {
        Value::String(code) => error.code == code.as_str(),
        Value::Number(number) => {
            exit_code.is_some_and(|exit| number.as_i64() == Some(i64::from(exit)))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, retry_on: Vec<Value>) -> RetrySpec {
        RetrySpec {
            max_attempts,
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 300,
            retry_on,
        }
    }

    #[test]
    fn backs_off_exponentially_up_to_the_cap() {
        let crash = ExecutionError::new(codes::RUNTIME_CRASHED, "gone");
        let policy = policy(5, Vec::new());
        let waits: Vec<u64> = (1..5)
            .map(|attempt| {
                next_attempt(Some(&policy), attempt, &crash, None)
                    .unwrap()
                    .as_millis() as u64
            })
            .collect();
        assert!((80..=120).contains(&waits[0]), "{waits:?}");
        assert!((160..=240).contains(&waits[1]), "{waits:?}");
        assert!((240..=360).contains(&waits[2]), "{waits:?}");
        assert!((240..=360).contains(&waits[3]), "{waits:?}");
        assert_eq!(next_attempt(Some(&policy), 5, &crash, None), None);
        assert_eq!(next_attempt(None, 1, &crash, None), None);
    }

    #[test]
    fn retry_on_selects_codes_and_exit_codes() {
        let crash = ExecutionError::new(codes::RUNTIME_CRASHED, "gone");
        let failed = ExecutionError::new("FUNCTION_ERROR", "exit 3");
        let schema = ExecutionError::new(codes::OUTPUT_SCHEMA_VIOLATION, "bad");
        let any = policy(3, Vec::new());
        assert!(next_attempt(Some(&any), 1, &crash, None).is_some());
        assert!(next_attempt(Some(&any), 1, &schema, None).is_none());
        let some = policy(3, vec![Value::from("RUNTIME_CRASHED"), Value::from(3)]);
        assert!(next_attempt(Some(&some), 1, &crash, None).is_some());
        assert!(next_attempt(Some(&some), 1, &failed, Some(3)).is_some());
        assert!(next_attempt(Some(&some), 1, &failed, Some(4)).is_none());
    }
}
