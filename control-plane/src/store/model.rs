//! The store's own query and answer types: which unfinished executions to page
//! through, listing filters, what a prune, delete or re-drive did.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{ExecutionStatus, Trigger};

/// Which unfinished executions [`super::Store::list_unfinished`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// Queued ones that may run now (no `run_at`: those are due work, see
    /// [`super::Store::take_due`]).
    Queued,
    /// Starting or running ones this owner holds (or that no owner holds: records
    /// written before claims existed).
    HeldBy(String),
    /// Every unfinished one.
    All,
}

/// Which functions' executions [`super::Store::prune_executions`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneScope {
    /// This function's.
    Function(String),
    /// Every function's but these.
    AllBut(Vec<String>),
}

/// What [`super::Store::delete_execution`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// It is gone, with its logs.
    Deleted,
    /// There is no such execution.
    NotFound,
    /// It has not finished: it stays.
    Unfinished,
}

/// What [`super::Store::redrive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redrive {
    /// The re-drive is stored.
    Done,
    /// The failure was re-driven before, by this execution.
    Already(Uuid),
    /// The execution is not a finished failure.
    NotFailed,
}

/// Which executions to list: every field narrows; `cursor` pages (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    /// Only this function's.
    pub function: Option<String>,
    /// Only these statuses (any of them).
    pub statuses: Vec<ExecutionStatus>,
    /// Only these triggers (any of them).
    pub triggers: Vec<Trigger>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Only dead-lettered ones (`Some(true)`) or only others (`Some(false)`).
    pub dead_letter: Option<bool>,
    /// Only ids older than this one (the last id of the previous page).
    pub before_id: Option<Uuid>,
    /// Most records answered.
    pub limit: u32,
    /// Read `input` and `output` too (otherwise they come back as `null`).
    pub with_payloads: bool,
}

/// What recording a final result sets off, written in the transaction that records it
/// (only if it applies): a crash cannot keep the result and lose these, nor the reverse.
#[derive(Debug, Clone, Default)]
pub struct FollowUps {
    /// The executions its chains start.
    pub children: Vec<crate::domain::Execution>,
    /// The deliveries of the result to the function's destinations, pending.
    pub deliveries: Vec<crate::destinations::Delivery>,
    /// The result body, when callbacks wait for it: they become pending with it, due at
    /// once.
    pub callback_body: Option<String>,
}

impl FollowUps {
    /// Only chained `children`.
    pub fn children(children: Vec<crate::domain::Execution>) -> FollowUps {
        FollowUps {
            children,
            ..FollowUps::default()
        }
    }

    /// Whether it sends the result anywhere (a delivery, or a callback made pending).
    pub fn sends_results(&self) -> bool {
        !self.deliveries.is_empty() || self.callback_body.is_some()
    }

    /// Whether there is nothing to write beside the result.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && self.deliveries.is_empty() && self.callback_body.is_none()
    }
}
