//! Schedules: a function's `schedules` in its manifest (cron with seconds, a time zone of
//! the tz database, catch-up), their checks at deploy, the ticks they fire ([`ticks`]),
//! and the loop every node runs to fire each tick exactly once ([`runner`]).

pub mod runner;
pub mod ticks;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::schema::CompiledSchema;
use crate::store::ScheduleCursor;
use crate::wire::ScheduleStatus;

pub use ticks::{Due, Tick};

/// Most schedules one function may have.
pub const MAX_SCHEDULES: usize = 16;
/// Longest accepted cron expression.
pub const MAX_CRON_LEN: usize = 256;
/// Ticks a `catch_up` schedule fires in one pass after downtime; older missed ones are
/// dropped (with a warning).
pub const MAX_CATCH_UP: usize = 100;
/// Next fire times shown for each schedule.
pub const NEXT_SHOWN: usize = 3;

/// One entry of a manifest's `schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Cron expression: 6 fields (seconds first) or 5 (then at second 0).
    pub cron: String,
    /// The input each fire gets; `{}` when absent.
    #[serde(default = "empty_object")]
    pub input: Value,
    /// IANA time zone the expression is read in; `UTC` when absent.
    #[serde(default = "utc")]
    pub timezone: String,
    /// After downtime, fire each missed tick (at most [`MAX_CATCH_UP`]) rather than only
    /// the latest one.
    #[serde(default)]
    pub catch_up: bool,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn utc() -> String {
    "UTC".to_owned()
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("cron: {0}")]
    Cron(String),
    /// The time zone is not in the tz database.
    #[error("timezone: {0:?} is not a time zone of the tz database (such as UTC or Europe/Paris)")]
    TimeZone(String),
}

/// A schedule ready to compute ticks: its expression parsed, its time zone found.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The expression.
    pub cron: Cron,
    /// The time zone.
    pub zone: chrono_tz::Tz,
    /// Whether missed ticks are each fired.
    pub catch_up: bool,
}

impl ScheduleSpec {
    /// The expression and time zone, checked.
    pub fn parse(&self) -> Result<Parsed, ScheduleError> {
        if self.cron.len() > MAX_CRON_LEN {
            return Err(ScheduleError::Cron(format!(
                "longer than {MAX_CRON_LEN} characters"
            )));
        }
        let fields = self.cron.split_whitespace().count();
        let nickname = self.cron.trim_start().starts_with('@');
        if !nickname && !(5..=6).contains(&fields) {
            return Err(ScheduleError::Cron(format!(
                "{:?} has {fields} fields; write 6 (second minute hour day-of-month month day-of-week) or 5 (from the minute)",
                self.cron
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&self.cron)
            .map_err(|err| ScheduleError::Cron(format!("{:?}: {err}", self.cron)))?;
        let zone = chrono_tz::Tz::from_str(&self.timezone)
            .map_err(|_| ScheduleError::TimeZone(self.timezone.clone()))?;
        Ok(Parsed {
            cron,
            zone,
            catch_up: self.catch_up,
        })
    }

    /// The schedule's identity: a digest of everything that defines it, so a redeploy
    /// that keeps it keeps its cursor and one that changes it starts it afresh.
    pub fn key(&self) -> String {
        let canonical = serde_json::json!([self.cron, self.timezone, self.input, self.catch_up]);
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        hex::encode(&digest[..8])
    }
}

/// The idempotency key of the execution a tick of schedule `key` fires: it carries the
/// tick, and two fires of one tick cannot both be stored.
pub fn idempotency_key(key: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{key}:{}",
        tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Every problem with `schedules`, each naming its field (`schedules[1].cron: …`). The
/// inputs are checked against the input schema elsewhere (they need it compiled).
pub fn problems(schedules: &[ScheduleSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    if schedules.len() > MAX_SCHEDULES {
        problems.push(format!(
            "schedules: {} schedules, at most {MAX_SCHEDULES} per function",
            schedules.len()
        ));
        return problems;
    }
    for (index, schedule) in schedules.iter().enumerate() {
        let at = format!("schedules[{index}]");
        match schedule.parse() {
            Ok(parsed) => {
                if ticks::next(&parsed, Utc::now(), 1).is_empty() {
                    problems.push(format!(
                        "{at}.cron: {:?} never fires (no such date)",
                        schedule.cron
                    ));
                }
            }
            Err(err) => problems.push(format!("{at}.{err}")),
        }
        if let Some(first) = schedules[..index].iter().position(|s| s == schedule) {
            problems.push(format!("{at} repeats schedules[{first}]"));
        }
    }
    problems
}

/// The schedules whose `input` breaks the function's input schema, each naming its
/// field (`schedules[0].input: /n: …`).
pub fn input_problems(schedules: &[ScheduleSpec], schema: &CompiledSchema) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, schedule) in schedules.iter().enumerate().take(MAX_SCHEDULES) {
        for violation in schema.violations(&schedule.input) {
            problems.push(format!(
                "schedules[{index}].input does not match the input_schema: {violation}"
            ));
        }
    }
    problems
}

/// The schedules of `function` as the API shows them, with their cursors from
/// `cursors` and their next [`NEXT_SHOWN`] fire times after `now`.
pub fn statuses(
    function: &str,
    schedules: &[ScheduleSpec],
    cursors: &[ScheduleCursor],
    now: DateTime<Utc>,
) -> Vec<ScheduleStatus> {
    schedules
        .iter()
        .map(|schedule| {
            let key = schedule.key();
            let last_tick = cursors
                .iter()
                .find(|cursor| cursor.function == function && cursor.key == key)
                .map(|cursor| cursor.last_tick);
            let next = schedule
                .parse()
                .map(|parsed| ticks::next(&parsed, now, NEXT_SHOWN))
                .unwrap_or_default();
            ScheduleStatus {
                cron: schedule.cron.clone(),
                timezone: schedule.timezone.clone(),
                catch_up: schedule.catch_up,
                key,
                last_tick,
                next,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> ScheduleSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_are_utc_no_catch_up_and_an_empty_input() {
        let schedule = spec(json!({"cron": "*/10 * * * * *"}));
        assert_eq!(schedule.timezone, "UTC");
        assert!(!schedule.catch_up);
        assert_eq!(schedule.input, json!({}));
        assert!(problems(&[schedule]).is_empty());
    }

    #[test]
    fn problems_name_the_field() {
        let good = spec(json!({"cron": "0 * * * * *", "timezone": "Europe/Paris"}));
        let bad_cron = spec(json!({"cron": "61 * * * * *"}));
        let bad_zone = spec(json!({"cron": "0 0 * * *", "timezone": "Mars/Olympus"}));
        let never = spec(json!({"cron": "0 0 0 30 2 *"}));
        let too_many = spec(json!({"cron": "* * * * * * *"}));
        let found = problems(&[good.clone(), bad_cron, bad_zone, never, too_many, good]);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("schedules[1].cron: "), "{found:?}");
        assert!(found[1].starts_with("schedules[2].timezone: "), "{found:?}");
        assert!(found[2].starts_with("schedules[3].cron: "), "{found:?}");
        assert!(found[3].starts_with("schedules[4].cron: "), "{found:?}");
        assert_eq!(found[4], "schedules[5] repeats schedules[0]");
    }

    #[test]
    fn the_documented_forms_parse() {
        for cron in [
            "@daily",
            "@hourly",
            "0 0 12 * * 7",
            "0 0 12 L * *",
            "0 0 12 15W * *",
            "0 0 12 * * 5L",
            "0 0 12 * * 1#2",
            "0 5-50/15 * * JAN,JUL MON-FRI",
            "30 9 * * *",
        ] {
            let schedule = spec(json!({ "cron": cron }));
            let parsed = schedule
                .parse()
                .unwrap_or_else(|err| panic!("{cron}: {err}"));
            assert_eq!(ticks::next(&parsed, Utc::now(), 1).len(), 1, "{cron}");
        }
        let daily = spec(json!({"cron": "@daily"})).parse().unwrap();
        let at = DateTime::from_timestamp(1_800_000_123, 0).unwrap();
        assert_eq!(ticks::next(&daily, at, 1)[0].timestamp() % 86_400, 0);
    }

    #[test]
    fn the_number_of_schedules_is_bounded() {
        let many = vec![spec(json!({"cron": "* * * * * *"})); MAX_SCHEDULES + 1];
        assert_eq!(
            problems(&many),
            ["schedules: 17 schedules, at most 16 per function"]
        );
    }

    #[test]
    fn the_key_follows_the_content() {
        let one = spec(json!({"cron": "* * * * * *"}));
        let mut other = one.clone();
        assert_eq!(one.key(), other.key());
        other.input = json!({"n": 1});
        assert_ne!(one.key(), other.key());
        assert_eq!(one.key().len(), 16);
        let tick = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            idempotency_key("ab", tick),
            "schedule:ab:2023-11-14T22:13:20Z"
        );
    }
}
