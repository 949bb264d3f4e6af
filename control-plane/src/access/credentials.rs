//! [`Credentials`]: the API tokens the server accepts. Every stored token is held in
//! memory by its hash, so checking a request reads no disk; creating and revoking go
//! through the store first. The operator's own token (`GANTRY_TOKEN`, `--token-file`)
//! is an admin credential that lives only in the server's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::{
    check_token_name, constant_time_eq, generate_token, hash_token, Permission, Role, TokenRecord,
};
use crate::domain::now;
use crate::store::{Store, StoreError};

/// How stale a token's stored `last_used_at` may get: one write per token per minute.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody: the server runs with `--insecure-no-auth`.
    Anonymous,
    /// The operator's token given to `gantry serve`.
    Operator,
    /// A stored token.
    Token {
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
    },
}

impl Principal {
    /// The role the request acts with.
    pub fn role(&self) -> Role {
        match self {
            Principal::Anonymous | Principal::Operator => Role::Admin,
            Principal::Token { role, .. } => *role,
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("this server needs an API token: send `Authorization: Bearer TOKEN` (the CLI reads GANTRY_TOKEN, --token-file, or the admin-token file of the local data directory)")]
    Missing,
    /// A token that is not (or no longer) valid.
    #[error("the API token is not valid (unknown or revoked)")]
    Invalid,
    /// A valid token whose role does not grant the permission.
    #[error("the token {name:?} has the role {role}; this needs the role {needed} (or admin)")]
    Forbidden {
        /// The token's name.
        name: String,
        /// Its role.
        role: Role,
        /// The least role that would do.
        needed: Role,
    },
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTokenError {
    /// The name is malformed.
    #[error("{0}")]
    InvalidName(String),
    /// A token of that name exists.
    #[error("a token named {0:?} exists; revoke it first or choose another name")]
    Exists(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Entry {
    name: String,
    role: Role,
    hash: String,
    created_at: DateTime<Utc>,
    /// Milliseconds since the epoch of the last use (0: never).
    last_used_ms: AtomicI64,
    /// The last use written to the store.
    stored_ms: AtomicI64,
}

impl Entry {
    fn new(record: TokenRecord) -> Entry {
        let last_used = record.last_used_at.map_or(0, |at| at.timestamp_millis());
        Entry {
            name: record.name,
            role: record.role,
            hash: record.hash,
            created_at: record.created_at,
            last_used_ms: AtomicI64::new(last_used),
            stored_ms: AtomicI64::new(last_used),
        }
    }

    fn record(&self) -> TokenRecord {
        let last_used = self.last_used_ms.load(Ordering::Relaxed);
        TokenRecord {
            name: self.name.clone(),
            role: self.role,
            hash: self.hash.clone(),
            created_at: self.created_at,
            last_used_at: (last_used > 0)
                .then(|| DateTime::from_timestamp_millis(last_used))
                .flatten(),
        }
    }
}

/// The tokens this server accepts.
pub struct Credentials {
    store: Arc<dyn Store>,
    open: bool,
    operator_hash: Option<String>,
    by_hash: RwLock<HashMap<String, Arc<Entry>>>,
}

impl Credentials {
    /// Loads the stored tokens. `operator` is the operator's admin token, if one was
    /// given; `open` serves every request without a token (`--insecure-no-auth`).
    pub async fn load(
        store: Arc<dyn Store>,
        operator: Option<&str>,
        open: bool,
    ) -> Result<Credentials, StoreError> {
        let by_hash = store
            .list_tokens()
            .await?
            .into_iter()
            .map(|record| (record.hash.clone(), Arc::new(Entry::new(record))))
            .collect();
        Ok(Credentials {
            store,
            open,
            operator_hash: operator.map(hash_token),
            by_hash: RwLock::new(by_hash),
        })
    }

    /// Whether requests need no token at all.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Checks the bearer token of a request that needs `permission`.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        permission: Permission,
    ) -> Result<Principal, AuthError> {
        if self.open {
            return Ok(Principal::Anonymous);
        }
        let token = token
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = hash_token(token);
        if let Some(operator) = &self.operator_hash {
            if constant_time_eq(operator.as_bytes(), hash.as_bytes()) {
                return Ok(Principal::Operator);
            }
        }
        let entry = self
            .read()
            .get(&hash)
            .filter(|entry| constant_time_eq(entry.hash.as_bytes(), hash.as_bytes()))
            .cloned()
            .ok_or(AuthError::Invalid)?;
        self.touch(&entry);
        if !entry.role.allows(permission) {
            return Err(AuthError::Forbidden {
                name: entry.name.clone(),
                role: entry.role,
                needed: permission.least_role(),
            });
        }
        Ok(Principal::Token {
            name: entry.name.clone(),
            role: entry.role,
        })
    }

    /// Creates a token; answers its record and its text, which is never kept.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(TokenRecord, String), CreateTokenError> {
        check_token_name(name).map_err(CreateTokenError::InvalidName)?;
        let text = generate_token();
        let record = TokenRecord {
            name: name.to_owned(),
            role,
            hash: hash_token(&text),
            created_at: now(),
            last_used_at: None,
        };
        if !self.store.insert_token(&record).await? {
            return Err(CreateTokenError::Exists(name.to_owned()));
        }
        self.write()
            .insert(record.hash.clone(), Arc::new(Entry::new(record.clone())));
        Ok((record, text))
    }

    /// Revokes the token `name`; `false` if there is none. It stops working at once.
    pub async fn revoke(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_token(name).await?;
        self.write().retain(|_, entry| entry.name != name);
        Ok(deleted)
    }

    /// Every stored token, by name.
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut records: Vec<TokenRecord> = self.read().values().map(|e| e.record()).collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// The stored token whose text is `token`, if any.
    pub fn find(&self, token: &str) -> Option<TokenRecord> {
        self.read()
            .get(&hash_token(token))
            .map(|entry| entry.record())
    }

    /// Notes a use; the store hears of it at most once a minute per token.
    fn touch(&self, entry: &Arc<Entry>) {
        let now_ms = Utc::now().timestamp_millis();
        entry.last_used_ms.store(now_ms, Ordering::Relaxed);
        let stored = entry.stored_ms.load(Ordering::Relaxed);
        if now_ms - stored < TOUCH_EVERY_MS
            || entry
                .stored_ms
                .compare_exchange(stored, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (store, name) = (self.store.clone(), entry.name.clone());
        let Some(at) = DateTime::from_timestamp_millis(now_ms) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(err) = store.touch_token(&name, at).await {
                tracing::warn!(token = %name, "cannot record the token's last use: {err}");
            }
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Entry>>> {
        self.by_hash
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Entry>>> {
        self.by_hash
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
