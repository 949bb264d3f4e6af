//! The SQL of the SQLite store's API tokens, sealed secrets and server settings.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::sql::{db, get, get_opt_time, get_time, now, to_ms, unknown};
use crate::access::{Role, TokenRecord};
use crate::secrets::{Sealed, SecretRecord};
use crate::store::StoreError;

// ---------------------------------------------------------------------------------------
// API tokens

/// Inserts `token`; `false` when its name is taken.
pub(super) fn insert_token(conn: &Connection, token: &TokenRecord) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO api_tokens (name, role, token_hash, created_at, last_used_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                token.name,
                token.role.as_str(),
                token.hash,
                to_ms(token.created_at),
                token.last_used_at.map(to_ms),
            ])
        })
        .map_err(db("insert token"))?;
    Ok(inserted == 1)
}

fn decode_token(row: &Row<'_>) -> Result<TokenRecord, StoreError> {
    let role: String = get(row, 1, "token role")?;
    Ok(TokenRecord {
        name: get(row, 0, "token name")?,
        role: Role::parse(&role).ok_or_else(|| unknown("token role", &role))?,
        hash: get(row, 2, "token hash")?,
        created_at: get_time(row, 3, "token created_at")?,
        last_used_at: get_opt_time(row, 4, "token last_used_at")?,
    })
}

/// Every token, by name.
pub(super) fn list_tokens(conn: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, role, token_hash, created_at, last_used_at FROM api_tokens ORDER BY name",
        )
        .map_err(db("prepare token list"))?;
    let mut rows = stmt.query([]).map_err(db("list tokens"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db("read tokens"))? {
        out.push(decode_token(row)?);
    }
    Ok(out)
}

/// Deletes token `name`; `false` if there was none.
pub(super) fn delete_token(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM api_tokens WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute([name]))
        .map(|deleted| deleted == 1)
        .map_err(db("delete token"))
}

/// Sets token `name`'s last use.
pub(super) fn touch_token(
    conn: &Connection,
    name: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute(params![name, to_ms(at)]))
        .map(|_| ())
        .map_err(db("touch token"))
}

// ---------------------------------------------------------------------------------------
// Secrets

/// Columns of `secrets`, in [`decode_secret`]'s order.
const SECRET_COLUMNS: &str = "name, version, nonce, ciphertext, created_at, updated_at";

fn decode_secret(row: &Row<'_>) -> Result<SecretRecord, StoreError> {
    Ok(SecretRecord {
        name: get(row, 0, "secret name")?,
        version: get(row, 1, "secret version")?,
        sealed: Sealed {
            nonce: get(row, 2, "secret nonce")?,
            ciphertext: get(row, 3, "secret ciphertext")?,
        },
        created_at: get_time(row, 4, "secret created_at")?,
        updated_at: get_time(row, 5, "secret updated_at")?,
    })
}

/// Stores a new value of secret `name` as its next version.
pub(super) fn put_secret(
    conn: &Connection,
    name: &str,
    sealed: &Sealed,
) -> Result<SecretRecord, StoreError> {
    let at = to_ms(now());
    conn.prepare_cached(
        "INSERT INTO secrets (name, version, nonce, ciphertext, created_at, updated_at)
         VALUES (?1, 1, ?2, ?3, ?4, ?4)
         ON CONFLICT (name) DO UPDATE SET version = version + 1, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
    )
    .and_then(|mut stmt| stmt.execute(params![name, sealed.nonce, sealed.ciphertext, at]))
    .map_err(db("store secret"))?;
    get_secret(conn, name)?.ok_or_else(|| StoreError::Corrupt {
        what: "secret",
        detail: format!("{name:?} is missing right after it was stored"),
    })
}

/// Secret `name`, if stored.
pub(super) fn get_secret(
    conn: &Connection,
    name: &str,
) -> Result<Option<SecretRecord>, StoreError> {
    let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = ?1");
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(db("prepare secret read"))?;
    let mut rows = stmt.query([name]).map_err(db("read secret"))?;
    match rows.next().map_err(db("read secret"))? {
        Some(row) => decode_secret(row).map(Some),
        None => Ok(None),
    }
}

/// Every secret, by name.
pub(super) fn list_secrets(conn: &Connection) -> Result<Vec<SecretRecord>, StoreError> {
    let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name");
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(db("prepare secret list"))?;
    let mut rows = stmt.query([]).map_err(db("list secrets"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db("read secrets"))? {
        out.push(decode_secret(row)?);
    }
    Ok(out)
}

/// Deletes secret `name`; `false` if there was none.
pub(super) fn delete_secret(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM secrets WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute([name]))
        .map(|deleted| deleted == 1)
        .map_err(db("delete secret"))
}

// ---------------------------------------------------------------------------------------
// Settings

/// Setting `key`, if set.
pub(super) fn get_setting(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
        .map_err(db("read setting"))
}

/// Sets setting `key`.
pub(super) fn put_setting(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute([key, value]))
    .map(|_| ())
    .map_err(db("store setting"))
}
