//! The memory store's executions: inserting, finding and listing them, moving them
//! through their statuses under the same compare-and-set rules as SQLite, claims,
//! leases and due work. Every operation checks before it changes anything, so a refused
//! one leaves no trace (what a transaction gives the SQLite store).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ms, State};
use crate::domain::{AttemptFailure, Claim, Execution, ExecutionStatus, Finished, Holder, Started};
use crate::store::{ExecutionFilter, Fault, FollowUps, Redrive, StoreError, Unfinished};

/// Whether `status` is one a runner holds.
fn is_held_status(status: ExecutionStatus) -> bool {
    matches!(status, ExecutionStatus::Starting | ExecutionStatus::Running)
}

/// `execution` as a payloadless listing answers it.
fn without_payloads(execution: &Execution) -> Execution {
    let mut execution = execution.clone();
    execution.input = serde_json::Value::Null;
    execution.output = None;
    execution
}

/// `execution` as the store keeps it: times to the millisecond, not yet re-driven.
fn normalized(execution: &Execution) -> Execution {
    let mut e = execution.clone();
    e.created_at = ms(e.created_at);
    e.started_at = e.started_at.map(ms);
    e.finished_at = e.finished_at.map(ms);
    e.run_at = e.run_at.map(ms);
    e.lease_until = e.lease_until.map(ms);
    e.redriven_by = None;
    e
}

impl State {
    /// Whether `records` can all be inserted: the error the first one that cannot
    /// answers otherwise.
    fn check_insert(&self, records: &[&Execution]) -> Result<(), StoreError> {
        for (n, record) in records.iter().enumerate() {
            let earlier = &records[..n];
            if let Some(key) = &record.idempotency_key {
                let index = (record.function.clone(), key.clone());
                if let Some(existing) = self.idempotency.get(&index) {
                    return Err(StoreError::DuplicateIdempotencyKey(*existing));
                }
                if let Some(twin) = earlier.iter().find(|other| {
                    other.function == record.function
                        && other.idempotency_key.as_deref() == Some(key)
                }) {
                    return Err(StoreError::DuplicateIdempotencyKey(twin.id));
                }
            }
            if self.executions.contains_key(&record.id)
                || earlier.iter().any(|other| other.id == record.id)
            {
                return Err(StoreError::database(
                    "insert execution",
                    Fault::Conflict,
                    format!("execution {} already exists", record.id),
                ));
            }
        }
        Ok(())
    }

    /// Inserts `records`, all or none.
    pub(super) fn insert(&mut self, records: &[&Execution]) -> Result<(), StoreError> {
        self.check_insert(records)?;
        for record in records {
            if let Some(key) = &record.idempotency_key {
                self.idempotency
                    .insert((record.function.clone(), key.clone()), record.id);
            }
            self.executions.insert(record.id, normalized(record));
        }
        Ok(())
    }

    pub(super) fn find_by_idempotency_key(&self, function: &str, key: &str) -> Option<Execution> {
        let id = self
            .idempotency
            .get(&(function.to_owned(), key.to_owned()))?;
        self.executions.get(id).cloned()
    }

    pub(super) fn list_executions(&self, filter: &ExecutionFilter) -> Vec<Execution> {
        let upper = filter
            .before_id
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.executions
            .range((std::ops::Bound::Unbounded, upper))
            .rev()
            .map(|(_, e)| e)
            .filter(|e| filter.function.as_ref().is_none_or(|f| *f == e.function))
            .filter(|e| filter.statuses.is_empty() || filter.statuses.contains(&e.status))
            .filter(|e| filter.triggers.is_empty() || filter.triggers.contains(&e.trigger))
            .filter(|e| filter.since.is_none_or(|since| e.created_at >= ms(since)))
            .filter(|e| filter.until.is_none_or(|until| e.created_at < ms(until)))
            .filter(|e| filter.dead_letter.is_none_or(|dead| e.dead_letter == dead))
            .take(filter.limit as usize)
            .map(|e| {
                if filter.with_payloads {
                    e.clone()
                } else {
                    without_payloads(e)
                }
            })
            .collect()
    }

    /// Executions after `after` (by id) matching `keep`, at most `limit`, without
    /// payloads.
    fn page(
        &self,
        after: Option<Uuid>,
        limit: u32,
        keep: impl Fn(&Execution) -> bool,
    ) -> Vec<Execution> {
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.executions
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| keep(e))
            .take(limit as usize)
            .map(without_payloads)
            .collect()
    }

    pub(super) fn list_unfinished(
        &self,
        which: &Unfinished,
        after: Option<Uuid>,
        limit: u32,
    ) -> Vec<Execution> {
        self.page(after, limit, |e| match which {
            Unfinished::Queued => e.status == ExecutionStatus::Queued && e.run_at.is_none(),
            Unfinished::HeldBy(owner) => {
                is_held_status(e.status) && e.owner.as_ref().is_none_or(|o| o == owner)
            }
            Unfinished::All => !e.status.is_terminal(),
        })
    }

    /// Execution `id` if `owner` may move it: queued, or starting or running and held
    /// by `owner` (or by no owner: a record from before claims).
    fn held_by(&mut self, id: Uuid, owner: &str) -> Option<&mut Execution> {
        self.endable_by(id, Holder::Owner(owner))
    }

    /// Execution `id` if `holder` may move it (see [`Holder`]).
    fn endable_by(&mut self, id: Uuid, holder: Holder<'_>) -> Option<&mut Execution> {
        self.executions.get_mut(&id).filter(|e| match holder {
            Holder::Queue => e.status == ExecutionStatus::Queued,
            Holder::Owner(owner) => {
                is_held_status(e.status) && e.owner.as_deref().is_none_or(|o| o == owner)
            }
        })
    }

    pub(super) fn claim(&mut self, id: Uuid, claim: &Claim, now: DateTime<Utc>) -> bool {
        let Some(function) = self.executions.get(&id).map(|e| e.function.clone()) else {
            return false;
        };
        if let Some(limit) = claim.max_in_flight {
            let held = self
                .executions
                .values()
                .filter(|e| e.function == function && is_held_status(e.status))
                .count();
            if held >= limit as usize {
                return false;
            }
        }
        let Some(e) = self.executions.get_mut(&id) else {
            return false;
        };
        if e.status != ExecutionStatus::Queued || e.run_at.is_some_and(|at| at > now) {
            return false;
        }
        e.status = ExecutionStatus::Starting;
        e.owner = Some(claim.owner.clone());
        e.lease_until = Some(ms(claim.lease_until));
        true
    }

    pub(super) fn mark_running(&mut self, id: Uuid, owner: &str, started: &Started) -> bool {
        let Some(e) = self.executions.get_mut(&id) else {
            return false;
        };
        if e.status != ExecutionStatus::Starting || e.owner.as_deref() != Some(owner) {
            return false;
        }
        e.status = ExecutionStatus::Running;
        e.started_at = Some(ms(started.started_at));
        e.instance_id = Some(started.instance_id.clone());
        e.cold_start = Some(started.cold_start);
        e.callback_token_hash = Some(started.callback_token_hash.clone());
        true
    }

    /// Back to `queued` for `attempt`, its claim and start cleared.
    fn back_to_queue(e: &mut Execution, attempt: u32, run_at: Option<DateTime<Utc>>) {
        e.status = ExecutionStatus::Queued;
        e.attempt = attempt;
        e.run_at = run_at.map(ms);
        e.started_at = None;
        e.instance_id = None;
        e.cold_start = None;
        e.callback_token_hash = None;
        e.owner = None;
        e.lease_until = None;
    }

    pub(super) fn requeue(&mut self, id: Uuid, owner: &str, attempt: u32) -> bool {
        let Some(e) = self.held_by(id, owner) else {
            return false;
        };
        State::back_to_queue(e, attempt, None);
        true
    }

    pub(super) fn finish(
        &mut self,
        id: Uuid,
        holder: Holder<'_>,
        finished: &Finished,
        follow: &FollowUps,
    ) -> Result<bool, StoreError> {
        if self.endable_by(id, holder).is_none() {
            return Ok(false);
        }
        self.check_follow_ups(follow)?;
        if let Some(e) = self.endable_by(id, holder) {
            e.status = finished.status;
            e.output = finished.output.clone();
            e.error = finished.error.clone();
            e.exit_code = finished.exit_code;
            e.duration_ms = finished.duration_ms;
            e.finished_at = Some(ms(finished.finished_at));
            e.dead_letter = finished.dead_letter;
            e.run_at = None;
            e.lease_until = None;
        }
        self.write_follow_ups(id, follow)?;
        Ok(true)
    }

    /// Inserts `execution` and what its result sets off, all or nothing.
    pub(super) fn insert_with(
        &mut self,
        execution: &Execution,
        follow: &FollowUps,
    ) -> Result<(), StoreError> {
        let records: Vec<&Execution> = std::iter::once(execution).chain(&follow.children).collect();
        self.check_insert(&records)?;
        self.check_deliveries(&follow.deliveries)?;
        self.insert(&records)?;
        self.arm_with(execution.id, follow)
    }

    /// Fails as writing `follow` would, changing nothing.
    fn check_follow_ups(&self, follow: &FollowUps) -> Result<(), StoreError> {
        self.check_insert(&follow.children.iter().collect::<Vec<_>>())?;
        self.check_deliveries(&follow.deliveries)
    }

    /// Writes what the result of execution `id` sets off (checked beforehand).
    fn write_follow_ups(&mut self, id: Uuid, follow: &FollowUps) -> Result<(), StoreError> {
        self.insert(&follow.children.iter().collect::<Vec<_>>())?;
        self.arm_with(id, follow)
    }

    /// Stores the deliveries of `follow` and arms the callbacks waiting for `id`.
    fn arm_with(&mut self, id: Uuid, follow: &FollowUps) -> Result<(), StoreError> {
        self.insert_deliveries(&follow.deliveries)?;
        if let Some(body) = &follow.callback_body {
            self.arm_deliveries(id, body, crate::domain::now());
        }
        Ok(())
    }

    pub(super) fn schedule_retry(
        &mut self,
        id: Uuid,
        owner: &str,
        attempt: u32,
        run_at: DateTime<Utc>,
        failure: &AttemptFailure,
    ) -> bool {
        let Some(e) = self.held_by(id, owner) else {
            return false;
        };
        State::back_to_queue(e, attempt, Some(run_at));
        e.due_at = None;
        e.attempts.push(failure.clone());
        true
    }

    pub(super) fn renew_leases(&mut self, owner: &str, until: DateTime<Utc>) -> usize {
        let mut renewed = 0;
        for e in self.executions.values_mut() {
            if is_held_status(e.status) && e.owner.as_deref() == Some(owner) {
                e.lease_until = Some(ms(until));
                renewed += 1;
            }
        }
        renewed
    }

    /// Whether `e` is held by an owner other than `owner` whose lease lapsed before `now`.
    fn lapsed(e: &Execution, now: DateTime<Utc>) -> bool {
        is_held_status(e.status) && e.lease_until.is_some_and(|until| until < ms(now))
    }

    pub(super) fn list_expired(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Vec<Execution> {
        self.page(None, limit, |e| {
            State::lapsed(e, now) && e.owner.as_deref().is_some_and(|o| o != owner)
        })
    }

    pub(super) fn reclaim(
        &mut self,
        id: Uuid,
        from: &str,
        now: DateTime<Utc>,
        claim: &Claim,
    ) -> bool {
        let Some(e) = self.executions.get_mut(&id) else {
            return false;
        };
        if !State::lapsed(e, now) || e.owner.as_deref() != Some(from) {
            return false;
        }
        e.owner = Some(claim.owner.clone());
        e.lease_until = Some(ms(claim.lease_until));
        true
    }

    pub(super) fn take_due(&mut self, now: DateTime<Utc>, limit: u32) -> Vec<(Uuid, String)> {
        let now = ms(now);
        let mut due: Vec<(DateTime<Utc>, Uuid)> = self
            .executions
            .values()
            .filter(|e| e.status == ExecutionStatus::Queued)
            .filter_map(|e| e.run_at.filter(|at| *at <= now).map(|at| (at, e.id)))
            .collect();
        due.sort();
        due.truncate(limit as usize);
        due.into_iter()
            .filter_map(|(_, id)| {
                let e = self.executions.get_mut(&id)?;
                e.due_at = e.due_at.or(e.run_at);
                e.run_at = None;
                Some((id, e.function.clone()))
            })
            .collect()
    }

    pub(super) fn request_cancel(&mut self, id: Uuid) -> bool {
        let held = self
            .executions
            .get(&id)
            .is_some_and(|e| is_held_status(e.status));
        if held {
            self.cancel_requested.insert(id);
        }
        held
    }

    pub(super) fn cancel_requests(&self, owner: &str, limit: u32) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .cancel_requested
            .iter()
            .filter(|id| {
                self.executions
                    .get(id)
                    .is_some_and(|e| is_held_status(e.status) && e.owner.as_deref() == Some(owner))
            })
            .copied()
            .collect();
        ids.sort();
        ids.truncate(limit as usize);
        ids
    }

    pub(super) fn list_overdue(
        &self,
        function: &str,
        due_before: DateTime<Utc>,
        limit: u32,
    ) -> Vec<Uuid> {
        let due_before = ms(due_before);
        let mut overdue: Vec<Uuid> = self
            .executions
            .values()
            .filter(|e| e.function == function && e.status == ExecutionStatus::Queued)
            .filter(|e| e.run_at.is_none() && e.due_at.unwrap_or(e.created_at) < due_before)
            .map(|e| e.id)
            .collect();
        overdue.sort();
        overdue.truncate(limit as usize);
        overdue
    }

    pub(super) fn make_stale_due(
        &mut self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> usize {
        let before = crate::store::stale_cutoff(created_before);
        let mut stale: Vec<Uuid> = self
            .executions
            .values()
            .filter(|e| e.status == ExecutionStatus::Queued && e.run_at.is_none())
            .map(|e| e.id)
            .filter(|id| *id < before)
            .collect();
        stale.sort();
        stale.truncate(limit as usize);
        for id in &stale {
            if let Some(e) = self.executions.get_mut(id) {
                e.run_at = Some(ms(now));
                e.due_at = e.due_at.or(Some(e.created_at));
            }
        }
        stale.len()
    }

    pub(super) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.executions
            .values()
            .filter(|e| e.status == ExecutionStatus::Queued)
            .filter_map(|e| e.run_at)
            .min()
    }

    pub(super) fn redrive(&mut self, id: Uuid, retry: &Execution) -> Result<Redrive, StoreError> {
        let Some(e) = self.executions.get(&id) else {
            return Ok(Redrive::NotFailed);
        };
        if let Some(by) = e.redriven_by {
            return Ok(Redrive::Already(by));
        }
        let failed = matches!(
            e.status,
            ExecutionStatus::Error | ExecutionStatus::Timeout | ExecutionStatus::Cancelled
        );
        if !failed {
            return Ok(Redrive::NotFailed);
        }
        self.insert(&[retry])?;
        if let Some(e) = self.executions.get_mut(&id) {
            e.dead_letter = false;
            e.redriven_by = Some(retry.id);
        }
        Ok(Redrive::Done)
    }

    pub(super) fn chain_tree(&self, root: Uuid, after: Option<Uuid>, limit: u32) -> Vec<Execution> {
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.executions
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| e.id == root || e.root_id == Some(root))
            .take(limit as usize)
            .cloned()
            .collect()
    }
}
