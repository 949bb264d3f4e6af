//! Human output of a function's schedules in `gantry fn get`: each with its time zone,
//! catch-up, last tick and next fire times.

use super::table::{time, Table};
use crate::wire::ScheduleStatus;

/// The `schedules:` table; empty for a function without schedules.
pub fn schedule_details(schedules: &[ScheduleStatus]) -> String {
    if schedules.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&["CRON", "TIMEZONE", "CATCH UP", "LAST TICK", "NEXT"]);
    for schedule in schedules {
        let next: Vec<String> = schedule.next.iter().map(|at| time(Some(*at))).collect();
        table.row(vec![
            schedule.cron.clone(),
            schedule.timezone.clone(),
            if schedule.catch_up { "yes" } else { "no" }.to_owned(),
            schedule
                .last_tick
                .map_or_else(|| "-".to_owned(), |at| time(Some(at))),
            next.join(", "),
        ]);
    }
    format!("schedules:\n{}", table.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn each_schedule_shows_its_next_fire_times() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let text = schedule_details(&[ScheduleStatus {
            cron: "*/10 * * * * *".into(),
            timezone: "Europe/Paris".into(),
            catch_up: false,
            key: "k".into(),
            last_tick: None,
            next: vec![at(10), at(20), at(30)],
        }]);
        assert!(text.starts_with("schedules:\n"), "{text}");
        assert!(text.contains("*/10 * * * * *"), "{text}");
        assert!(text.contains("Europe/Paris"), "{text}");
        assert_eq!(text.matches("1970-01-01").count(), 3, "{text}");
        assert_eq!(schedule_details(&[]), "");
    }
}
