//! The key that signs a function's deliveries: the value of the named secret its
//! `destinations.secret` gives, or else a key generated for the function, kept sealed
//! in the store's settings like a secret and shown only to admins.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::DestinationError;
use crate::secrets::Vault;
use crate::store::Store;

/// Serializes the making of keys on this node.
static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The setting holding the sealed generated key of `function`; the `/` keeps it apart
/// from every secret name.
fn setting(function: &str) -> String {
    format!("destination-key/{function}")
}

/// The signing key of a delivery: the named secret's value, or the generated key of
/// `function` (made on first use).
pub async fn signing_key(
    store: &Arc<dyn Store>,
    vault: &Vault,
    function: &str,
    secret: Option<&str>,
) -> Result<Zeroizing<String>, DestinationError> {
    match secret {
        Some(name) => Ok(Zeroizing::new(vault.value(name).await?.to_string())),
        None => function_key(store, vault, function).await,
    }
}

/// The generated key of `function`, made and stored sealed if it has none. When two
/// nodes make one at once the last write wins; both then read it back, so every later
/// delivery signs with the stored one.
pub async fn function_key(
    store: &Arc<dyn Store>,
    vault: &Vault,
    function: &str,
) -> Result<Zeroizing<String>, DestinationError> {
    let name = setting(function);
    if let Some(sealed) = store.get_setting(&name).await? {
        return Ok(vault.open_text(&name, &sealed)?);
    }
    // One maker at a time on this node (keys are made rarely: at a function's first
    // deploy, or on first use for one deployed before destinations existed).
    let _making = MAKING.lock().await;
    if let Some(sealed) = store.get_setting(&name).await? {
        return Ok(vault.open_text(&name, &sealed)?);
    }
    let key: [u8; 32] = rand::random();
    let key = Zeroizing::new(hex::encode(key));
    store
        .put_setting(&name, &vault.seal_text(&name, &key))
        .await?;
    match store.get_setting(&name).await? {
        Some(sealed) => Ok(vault.open_text(&name, &sealed)?),
        None => Ok(key),
    }
}
