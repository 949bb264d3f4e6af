//! [`Vault`]: seals secret values before they reach the store and opens them when a
//! function starts. Opened values are cached in memory by version, so starting an
//! instance reads no disk. A key that cannot open what the store holds is a clear
//! error at start, never garbage handed to a function.

use std::collections::BTreeMap;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{check_name, check_value, Masker, Sealed, SecretKey, SecretRecord};
use crate::registry::SecretRef;
use crate::store::{Store, StoreError};
pub use gantry_protocol::env::defaults::SECRETS_DIR;

/// The setting that proves which key sealed the stored secrets.
const KEY_CHECK_SETTING: &str = "secret_key_check";
/// What the key check seals.
const KEY_CHECK_TEXT: &[u8] = b"gantry secret key check";

/// What the API shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMeta {
    /// Its name.
    pub name: String,
    /// Its current version.
    pub version: u32,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When its current value was set.
    pub updated_at: DateTime<Utc>,
}

impl From<&SecretRecord> for SecretMeta {
    fn from(record: &SecretRecord) -> SecretMeta {
        SecretMeta {
            name: record.name.clone(),
            version: record.version,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// What the vault fails with.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A malformed name.
    #[error("{0}")]
    InvalidName(String),
    /// A value that cannot be a secret.
    #[error("{0}")]
    InvalidValue(String),
    /// No secret of that name.
    #[error("secret {0:?} not found")]
    NotFound(String),
    /// The key does not open what the store holds.
    #[error("the secret key from {origin} does not open the stored secrets ({what}); restore the key they were sealed with (GANTRY_SECRET_KEY or the data directory's secret-key file)")]
    WrongKey {
        /// Where the key came from.
        origin: String,
        /// What could not be opened.
        what: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a function's `secrets` become at launch.
#[derive(Debug, Default, Clone)]
pub struct Resolved {
    /// Variables to add to the instance's environment (values, and for file secrets
    /// SECRET_FILES and SECRETS_DIR for the watchdog).
    pub env: Vec<(String, String)>,
    /// Hides the values in what is kept of the run.
    pub masker: Masker,
}

/// An opened secret value, wiped from memory when the last holder drops it.
pub type SecretValue = Arc<Zeroizing<String>>;

/// Seals, stores and opens secrets.
pub struct Vault {
    store: Arc<dyn Store>,
    cipher: XChaCha20Poly1305,
    origin: String,
    opened: DashMap<String, (u32, SecretValue)>,
}

impl Vault {
    /// A vault over `store` with `key`, after checking that `key` is the one the stored
    /// secrets were sealed with (and recording it as such when nothing is sealed yet).
    pub async fn open(store: Arc<dyn Store>, key: &SecretKey) -> Result<Vault, VaultError> {
        let vault = Vault::new(store, key);
        vault.check_key(false).await?;
        Ok(vault)
    }

    /// [`Vault::open`] on a store other nodes share: a key that does not open the
    /// stored check is refused even while there are no secrets, since another node
    /// seals with the key that wrote it.
    pub async fn open_shared(store: Arc<dyn Store>, key: &SecretKey) -> Result<Vault, VaultError> {
        let vault = Vault::new(store, key);
        vault.check_key(true).await?;
        Ok(vault)
    }

    fn new(store: Arc<dyn Store>, key: &SecretKey) -> Vault {
        Vault {
            store,
            cipher: XChaCha20Poly1305::new(key.bytes().into()),
            origin: key.origin().to_owned(),
            opened: DashMap::new(),
        }
    }

    /// Checks `key` against the stored check, writing one if there is none. Unless
    /// `strict`, a store without secrets takes a new key.
    async fn check_key(&self, strict: bool) -> Result<(), VaultError> {
        let stored = self.store.get_setting(KEY_CHECK_SETTING).await?;
        let opens = stored
            .as_deref()
            .and_then(decode_check)
            .is_some_and(|sealed| self.unseal("key-check", &sealed).is_ok());
        if opens {
            return Ok(());
        }
        if stored.is_some() && (strict || !self.store.list_secrets().await?.is_empty()) {
            return Err(self.wrong_key("the key check"));
        }
        let sealed = self.seal("key-check", KEY_CHECK_TEXT);
        let text = format!(
            "{}.{}",
            hex::encode(&sealed.nonce),
            hex::encode(&sealed.ciphertext)
        );
        self.store.put_setting(KEY_CHECK_SETTING, &text).await?;
        Ok(())
    }

    /// Sets secret `name` to `value` (a new version); answers its metadata.
    pub async fn put(&self, name: &str, value: &str) -> Result<SecretMeta, VaultError> {
        check_name(name).map_err(VaultError::InvalidName)?;
        check_value(value).map_err(VaultError::InvalidValue)?;
        let sealed = self.seal(name, value.as_bytes());
        let record = self.store.put_secret(name, &sealed).await?;
        self.opened.insert(
            name.to_owned(),
            (record.version, Arc::new(Zeroizing::new(value.to_owned()))),
        );
        Ok(SecretMeta::from(&record))
    }

    /// Every secret's metadata, by name.
    pub async fn list(&self) -> Result<Vec<SecretMeta>, VaultError> {
        let records = self.store.list_secrets().await?;
        Ok(records.iter().map(SecretMeta::from).collect())
    }

    /// Deletes secret `name`; `false` if there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, VaultError> {
        let deleted = self.store.delete_secret(name).await?;
        self.opened.remove(name);
        Ok(deleted)
    }

    /// The names among `names` that are not stored secrets.
    pub async fn missing<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<String>, VaultError> {
        let known: std::collections::HashSet<String> = self
            .store
            .list_secrets()
            .await?
            .into_iter()
            .map(|record| record.name)
            .collect();
        Ok(names
            .into_iter()
            .filter(|name| !known.contains(*name))
            .map(str::to_owned)
            .collect())
    }

    /// The current value of secret `name`.
    pub async fn value(&self, name: &str) -> Result<SecretValue, VaultError> {
        if let Some(entry) = self.opened.get(name) {
            return Ok(entry.1.clone());
        }
        let record = self
            .store
            .get_secret(name)
            .await?
            .ok_or_else(|| VaultError::NotFound(name.to_owned()))?;
        let plain = self.unseal(name, &record.sealed)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| self.wrong_key(&format!("secret {name:?}")))?;
        let value: SecretValue = Arc::new(Zeroizing::new(text));
        self.opened
            .insert(name.to_owned(), (record.version, value.clone()));
        Ok(value)
    }

    /// The current version of secret `name`, if it is stored.
    pub async fn version(&self, name: &str) -> Result<Option<u32>, VaultError> {
        if let Some(entry) = self.opened.get(name) {
            return Ok(Some(entry.0));
        }
        Ok(self.store.get_secret(name).await?.map(|r| r.version))
    }

    /// The environment a function with `secrets` gets and the masker for its output.
    /// File secrets travel to the watchdog in SECRET_FILES, which writes them to
    /// SECRETS_DIR.
    pub async fn resolve(
        &self,
        secrets: &BTreeMap<String, SecretRef>,
    ) -> Result<Resolved, VaultError> {
        if secrets.is_empty() {
            return Ok(Resolved::default());
        }
        let mut values = Vec::with_capacity(secrets.len());
        for (var, reference) in secrets {
            values.push((
                var,
                reference.as_file(),
                self.value(reference.secret()).await?,
            ));
        }
        let masker = Masker::new(values.iter().map(|(_, _, value)| value.as_str()));
        let mut env = Vec::new();
        let mut files = serde_json::Map::new();
        for (var, as_file, value) in values {
            if as_file {
                files.insert(var.clone(), Value::String(value.to_string()));
            } else {
                env.push((var.clone(), value.to_string()));
            }
        }
        if !files.is_empty() {
            env.push((
                gantry_protocol::env::SECRET_FILES.to_owned(),
                Value::Object(files).to_string(),
            ));
            env.push((
                gantry_protocol::env::SECRETS_DIR.to_owned(),
                SECRETS_DIR.to_owned(),
            ));
        }
        Ok(Resolved { env, masker })
    }

    /// Seals `plain` under `label` (a name no secret can have) as text for a setting.
    pub(crate) fn seal_text(&self, label: &str, plain: &str) -> String {
        let sealed = self.seal(label, plain.as_bytes());
        format!(
            "{}.{}",
            hex::encode(&sealed.nonce),
            hex::encode(&sealed.ciphertext)
        )
    }

    /// Opens what [`Vault::seal_text`] sealed under `label`.
    pub(crate) fn open_text(
        &self,
        label: &str,
        text: &str,
    ) -> Result<Zeroizing<String>, VaultError> {
        let sealed = decode_check(text).ok_or_else(|| self.wrong_key(label))?;
        let plain = self.unseal(label, &sealed)?;
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| self.wrong_key(label))
    }

    fn seal(&self, name: &str, plain: &[u8]) -> Sealed {
        let nonce: [u8; 24] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad(name).as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any value of a secret's size");
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    fn unseal(&self, name: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.nonce.len() != 24 {
            return Err(self.wrong_key(&format!("secret {name:?}")));
        }
        self.cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: aad(name).as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| self.wrong_key(&format!("secret {name:?}")))
    }

    fn wrong_key(&self, what: &str) -> VaultError {
        VaultError::WrongKey {
            origin: self.origin.clone(),
            what: what.to_owned(),
        }
    }
}

/// The associated data of a sealed value: it binds the ciphertext to its name, so a
/// sealed value copied to another row does not open.
fn aad(name: &str) -> String {
    format!("gantry:secret:{name}")
}

fn decode_check(text: &str) -> Option<Sealed> {
    let (nonce, ciphertext) = text.split_once('.')?;
    Some(Sealed {
        nonce: hex::decode(nonce).ok()?,
        ciphertext: hex::decode(ciphertext).ok()?,
    })
}

#[cfg(test)]
#[path = "vault_tests.rs"]
mod tests;
