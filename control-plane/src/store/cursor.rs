//! Schedule cursors: per schedule of a function, the last tick it fired (or passed
//! over). Advancing one is a compare-and-set done in the same transaction as the insert
//! of the tick's execution, so a tick fires once however many nodes race for it and
//! whatever crashes between.

use chrono::{DateTime, Utc};

/// Where one schedule is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleCursor {
    /// The function.
    pub function: String,
    /// The schedule's key (a digest of its definition).
    pub key: String,
    /// The last tick fired or passed over (at first: when the schedule was deployed).
    pub last_tick: DateTime<Utc>,
}

/// A move of a schedule's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAdvance {
    /// The function.
    pub function: String,
    /// The schedule's key.
    pub key: String,
    /// Where the cursor must be for the move to apply; `None`: it must not exist yet
    /// (the move creates it).
    pub from: Option<DateTime<Utc>>,
    /// Where it goes.
    pub to: DateTime<Utc>,
}

/// Which cursors a deletion takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorScope<'a> {
    /// Every cursor of the function (it was deleted).
    All,
    /// The cursors with these keys (their schedules were changed or removed).
    Keys(&'a [String]),
}
