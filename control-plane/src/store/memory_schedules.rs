//! The memory store's schedule cursors (see [`crate::store::cursor`]).

use super::{ms, State};
use crate::domain::Execution;
use crate::store::{CursorScope, ScheduleAdvance, ScheduleCursor, StoreError, MAX_CURSORS};

impl State {
    pub(super) fn list_schedule_cursors(&self) -> Vec<ScheduleCursor> {
        self.schedule_cursors
            .iter()
            .take(MAX_CURSORS as usize)
            .map(|((function, key), last_tick)| ScheduleCursor {
                function: function.clone(),
                key: key.clone(),
                last_tick: *last_tick,
            })
            .collect()
    }

    pub(super) fn advance_schedule(
        &mut self,
        advance: &ScheduleAdvance,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        let id = (advance.function.clone(), advance.key.clone());
        let at = self.schedule_cursors.get(&id).copied();
        if at != advance.from.map(ms) {
            return Ok(false);
        }
        if let Some(execution) = execution {
            self.insert(&[execution])?;
        }
        self.schedule_cursors.insert(id, ms(advance.to));
        Ok(true)
    }

    pub(super) fn delete_schedule_cursors(&mut self, function: &str, scope: CursorScope) -> usize {
        let before = self.schedule_cursors.len();
        self.schedule_cursors.retain(|(owner, key), _| {
            owner != function
                || match scope {
                    CursorScope::All => false,
                    CursorScope::Keys(keys) => !keys.contains(key),
                }
        });
        before - self.schedule_cursors.len()
    }
}
