//! Opening SQLite connections for the store: pragmas, the schema and its migrations.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`. A commit appends
//! its pages to the write-ahead log with a `write(2)` before it returns, so once a write
//! is acknowledged it is in the operating system's page cache and survives a kill -9 of
//! the process (our crash model). It is not fsynced on every commit, so a power loss or
//! a kernel crash may lose the last commits (never corrupt the database): the WAL is
//! fsynced at each checkpoint only.

use std::path::Path;
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags};

use super::sql::db;
use crate::store::StoreError;

/// The database file inside the data directory.
pub(super) const DB_FILE: &str = "gantry.db";

/// How long a connection waits for a lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (the listing query has many variants).
const STATEMENT_CACHE: usize = 64;

/// Schema migrations: `MIGRATIONS[i]` takes a database from `user_version` `i` to
/// `i + 1`. Append new ones; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE IF NOT EXISTS functions (
        name            TEXT PRIMARY KEY NOT NULL,
        current_version INTEGER NOT NULL,
        deleted         INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS function_versions (
        name         TEXT NOT NULL,
        version      INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        spec         TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE IF NOT EXISTS executions (
        id                  BLOB PRIMARY KEY NOT NULL,
        function            TEXT NOT NULL,
        version             INTEGER NOT NULL,
        status              TEXT NOT NULL,
        input               TEXT NOT NULL,
        output              TEXT,
        error               TEXT,
        attempt             INTEGER NOT NULL,
        parent_id           BLOB,
        root_id             BLOB,
        depth               INTEGER NOT NULL,
        triggered_by        TEXT NOT NULL,
        trace_id            TEXT,
        idempotency_key     TEXT,
        timeout_ms          INTEGER NOT NULL,
        created_at          INTEGER NOT NULL,
        started_at          INTEGER,
        finished_at         INTEGER,
        duration_ms         INTEGER,
        cold_start          INTEGER,
        instance_id         TEXT,
        exit_code           INTEGER,
        dead_letter         INTEGER NOT NULL DEFAULT 0,
        callback_token_hash TEXT
    );
    CREATE UNIQUE INDEX IF NOT EXISTS executions_idempotency
        ON executions (function, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX IF NOT EXISTS executions_function ON executions (function, id);
    CREATE INDEX IF NOT EXISTS executions_status ON executions (status, id);
    CREATE INDEX IF NOT EXISTS executions_dead_letter ON executions (id) WHERE dead_letter = 1;
    CREATE TABLE IF NOT EXISTS logs (
        execution_id BLOB NOT NULL,
        seq          INTEGER NOT NULL,
        stream       TEXT NOT NULL,
        time         INTEGER NOT NULL,
        line         TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    ",
    // Chains, retries and dead letters.
    "
    ALTER TABLE executions ADD COLUMN run_at INTEGER;
    ALTER TABLE executions ADD COLUMN attempts TEXT;
    CREATE INDEX IF NOT EXISTS executions_root ON executions (root_id) WHERE root_id IS NOT NULL;
    ",
    // API tokens (hashes only), sealed secrets, server settings.
    "
    CREATE TABLE IF NOT EXISTS api_tokens (
        name         TEXT PRIMARY KEY NOT NULL,
        role         TEXT NOT NULL,
        token_hash   TEXT NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE IF NOT EXISTS secrets (
        name       TEXT PRIMARY KEY NOT NULL,
        version    INTEGER NOT NULL,
        nonce      BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS settings (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    ",
    // Which execution re-drove a failed one (it is re-driven once).
    "
    ALTER TABLE executions ADD COLUMN redriven_by BLOB;
    ",
    // Retention finds finished executions by when they finished.
    "
    CREATE INDEX IF NOT EXISTS executions_finished ON executions (finished_at)
        WHERE finished_at IS NOT NULL;
    ",
    // The work queue: who holds a claimed execution and until when; due work by time.
    "
    ALTER TABLE executions ADD COLUMN owner TEXT;
    ALTER TABLE executions ADD COLUMN lease_until INTEGER;
    CREATE INDEX IF NOT EXISTS executions_due ON executions (run_at)
        WHERE status = 'queued' AND run_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS executions_held ON executions (owner, lease_until)
        WHERE status IN ('starting', 'running');
    ",
    // The nodes sharing the store, each with its latest heartbeat.
    "
    CREATE TABLE IF NOT EXISTS nodes (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        runtime TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        running INTEGER NOT NULL,
        stopped_at INTEGER
    );
    ",
    // A counter every change of a function bumps, in the same transaction (triggers),
    // so nodes caching functions see another node's deploy, scale or delete.
    "
    CREATE TABLE IF NOT EXISTS catalog_changes (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO catalog_changes (id, generation) VALUES (1, 0);
    CREATE TRIGGER IF NOT EXISTS catalog_version_added AFTER INSERT ON function_versions
    BEGIN
        UPDATE catalog_changes SET generation = generation + 1;
    END;
    CREATE TRIGGER IF NOT EXISTS catalog_function_changed AFTER UPDATE ON functions
    BEGIN
        UPDATE catalog_changes SET generation = generation + 1;
    END;
    ",
    // A cancel taken by a node that does not run the execution, for its holder to act on.
    "
    ALTER TABLE executions ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS executions_cancel ON executions (owner)
        WHERE cancel_requested = 1 AND status IN ('starting', 'running');
    ",
    // Claims bounded by a function's cluster-wide max_in_flight count what it holds.
    "
    CREATE INDEX IF NOT EXISTS executions_held_function ON executions (function)
        WHERE status IN ('starting', 'running');
    ",
    // What each node last said it holds of each function (JSON), for the others.
    "
    CREATE TABLE IF NOT EXISTS node_loads (
        node_id      TEXT PRIMARY KEY,
        address      TEXT NOT NULL,
        published_at INTEGER NOT NULL,
        functions    TEXT NOT NULL
    );
    ",
    // The W3C trace context each execution runs under.
    "
    ALTER TABLE executions ADD COLUMN traceparent TEXT;
    ALTER TABLE executions ADD COLUMN tracestate TEXT;
    ",
    // Per schedule of a function, the last tick it fired (milliseconds).
    "
    CREATE TABLE IF NOT EXISTS schedule_cursors (
        function  TEXT NOT NULL,
        key       TEXT NOT NULL,
        last_tick INTEGER NOT NULL,
        PRIMARY KEY (function, key)
    );
    ",
    // When a delayed execution became due (its queue age starts there), and the queued
    // executions of one function, oldest first, for the sweep of expired ones.
    "
    ALTER TABLE executions ADD COLUMN due_at INTEGER;
    CREATE INDEX IF NOT EXISTS executions_queued_function ON executions (function, id)
        WHERE status = 'queued';
    ",
    // Final results on their way to callback and destination URLs.
    "
    CREATE TABLE IF NOT EXISTS deliveries (
        id             TEXT PRIMARY KEY NOT NULL,
        execution_id   TEXT NOT NULL,
        state          TEXT NOT NULL,
        next_at        INTEGER,
        round_attempts INTEGER NOT NULL DEFAULT 0,
        owner          TEXT,
        lease_until    INTEGER,
        body           TEXT,
        record         TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS deliveries_execution ON deliveries (execution_id);
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, id);
    ",
    // The schedule tick an execution fires (milliseconds).
    "
    ALTER TABLE executions ADD COLUMN scheduled_for INTEGER;
    ",
];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the read-write connection, switches the database to WAL and brings its schema
/// up to date.
pub(super) fn open_writer(dir: &Path) -> Result<Connection, StoreError> {
    // SQLite gives the WAL and shared-memory files the database file's mode: create it
    // private first, whatever the umask.
    let path = dir.join(DB_FILE);
    crate::datadir::ensure_private_file(&path).map_err(|source| StoreError::DataDir {
        path: path.display().to_string(),
        source,
    })?;
    let mut conn = Connection::open(&path).map_err(db("open database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set busy_timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(db("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(super::sql::database(
            "enable WAL",
            failure(format!("the database stayed in journal mode {mode}")),
        ));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(db("set pragmas"))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a read-only connection. The writer must have opened the database first (it
/// creates the file and the WAL).
pub(super) fn open_reader(dir: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(dir.join(DB_FILE), flags)
        .map_err(db("open read connection"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set busy_timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Runs the migrations the database has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db("read schema version"))?;
    if !(0..=SCHEMA_VERSION).contains(&current) {
        return Err(StoreError::Corrupt {
            what: "schema version",
            detail: format!(
                "the database has schema version {current}; this build knows up to {SCHEMA_VERSION}"
            ),
        });
    }
    if current == 0 {
        // A new database gives the pages retention frees back to the file system
        // (`compact`); only possible before its first table.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(db("set auto_vacuum"))?;
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(db("begin migration"))?;
        tx.execute_batch(migration).map_err(db("migrate schema"))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(db("set schema version"))?;
        tx.commit().map_err(db("commit migration"))?;
    }
    Ok(())
}

/// A generic SQLite failure carrying `message` (for errors SQLite did not raise itself).
pub(super) fn failure(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_ERROR), Some(message))
}
