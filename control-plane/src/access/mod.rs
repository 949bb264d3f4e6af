//! Who may call the API: roles and what they grant, API tokens (kept only as hashes),
//! the registry that checks a presented token, and which permission each route needs.

pub mod credentials;
pub mod policy;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use credentials::{AuthError, Credentials, Principal};
pub use policy::required_permission;

/// What a request does, in the terms roles are granted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reading functions, executions, logs and metrics.
    Read,
    /// Starting and controlling executions: invoke, enqueue, cancel, retry, events.
    Invoke,
    /// Changing functions and secrets.
    Deploy,
    /// Managing API tokens.
    Admin,
}

impl Permission {
    /// The least role that grants this permission (for messages).
    pub fn least_role(self) -> Role {
        match self {
            Permission::Read => Role::Read,
            Permission::Invoke => Role::Invoke,
            Permission::Deploy => Role::Deploy,
            Permission::Admin => Role::Admin,
        }
    }
}

/// The role of a token: a set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Functions, secrets, and reading.
    Deploy,
    /// Invoking and enqueueing, controlling executions, and reading.
    Invoke,
    /// Reading only.
    Read,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deploy, Role::Invoke, Role::Read];

    /// Whether this role grants `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        match self {
            Role::Admin => true,
            Role::Deploy => matches!(permission, Permission::Deploy | Permission::Read),
            Role::Invoke => matches!(permission, Permission::Invoke | Permission::Read),
            Role::Read => permission == Permission::Read,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deploy => "deploy",
            Role::Invoke => "invoke",
            Role::Read => "read",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API token: its name, role and the SHA-256 of its secret text. The text
/// itself is shown once, when the token is created, and never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Unique name (`ci-deployer`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token text.
    pub hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last presented (kept to about a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Prefix of every token Gantry makes, so secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "gty_";

/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;

/// A new random token: the prefix and 32 random bytes in hex.
pub fn generate_token() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The hex SHA-256 of a token text, as stored. Tokens are 256 random bits, so a plain
/// hash is enough: there is nothing to guess a preimage from.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a token name: 1 to 64 characters of `a-z 0-9 . _ -`, starting with a letter
/// or digit. The error says what is wrong.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() <= MAX_NAME_LEN && valid_chars && starts_well {
        Ok(())
    } else {
        Err(format!(
            "token name {name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_they_say() {
        use Permission::*;
        let grants = |role: Role| {
            [Read, Invoke, Deploy, Admin]
                .into_iter()
                .filter(|p| role.allows(*p))
                .collect::<Vec<_>>()
        };
        assert_eq!(grants(Role::Admin), vec![Read, Invoke, Deploy, Admin]);
        assert_eq!(grants(Role::Deploy), vec![Read, Deploy]);
        assert_eq!(grants(Role::Invoke), vec![Read, Invoke]);
        assert_eq!(grants(Role::Read), vec![Read]);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[TOKEN_PREFIX.len()..]));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn token_names_are_checked() {
        for good in ["ci", "ci-deployer", "a.b_c-1", "0day"] {
            assert!(check_token_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "-x", "CI", "a b", "a/b", long.as_str()] {
            assert!(check_token_name(bad).is_err(), "{bad:?}");
        }
    }
}
