use super::*;
use crate::store::SqliteStore;

fn key(byte: u8) -> SecretKey {
    SecretKey::parse(&hex::encode([byte; 32]), "test key").unwrap()
}

async fn store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir).unwrap())
}

#[tokio::test]
async fn values_round_trip_and_only_metadata_is_listed() {
    let temp = tempfile::tempdir().unwrap();
    let vault = Vault::open(store(temp.path()).await, &key(1))
        .await
        .unwrap();
    let first = vault.put("db", "hunter22-password").await.unwrap();
    assert_eq!(first.version, 1);
    let second = vault.put("db", "correct horse").await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(vault.value("db").await.unwrap().as_str(), "correct horse");
    assert_eq!(vault.version("db").await.unwrap(), Some(2));
    let listed = vault.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let shown = serde_json::to_string(&listed).unwrap();
    assert!(!shown.contains("correct horse"), "{shown}");
    assert_eq!(vault.missing(["db", "api"]).await.unwrap(), vec!["api"]);
    assert!(vault.delete("db").await.unwrap());
    assert!(!vault.delete("db").await.unwrap());
    assert!(matches!(
        vault.value("db").await,
        Err(VaultError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_fresh_vault_opens_what_an_earlier_one_sealed() {
    let temp = tempfile::tempdir().unwrap();
    let shared = store(temp.path()).await;
    Vault::open(shared.clone(), &key(1))
        .await
        .unwrap()
        .put("api", "sk-0123456789")
        .await
        .unwrap();
    let reopened = Vault::open(shared, &key(1)).await.unwrap();
    assert_eq!(
        reopened.value("api").await.unwrap().as_str(),
        "sk-0123456789"
    );
}

#[tokio::test]
async fn another_key_is_refused_while_secrets_are_stored() {
    let temp = tempfile::tempdir().unwrap();
    let shared = store(temp.path()).await;
    let vault = Vault::open(shared.clone(), &key(1)).await.unwrap();
    vault.put("api", "sk-0123456789").await.unwrap();
    let err = Vault::open(shared.clone(), &key(2)).await.err().unwrap();
    assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("test key"), "{err}");
    vault.delete("api").await.unwrap();
    // With nothing sealed, a new key simply takes over.
    Vault::open(shared, &key(2)).await.unwrap();
}

#[tokio::test]
async fn a_sealed_value_is_bound_to_its_name_and_never_stored_in_clear() {
    let temp = tempfile::tempdir().unwrap();
    let shared = store(temp.path()).await;
    let vault = Vault::open(shared.clone(), &key(1)).await.unwrap();
    vault.put("a", "plain-text-marker-8734").await.unwrap();
    let record = shared.get_secret("a").await.unwrap().unwrap();
    shared.put_secret("b", &record.sealed).await.unwrap();
    let fresh = Vault::open(shared.clone(), &key(1)).await.unwrap();
    assert!(matches!(
        fresh.value("b").await,
        Err(VaultError::WrongKey { .. })
    ));
    drop((vault, fresh, shared));
    for entry in std::fs::read_dir(temp.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let found = bytes
            .windows(b"plain-text-marker".len())
            .any(|w| w == b"plain-text-marker");
        assert!(!found, "a secret value is stored in clear");
    }
}

#[tokio::test]
async fn bad_names_and_values_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let vault = Vault::open(store(temp.path()).await, &key(1))
        .await
        .unwrap();
    assert!(matches!(
        vault.put("a b", "value").await,
        Err(VaultError::InvalidName(_))
    ));
    assert!(matches!(
        vault.put("ok", "").await,
        Err(VaultError::InvalidValue(_))
    ));
}
