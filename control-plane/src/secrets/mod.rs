//! Secrets: named values a function gets in its environment (or as a file) without
//! anyone reading them back. Values are sealed at rest with XChaCha20-Poly1305 under a
//! 256-bit key from `GANTRY_SECRET_KEY` or a 0600 key file in the data directory;
//! [`vault::Vault`] seals, stores, opens and caches them, [`mask::Masker`] hides them in
//! captured logs and results.

pub mod key;
pub mod mask;
pub mod vault;

use chrono::{DateTime, Utc};

pub use key::{KeyError, SecretKey};
pub use mask::Masker;
pub use vault::{Resolved, SecretMeta, Vault, VaultError, SECRETS_DIR};

/// A sealed value: the random nonce and the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// 24 random bytes.
    pub nonce: Vec<u8>,
    /// The encrypted value followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

/// A stored secret: its name, version and sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// Unique name.
    pub name: String,
    /// 1 for the first value, then one more per change.
    pub version: u32,
    /// The sealed value.
    pub sealed: Sealed,
    /// When the secret was first set.
    pub created_at: DateTime<Utc>,
    /// When its current value was set.
    pub updated_at: DateTime<Utc>,
}

/// Longest secret name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest secret value: 64 KiB (it travels in an environment variable).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Checks a secret name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "secret name {name:?} must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// Checks a secret value: text of at most 64 KiB without NUL bytes (it becomes an
/// environment variable).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("a secret value must not be empty".into())
    } else if value.len() > MAX_VALUE_BYTES {
        Err(format!(
            "a secret value is at most {MAX_VALUE_BYTES} bytes, this one has {}",
            value.len()
        ))
    } else if value.contains('\0') {
        Err("a secret value must not contain NUL bytes".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        for good in ["db", "DB_PASSWORD", "api.key-2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "_x", "a b", "a/b", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("hunter2").is_ok());
        assert!(check_value("").is_err());
        assert!(check_value("a\0b").is_err());
        assert!(check_value(&"x".repeat(MAX_VALUE_BYTES + 1)).is_err());
    }
}
