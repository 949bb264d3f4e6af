//! The key that seals secrets: 32 bytes from `GANTRY_SECRET_KEY` (64 hex digits or
//! base64), else from `secret-key` in the data directory, created (0600) on first use.

use std::path::{Path, PathBuf};

use base64::Engine;
use zeroize::Zeroizing;

use crate::datadir;

/// The key file in the data directory.
pub const KEY_FILE: &str = "secret-key";
/// The environment variable that gives the key instead of the file.
pub const KEY_VAR: &str = "GANTRY_SECRET_KEY";

/// Why the key is not usable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The variable or file does not hold 32 bytes in hex or base64.
    #[error("{source_name} must hold a 256-bit key as 64 hex digits or base64 of 32 bytes")]
    Malformed {
        /// `GANTRY_SECRET_KEY` or the file's path.
        source_name: String,
    },
    /// The key file cannot be read or written.
    #[error("cannot use the secret key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A 256-bit key, wiped from memory when dropped.
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<[u8; 32]>,
    /// Where it came from, for messages.
    origin: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(from {})", self.origin)
    }
}

impl SecretKey {
    /// The key from `GANTRY_SECRET_KEY` when `configured` (its value) is given, else from
    /// the data directory's key file, which is created with a new random key if missing.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<SecretKey, KeyError> {
        if let Some(text) = configured.filter(|text| !text.trim().is_empty()) {
            return SecretKey::parse(text, KEY_VAR);
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |source| KeyError::File {
            path: path.clone(),
            source,
        };
        match datadir::read_trimmed(&path).map_err(file_error)? {
            Some(text) => SecretKey::parse(&text, &path.display().to_string()),
            None => {
                let key = SecretKey {
                    bytes: Zeroizing::new(rand::random()),
                    origin: path.display().to_string(),
                };
                let text = Zeroizing::new(hex::encode(*key.bytes));
                datadir::write_private(&path, text.as_bytes()).map_err(file_error)?;
                Ok(key)
            }
        }
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str, origin: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        let decoded = Zeroizing::new(
            hex::decode(text)
                .ok()
                .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .or_else(|| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(text)
                        .ok()
                })
                .unwrap_or_default(),
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Malformed {
                source_name: origin.to_owned(),
            })?;
        Ok(SecretKey {
            bytes: Zeroizing::new(bytes),
            origin: origin.to_owned(),
        })
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Where the key came from (`GANTRY_SECRET_KEY` or the file's path).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_key_is_created_once_private_and_reused() {
        let temp = tempfile::tempdir().unwrap();
        let first = SecretKey::load(None, temp.path()).unwrap();
        let path = temp.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = SecretKey::load(None, temp.path()).unwrap();
        assert_eq!(first.bytes(), again.bytes());
    }

    #[test]
    fn a_configured_key_wins_in_hex_or_base64() {
        let temp = tempfile::tempdir().unwrap();
        let raw = [7u8; 32];
        let hex_key = SecretKey::load(Some(&hex::encode(raw)), temp.path()).unwrap();
        assert_eq!(hex_key.bytes(), &raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(SecretKey::parse(&b64, KEY_VAR).unwrap().bytes(), &raw);
        assert!(!temp.path().join(KEY_FILE).exists(), "no file is made");
        let err = SecretKey::parse("too-short", KEY_VAR).unwrap_err();
        assert!(err.to_string().contains(KEY_VAR), "{err}");
        assert!(!format!("{hex_key:?}").contains(&hex::encode(raw)));
    }
}
