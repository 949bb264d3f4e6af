//! The manifest's pacing fields: `rate_limit` (a token bucket over new executions) and
//! `max_queue_age_ms` (how long a due execution may wait to start), with their checks.

use serde::{de::Error as _, Deserialize, Deserializer, Serialize};

/// Highest accepted `rate_limit.per_second`.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// Highest accepted `rate_limit.burst`.
pub const MAX_BURST: u32 = 1_000_000;
/// Lowest accepted `rate_limit.per_second`: one execution a day.
pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Longest accepted `max_queue_age_ms` (and `--max-queue-age-ms`): 7 days.
pub const MAX_QUEUE_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// `rate_limit`: new executions of the function are admitted at `per_second` on
/// average, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Tokens added per second (may be below 1: 0.5 is one every two seconds).
    #[serde(deserialize_with = "per_second")]
    pub per_second: f64,
    /// Bucket size: executions admitted at once after a quiet time. Absent: one
    /// second's worth (`per_second` rounded up, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "burst")]
    pub burst: Option<u32>,
}

impl RateLimitSpec {
    /// The bucket size in effect.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            // Bounded by MAX_PER_SECOND once checked; the cast saturates otherwise.
            (self.per_second.ceil() as u32).max(1)
        })
    }
}

/// serde's message for a wrong type does not name a nested field: these do.
fn per_second<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    f64::deserialize(deserializer)
        .map_err(|err| D::Error::custom(format!("rate_limit.per_second: {err}")))
}

fn burst<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    u32::deserialize(deserializer).map(Some).map_err(|err| {
        D::Error::custom(format!(
            "rate_limit.burst: {err} (a whole number from 1 to {MAX_BURST})"
        ))
    })
}

/// The problems of the pacing fields, each naming its field.
pub fn problems(rate_limit: Option<&RateLimitSpec>, max_queue_age_ms: Option<u64>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(limit) = rate_limit {
        let rate = limit.per_second;
        if !(rate.is_finite() && (MIN_PER_SECOND..=MAX_PER_SECOND).contains(&rate)) {
            problems.push(format!(
                "rate_limit.per_second must be a number from {MIN_PER_SECOND:.6} (one a day) to {MAX_PER_SECOND}, got {rate}"
            ));
        }
        if let Some(burst) = limit.burst {
            if !(1..=MAX_BURST).contains(&burst) {
                problems.push(format!(
                    "rate_limit.burst must be from 1 to {MAX_BURST}, got {burst}"
                ));
            }
        }
    }
    if let Some(age) = max_queue_age_ms {
        if let Err(problem) = check_queue_age(age) {
            problems.push(format!("max_queue_age_ms {problem}"));
        }
    }
    problems
}

/// Whether `ms` is an accepted queue age (the manifest's and the server's bound).
pub fn check_queue_age(ms: u64) -> Result<(), String> {
    if (1..=MAX_QUEUE_AGE_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "must be from 1 to {MAX_QUEUE_AGE_MS} (7 days), got {ms}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: Option<u32>) -> RateLimitSpec {
        RateLimitSpec { per_second, burst }
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            let found = problems(Some(&limit(rate, None)), None);
            assert!(
                found.len() == 1 && found[0].starts_with("rate_limit.per_second"),
                "{rate}: {found:?}"
            );
        }
        let found = problems(Some(&limit(1.0, Some(0))), Some(0));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("rate_limit.burst"));
        assert!(found[1].starts_with("max_queue_age_ms"));
        assert!(problems(Some(&limit(0.5, Some(1))), Some(1)).is_empty());
        assert!(!problems(None, Some(MAX_QUEUE_AGE_MS + 1)).is_empty());
    }

    #[test]
    fn the_burst_defaults_to_one_seconds_worth() {
        assert_eq!(limit(2.5, None).burst(), 3);
        assert_eq!(limit(0.1, None).burst(), 1);
        assert_eq!(limit(2.0, Some(7)).burst(), 7);
    }
}
