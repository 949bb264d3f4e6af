//! The `fn get` lines of a function's pacing: its rate limit and its queue age limit,
//! read leniently from the spec the server answered.

use serde::Deserialize;
use serde_json::Value;

use super::table::key_values;

/// The pacing fields of a spec; anything else in it is ignored.
#[derive(Debug, Default, Deserialize)]
struct Pacing {
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    max_queue_age_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RateLimit {
    per_second: f64,
    #[serde(default)]
    burst: Option<u32>,
}

/// `rate limit:` and `max queue age:` lines for those of `spec`'s fields that are set;
/// empty when none is.
pub fn pacing_details(spec: &Value) -> String {
    let pacing = Pacing::deserialize(spec).unwrap_or_default();
    let rate = pacing.rate_limit.map_or_else(String::new, |limit| {
        let burst = limit
            .burst
            .unwrap_or_else(|| (limit.per_second.ceil() as u32).max(1));
        format!("{}/s, burst {burst}", limit.per_second)
    });
    let age = pacing
        .max_queue_age_ms
        .map_or_else(String::new, |ms| format!("{ms} ms"));
    key_values(&[("rate limit", rate), ("max queue age", age)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_only_what_is_set() {
        assert_eq!(pacing_details(&json!({"command": "cat"})), "");
        assert_eq!(
            pacing_details(
                &json!({"rate_limit": {"per_second": 2, "burst": 3}, "max_queue_age_ms": 500})
            ),
            "rate limit:    2/s, burst 3\nmax queue age: 500 ms\n"
        );
        assert_eq!(
            pacing_details(&json!({"rate_limit": {"per_second": 0.5}})),
            "rate limit: 0.5/s, burst 1\n"
        );
    }
}
