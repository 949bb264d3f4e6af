//! Functions on a schedule, and the ticks their executions record.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use super::{stdio_function, Server};

/// A function `name` that appends its execution id to `runs` and fires on `cron`.
pub fn scheduled_function(name: &str, runs: &Path, cron: &str, extra: Value) -> Value {
    let mut schedule = json!({"cron": cron, "input": {"from": "schedule"}});
    if let (Some(schedule), Some(extra)) = (schedule.as_object_mut(), extra.as_object()) {
        schedule.extend(extra.clone());
    }
    stdio_function(
        name,
        r#"sh -c 'echo "$EXECUTION_ID" >> "$RUNS"; cat'"#,
        json!({
            "env": {"RUNS": runs.to_str().expect("utf-8 path")},
            "schedules": [schedule],
        }),
    )
}

/// The tick each execution of `function` was fired for, by tick, with its id; checks
/// that each was started by a schedule, that its `scheduledFor` is the tick in its
/// idempotency key, and that no tick has two executions.
pub async fn ticks(server: &Server, function: &str) -> BTreeMap<DateTime<Utc>, String> {
    let path = format!("/v1/executions?function={function}&limit=1000");
    let (status, _, page) = server.call(server.request(Method::GET, &path)).await;
    assert!(status.is_success(), "{page}");
    let mut ticks = BTreeMap::new();
    for record in page["executions"].as_array().expect("executions") {
        assert_eq!(record["trigger"], "schedule", "{record}");
        let key = record["idempotencyKey"].as_str().expect("idempotency key");
        let tick = key
            .strip_prefix("schedule:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, tick)| tick)
            .unwrap_or_else(|| panic!("{key} is not schedule:KEY:TICK"));
        let tick = DateTime::parse_from_rfc3339(tick)
            .unwrap_or_else(|err| panic!("{key}: {err}"))
            .with_timezone(&Utc);
        assert_eq!(tick.timestamp_subsec_nanos(), 0, "{key}: a whole second");
        let scheduled_for: DateTime<Utc> = serde_json::from_value(record["scheduledFor"].clone())
            .unwrap_or_else(|err| panic!("scheduledFor of {record}: {err}"));
        assert_eq!(
            scheduled_for, tick,
            "the record's tick is its key's: {record}"
        );
        let id = record["id"].as_str().expect("id").to_owned();
        if let Some(other) = ticks.insert(tick, id.clone()) {
            panic!("tick {tick} fired twice: {other} and {id}");
        }
    }
    ticks
}

/// The ticks of `ticks` strictly between `after` and `before`.
pub fn ticks_between(
    ticks: &BTreeMap<DateTime<Utc>, String>,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
) -> usize {
    ticks
        .keys()
        .filter(|tick| **tick > after && **tick < before)
        .count()
}

/// Whether `ticks` holds every whole second from its first to its last.
pub fn without_gaps(ticks: &BTreeMap<DateTime<Utc>, String>) -> bool {
    let (Some(first), Some(last)) = (ticks.keys().next(), ticks.keys().last()) else {
        return true;
    };
    (last.timestamp() - first.timestamp() + 1) as usize == ticks.len()
}
