//! The memory store's functions and their versions, logs, API tokens, secrets,
//! settings and retention, with the SQLite store's rules (see `sqlite_sql.rs`,
//! `sqlite_access_sql.rs` and `sqlite_retention_sql.rs`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ms, FunctionRow, State};
use crate::access::TokenRecord;
use crate::domain::LogLine;
use crate::registry::{FunctionSpec, FunctionVersion};
use crate::secrets::{Sealed, SecretRecord};
use crate::store::{Deletion, PruneScope, StoreError};

impl State {
    /// Stores `spec` as the next version of its function and makes it current.
    fn insert_version(
        &mut self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        // Kept as SQLite keeps it: through its JSON, so both answer the same spec.
        let spec: FunctionSpec = serde_json::to_value(spec)
            .and_then(serde_json::from_value)
            .map_err(|err| StoreError::Corrupt {
                what: "function spec",
                detail: err.to_string(),
            })?;
        let version = self
            .versions
            .range((spec.name.clone(), 0)..=(spec.name.clone(), u32::MAX))
            .next_back()
            .map_or(1, |((_, version), _)| version + 1);
        let stored = FunctionVersion {
            name: spec.name.clone(),
            version,
            content_hash: content_hash.to_owned(),
            spec,
            created_at: crate::domain::now(),
        };
        self.versions
            .insert((stored.name.clone(), version), stored.clone());
        self.catalog_generation += 1;
        self.functions.insert(
            stored.name.clone(),
            FunctionRow {
                current: version,
                deleted: false,
            },
        );
        Ok(stored)
    }

    pub(super) fn create_function(
        &mut self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<FunctionVersion, StoreError> {
        if self.functions.get(&spec.name).is_some_and(|f| !f.deleted) {
            return Err(StoreError::FunctionExists(spec.name.clone()));
        }
        self.insert_version(spec, content_hash)
    }

    pub(super) fn replace_function(
        &mut self,
        spec: &FunctionSpec,
        content_hash: &str,
    ) -> Result<(FunctionVersion, bool), StoreError> {
        let Some(current) = self.get_function(&spec.name) else {
            return Err(StoreError::FunctionNotFound(spec.name.clone()));
        };
        if current.content_hash == content_hash {
            return Ok((current, false));
        }
        Ok((self.insert_version(spec, content_hash)?, true))
    }

    pub(super) fn get_function(&self, name: &str) -> Option<FunctionVersion> {
        let row = self.functions.get(name).filter(|f| !f.deleted)?;
        self.versions.get(&(name.to_owned(), row.current)).cloned()
    }

    pub(super) fn list_functions(&self) -> Vec<FunctionVersion> {
        self.functions
            .keys()
            .filter_map(|name| self.get_function(name))
            .collect()
    }

    pub(super) fn list_versions(&self, name: &str) -> Vec<FunctionVersion> {
        if self.functions.get(name).is_none_or(|f| f.deleted) {
            return Vec::new();
        }
        self.versions
            .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
            .map(|(_, version)| version.clone())
            .collect()
    }

    pub(super) fn delete_function(&mut self, name: &str) -> bool {
        match self.functions.get_mut(name) {
            Some(row) if !row.deleted => {
                row.deleted = true;
                self.catalog_generation += 1;
                true
            }
            _ => false,
        }
    }

    pub(super) fn append_logs(&mut self, id: Uuid, lines: &[LogLine]) {
        let log = self.logs.entry(id).or_default();
        for line in lines {
            log.entry(line.seq).or_insert_with(|| LogLine {
                time: ms(line.time),
                ..line.clone()
            });
        }
    }

    pub(super) fn read_logs(&self, id: Uuid, after_seq: u64, limit: u32) -> Vec<LogLine> {
        let Some(log) = self.logs.get(&id) else {
            return Vec::new();
        };
        log.range(after_seq.saturating_add(1)..)
            .take(limit as usize)
            .map(|(_, line)| line.clone())
            .collect()
    }

    pub(super) fn insert_token(&mut self, token: &TokenRecord) -> bool {
        if self.tokens.contains_key(&token.name) {
            return false;
        }
        let mut token = token.clone();
        token.created_at = ms(token.created_at);
        token.last_used_at = token.last_used_at.map(ms);
        self.tokens.insert(token.name.clone(), token);
        true
    }

    pub(super) fn touch_token(&mut self, name: &str, at: DateTime<Utc>) {
        if let Some(token) = self.tokens.get_mut(name) {
            token.last_used_at = Some(ms(at));
        }
    }

    pub(super) fn put_secret(&mut self, name: &str, sealed: &Sealed) -> SecretRecord {
        let at = crate::domain::now();
        let record = match self.secrets.get(name) {
            Some(old) => SecretRecord {
                version: old.version + 1,
                sealed: sealed.clone(),
                updated_at: at,
                ..old.clone()
            },
            None => SecretRecord {
                name: name.to_owned(),
                version: 1,
                sealed: sealed.clone(),
                created_at: at,
                updated_at: at,
            },
        };
        self.secrets.insert(name.to_owned(), record.clone());
        record
    }

    /// See [`crate::store::Store::put_setting`].
    pub(super) fn put_setting(&mut self, key: &str, value: &str) {
        self.settings.insert(key.to_owned(), value.to_owned());
    }

    pub(super) fn prune_executions(
        &mut self,
        scope: &PruneScope,
        before: DateTime<Utc>,
        limit: u32,
    ) -> usize {
        let before = ms(before);
        let mut old: Vec<(DateTime<Utc>, Uuid)> = self
            .executions
            .values()
            .filter(|e| e.status.is_terminal())
            .filter(|e| match scope {
                PruneScope::Function(name) => e.function == *name,
                PruneScope::AllBut(names) => !names.contains(&e.function),
            })
            .filter_map(|e| e.finished_at.filter(|at| *at < before).map(|at| (at, e.id)))
            .collect();
        old.sort();
        old.truncate(limit as usize);
        for (_, id) in &old {
            self.remove_execution(*id);
        }
        old.len()
    }

    /// Removes execution `id`, its logs, its deliveries and its idempotency key.
    fn remove_execution(&mut self, id: Uuid) {
        if let Some(e) = self.executions.remove(&id) {
            if let Some(key) = e.idempotency_key {
                self.idempotency.remove(&(e.function, key));
            }
        }
        self.logs.remove(&id);
        self.deliveries.retain(|_, held| held.execution_id() != id);
    }

    pub(super) fn delete_execution(&mut self, id: Uuid) -> Deletion {
        match self.executions.get(&id) {
            None => Deletion::NotFound,
            Some(e) if !e.status.is_terminal() => Deletion::Unfinished,
            Some(_) => {
                self.remove_execution(id);
                Deletion::Deleted
            }
        }
    }

    pub(super) fn prune_versions(&mut self, keep: u32) -> usize {
        let in_use: std::collections::HashSet<(String, u32)> = self
            .executions
            .values()
            .filter(|e| !e.status.is_terminal())
            .map(|e| (e.function.clone(), e.version))
            .collect();
        let mut newest: std::collections::HashMap<&str, u32> = Default::default();
        for (name, version) in self.versions.keys() {
            let top = newest.entry(name.as_str()).or_default();
            *top = (*top).max(*version);
        }
        let doomed: Vec<(String, u32)> = self
            .versions
            .keys()
            .filter(|(name, version)| {
                let newest = i64::from(newest.get(name.as_str()).copied().unwrap_or(0));
                let current = self.functions.get(name).map(|f| f.current);
                i64::from(*version) <= newest - i64::from(keep)
                    && current.is_some_and(|current| current != *version)
                    && !in_use.contains(&(name.clone(), *version))
            })
            .cloned()
            .collect();
        for key in &doomed {
            self.versions.remove(key);
        }
        doomed.len()
    }
}
