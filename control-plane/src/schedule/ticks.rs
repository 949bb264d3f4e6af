//! Tick arithmetic: which ticks of a schedule are due between its cursor and now, and
//! its next fire times. Pure functions of the clock they are given; daylight saving
//! follows croner (a fixed time in a skipped hour fires right after the gap, once in a
//! repeated hour; a wildcard or step fires at every real second that matches).

use chrono::{DateTime, Timelike, Utc};
use croner::Direction;

use super::{Parsed, MAX_CATCH_UP};

/// A tick: the instant a schedule fires, in UTC, on a whole second.
pub type Tick = DateTime<Utc>;

/// What one pass fires of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The ticks to fire, oldest first.
    pub fire: Vec<Tick>,
    /// Whether older missed ticks were passed over (only the latest one fires without
    /// catch-up; at most [`MAX_CATCH_UP`] with it).
    pub skipped: bool,
}

/// The ticks of `schedule` after `after` and at or before `now` that a pass fires: the
/// latest one, or with catch-up the newest [`MAX_CATCH_UP`] of them.
pub fn due(schedule: &Parsed, after: Tick, now: DateTime<Utc>) -> Due {
    let limit = if schedule.catch_up { MAX_CATCH_UP } else { 1 };
    let (fire, skipped) = newest(schedule, after, now, limit);
    Due { fire, skipped }
}

/// The newest `limit` ticks in (`after`, `now`], oldest first, and whether older ones
/// in that range were left out. Searches back from `now`, so a long downtime costs no
/// more than `limit` steps.
pub fn newest(
    schedule: &Parsed,
    after: Tick,
    now: DateTime<Utc>,
    limit: usize,
) -> (Vec<Tick>, bool) {
    let now = now.with_nanosecond(0).unwrap_or(now);
    let mut found = Vec::new();
    let mut more = false;
    let start = now.with_timezone(&schedule.zone);
    for tick in schedule.cron.iter_from(start, Direction::Backward) {
        let tick = tick.with_timezone(&Utc);
        if tick <= after {
            break;
        }
        if found.len() == limit {
            more = true;
            break;
        }
        found.push(tick);
    }
    found.reverse();
    (found, more)
}

/// The next `count` ticks after `now`.
pub fn next(schedule: &Parsed, now: DateTime<Utc>, count: usize) -> Vec<Tick> {
    schedule
        .cron
        .iter_after(now.with_timezone(&schedule.zone))
        .take(count)
        .map(|tick| tick.with_timezone(&Utc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleSpec;
    use serde_json::json;

    fn parsed(cron: &str, timezone: &str, catch_up: bool) -> Parsed {
        let spec: ScheduleSpec = serde_json::from_value(
            json!({"cron": cron, "timezone": timezone, "catch_up": catch_up}),
        )
        .unwrap();
        spec.parse().unwrap()
    }

    fn at(text: &str) -> Tick {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn shown(ticks: &[Tick]) -> Vec<String> {
        ticks.iter().map(|t| t.to_rfc3339()).collect()
    }

    #[test]
    fn every_second_fires_each_whole_second_once() {
        let schedule = parsed("* * * * * *", "UTC", true);
        let due = due(
            &schedule,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:03.700Z"),
        );
        assert_eq!(
            shown(&due.fire),
            [
                "2026-01-01T00:00:01+00:00",
                "2026-01-01T00:00:02+00:00",
                "2026-01-01T00:00:03+00:00"
            ]
        );
        assert!(!due.skipped);
        let none = super::due(&schedule, due.fire[2], at("2026-01-01T00:00:03.999Z"));
        assert!(none.fire.is_empty(), "a fired tick is not due again");
    }

    #[test]
    fn without_catch_up_only_the_latest_missed_tick_fires() {
        let schedule = parsed("*/10 * * * * *", "UTC", false);
        let due = due(
            &schedule,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T05:00:05Z"),
        );
        assert_eq!(shown(&due.fire), ["2026-01-01T05:00:00+00:00"]);
        assert!(due.skipped);
    }

    #[test]
    fn catch_up_fires_the_newest_hundred_and_drops_the_rest() {
        let schedule = parsed("* * * * * *", "UTC", true);
        let due = due(
            &schedule,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-02T00:00:00Z"),
        );
        assert_eq!(due.fire.len(), MAX_CATCH_UP);
        assert!(due.skipped);
        assert_eq!(due.fire[0], at("2026-01-01T23:58:21Z"));
        assert_eq!(due.fire[99], at("2026-01-02T00:00:00Z"));
        let exact = super::due(
            &schedule,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:01:40Z"),
        );
        assert_eq!((exact.fire.len(), exact.skipped), (100, false));
    }

    #[test]
    fn the_time_zone_places_the_ticks() {
        let schedule = parsed("0 0 9 * * *", "Europe/Paris", false);
        let now = at("2026-01-15T12:00:00Z");
        assert_eq!(
            shown(&next(&schedule, now, 2)),
            ["2026-01-16T08:00:00+00:00", "2026-01-17T08:00:00+00:00"]
        );
        let summer = next(&schedule, at("2026-07-15T12:00:00Z"), 1);
        assert_eq!(shown(&summer), ["2026-07-16T07:00:00+00:00"]);
        let five_fields = parsed("30 9 * * *", "America/New_York", false);
        assert_eq!(
            shown(&next(&five_fields, now, 1)),
            ["2026-01-15T14:30:00+00:00"]
        );
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_fires_right_after_it() {
        // Paris skips 02:00-03:00 local on 2026-03-29.
        let schedule = parsed("0 30 2 * * *", "Europe/Paris", false);
        let ticks = next(&schedule, at("2026-03-28T12:00:00Z"), 2);
        assert_eq!(
            shown(&ticks),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        let every_quarter = parsed("0 */15 * * * *", "Europe/Paris", true);
        let due = due(
            &every_quarter,
            at("2026-03-29T00:50:00Z"),
            at("2026-03-29T01:10:00Z"),
        );
        assert_eq!(
            shown(&due.fire),
            ["2026-03-29T01:00:00+00:00"],
            "the quarters of the skipped hour do not exist"
        );
    }

    #[test]
    fn the_autumn_overlap_fires_a_fixed_time_once_and_a_step_in_both_passes() {
        // Paris repeats 02:00-03:00 local on 2026-10-25 (00:00-02:00 UTC).
        let fixed = parsed("0 30 2 * * *", "Europe/Paris", true);
        let window = (at("2026-10-24T22:00:00Z"), at("2026-10-25T03:00:00Z"));
        let once = due(&fixed, window.0, window.1);
        assert_eq!(shown(&once.fire), ["2026-10-25T00:30:00+00:00"]);
        let step = parsed("0 30 * * * *", "Europe/Paris", true);
        let both = due(&step, window.0, window.1);
        assert_eq!(
            shown(&both.fire),
            [
                "2026-10-24T22:30:00+00:00",
                "2026-10-24T23:30:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T01:30:00+00:00",
                "2026-10-25T02:30:00+00:00"
            ]
        );
    }
}
