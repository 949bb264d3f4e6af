//! The SQL of API tokens, sealed secrets and server settings.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::codec::{db, get, get_opt_time, get_time, get_u32, to_ms, unknown};
use crate::access::{Role, TokenRecord};
use crate::domain::now;
use crate::secrets::{Sealed, SecretRecord};
use crate::store::StoreError;

// ---------------------------------------------------------------------------------------
// API tokens

/// Inserts `token`; `false` when its name is taken.
pub(super) async fn insert_token(
    client: &impl GenericClient,
    token: &TokenRecord,
) -> Result<bool, StoreError> {
    let inserted = client
        .execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            &[
                &token.name,
                &token.role.as_str(),
                &token.hash,
                &to_ms(token.created_at),
                &token.last_used_at.map(to_ms),
            ],
        )
        .await
        .map_err(db("insert a token"))?;
    Ok(inserted == 1)
}

/// Every token, by name.
pub(super) async fn list_tokens(
    client: &impl GenericClient,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = client
        .query(
            "SELECT name, role, token_hash, created_at, last_used_at FROM api_tokens
             ORDER BY name COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(db("list tokens"))?;
    rows.iter()
        .map(|row| {
            let role: &str = get(row, 1, "token role")?;
            Ok(TokenRecord {
                name: get(row, 0, "token name")?,
                role: Role::parse(role).ok_or_else(|| unknown("token role", role))?,
                hash: get(row, 2, "token hash")?,
                created_at: get_time(row, 3, "token created_at")?,
                last_used_at: get_opt_time(row, 4, "token last_used_at")?,
            })
        })
        .collect()
}

/// Deletes token `name`; `false` if there was none.
pub(super) async fn delete_token(
    client: &impl GenericClient,
    name: &str,
) -> Result<bool, StoreError> {
    client
        .execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
        .await
        .map(|deleted| deleted == 1)
        .map_err(db("delete a token"))
}

/// Sets token `name`'s last use.
pub(super) async fn touch_token(
    client: &impl GenericClient,
    name: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE api_tokens SET last_used_at = $2 WHERE name = $1",
            &[&name, &to_ms(at)],
        )
        .await
        .map(|_| ())
        .map_err(db("touch a token"))
}

// ---------------------------------------------------------------------------------------
// Secrets

/// Columns of `secrets`, in [`decode_secret`]'s order.
const SECRET_COLUMNS: &str = "name, version, nonce, ciphertext, created_at, updated_at";

fn decode_secret(row: &Row) -> Result<SecretRecord, StoreError> {
    Ok(SecretRecord {
        name: get(row, 0, "secret name")?,
        version: get_u32(row, 1, "secret version")?,
        sealed: Sealed {
            nonce: get(row, 2, "secret nonce")?,
            ciphertext: get(row, 3, "secret ciphertext")?,
        },
        created_at: get_time(row, 4, "secret created_at")?,
        updated_at: get_time(row, 5, "secret updated_at")?,
    })
}

/// Stores a new value of secret `name` as its next version, in one statement.
pub(super) async fn put_secret(
    client: &impl GenericClient,
    name: &str,
    sealed: &Sealed,
) -> Result<SecretRecord, StoreError> {
    let sql = format!(
        "INSERT INTO secrets (name, version, nonce, ciphertext, created_at, updated_at)
         VALUES ($1, 1, $2, $3, $4, $4)
         ON CONFLICT (name) DO UPDATE SET version = secrets.version + 1,
             nonce = excluded.nonce, ciphertext = excluded.ciphertext,
             updated_at = excluded.updated_at
         RETURNING {SECRET_COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[&name, &sealed.nonce, &sealed.ciphertext, &to_ms(now())],
        )
        .await
        .map_err(db("store a secret"))?;
    decode_secret(&row)
}

/// Secret `name`, if stored.
pub(super) async fn get_secret(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<SecretRecord>, StoreError> {
    let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1");
    let row = client
        .query_opt(&sql, &[&name])
        .await
        .map_err(db("read a secret"))?;
    row.as_ref().map(decode_secret).transpose()
}

/// Every secret, by name.
pub(super) async fn list_secrets(
    client: &impl GenericClient,
) -> Result<Vec<SecretRecord>, StoreError> {
    let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name COLLATE \"C\"");
    let rows = client.query(&sql, &[]).await.map_err(db("list secrets"))?;
    rows.iter().map(decode_secret).collect()
}

/// Deletes secret `name`; `false` if there was none.
pub(super) async fn delete_secret(
    client: &impl GenericClient,
    name: &str,
) -> Result<bool, StoreError> {
    client
        .execute("DELETE FROM secrets WHERE name = $1", &[&name])
        .await
        .map(|deleted| deleted == 1)
        .map_err(db("delete a secret"))
}

// ---------------------------------------------------------------------------------------
// Settings

/// Setting `key`, if set.
pub(super) async fn get_setting(
    client: &impl GenericClient,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
        .await
        .map_err(db("read a setting"))?;
    row.map(|row| get(&row, 0, "setting value")).transpose()
}

/// Sets setting `key`.
pub(super) async fn put_setting(
    client: &impl GenericClient,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await
        .map(|_| ())
        .map_err(db("store a setting"))
}
