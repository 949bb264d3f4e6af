//! The PostgreSQL store's schema and its versioned migrations, applied at start under
//! an advisory lock so that nodes starting together apply each one once; a database
//! whose schema is newer than this build is refused.
//!
//! Timestamps are `bigint` milliseconds since the epoch (what the SQLite store keeps,
//! read back exactly), unsigned counts `bigint`, JSON payloads `text` (kept as written:
//! `jsonb` would refuse a `\u0000` in a string) and log lines `bytea` (a line may hold a
//! NUL, which `text` cannot).

use deadpool_postgres::Object;

use super::codec::{db, failure};
use crate::store::{Fault, StoreError};

/// The advisory lock key the migrations are applied under ("gantry" in ASCII).
const MIGRATION_LOCK: i64 = 0x67_61_6e_74_72_79;

/// Schema migrations: `MIGRATIONS[i]` takes a database from version `i` to `i + 1`.
/// Append new ones; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: the schema of the SQLite store at its version 6, in PostgreSQL's types.
    "
    CREATE TABLE functions (
        name            text PRIMARY KEY,
        current_version bigint NOT NULL,
        deleted         boolean NOT NULL DEFAULT false
    );
    CREATE TABLE function_versions (
        name         text NOT NULL,
        version      bigint NOT NULL,
        content_hash text NOT NULL,
        spec         text NOT NULL,
        created_at   bigint NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE executions (
        id                  uuid PRIMARY KEY,
        function            text NOT NULL,
        version             bigint NOT NULL,
        status              text NOT NULL,
        input               text NOT NULL,
        output              text,
        error               text,
        attempt             bigint NOT NULL,
        parent_id           uuid,
        root_id             uuid,
        depth               bigint NOT NULL,
        triggered_by        text NOT NULL,
        trace_id            text,
        idempotency_key     text,
        timeout_ms          bigint NOT NULL,
        created_at          bigint NOT NULL,
        started_at          bigint,
        finished_at         bigint,
        duration_ms         bigint,
        cold_start          boolean,
        instance_id         text,
        exit_code           integer,
        dead_letter         boolean NOT NULL DEFAULT false,
        callback_token_hash text,
        run_at              bigint,
        attempts            text,
        redriven_by         uuid,
        owner               text,
        lease_until         bigint
    );
    CREATE UNIQUE INDEX executions_idempotency
        ON executions (function, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX executions_function ON executions (function, id);
    CREATE INDEX executions_status ON executions (status, id);
    CREATE INDEX executions_dead_letter ON executions (id) WHERE dead_letter;
    CREATE INDEX executions_root ON executions (root_id) WHERE root_id IS NOT NULL;
    CREATE INDEX executions_finished ON executions (finished_at)
        WHERE finished_at IS NOT NULL;
    CREATE INDEX executions_due ON executions (run_at)
        WHERE status = 'queued' AND run_at IS NOT NULL;
    CREATE INDEX executions_held ON executions (owner, lease_until)
        WHERE status IN ('starting', 'running');
    CREATE TABLE logs (
        execution_id uuid NOT NULL,
        seq          bigint NOT NULL,
        stream       text NOT NULL,
        time         bigint NOT NULL,
        line         bytea NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE TABLE api_tokens (
        name         text PRIMARY KEY,
        role         text NOT NULL,
        token_hash   text NOT NULL UNIQUE,
        created_at   bigint NOT NULL,
        last_used_at bigint
    );
    CREATE TABLE secrets (
        name       text PRIMARY KEY,
        version    bigint NOT NULL,
        nonce      bytea NOT NULL,
        ciphertext bytea NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
    );
    CREATE TABLE settings (
        key   text PRIMARY KEY,
        value text NOT NULL
    );
    ",
    // 2: the nodes sharing the database, and a counter every change of a function bumps
    // in its own transaction (a trigger), so nodes caching functions see other nodes'
    // deploys, scales and deletes.
    "
    CREATE TABLE nodes (
        id           text PRIMARY KEY,
        address      text NOT NULL,
        runtime      text NOT NULL,
        version      text NOT NULL,
        started_at   bigint NOT NULL,
        heartbeat_at bigint NOT NULL,
        running      bigint NOT NULL,
        stopped_at   bigint
    );
    CREATE TABLE catalog_changes (
        id         integer PRIMARY KEY CHECK (id = 1),
        generation bigint NOT NULL
    );
    INSERT INTO catalog_changes (id, generation) VALUES (1, 0);
    CREATE FUNCTION bump_catalog_generation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE catalog_changes SET generation = generation + 1;
        RETURN NULL;
    END;
    $$;
    CREATE TRIGGER catalog_version_added AFTER INSERT ON function_versions
        FOR EACH ROW EXECUTE FUNCTION bump_catalog_generation();
    CREATE TRIGGER catalog_function_changed AFTER UPDATE ON functions
        FOR EACH ROW EXECUTE FUNCTION bump_catalog_generation();
    ",
    // 3: a cancel taken by a node that does not run the execution, for its holder.
    "
    ALTER TABLE executions ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
    CREATE INDEX executions_cancel ON executions (owner)
        WHERE cancel_requested AND status IN ('starting', 'running');
    ",
    // 4: every node hears when an execution ends (at the commit that ends it), so a
    // caller waiting on another node is answered at once.
    "
    CREATE FUNCTION notify_finished() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('gantry_finished', NEW.id::text);
        RETURN NULL;
    END;
    $$;
    CREATE TRIGGER execution_ended AFTER UPDATE OF status ON executions
        FOR EACH ROW
        WHEN (NEW.status IN ('success', 'error', 'timeout', 'cancelled')
            AND OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION notify_finished();
    CREATE TRIGGER execution_stored_ended AFTER INSERT ON executions
        FOR EACH ROW
        WHEN (NEW.status IN ('success', 'error', 'timeout', 'cancelled'))
        EXECUTE FUNCTION notify_finished();
    ",
    // 5: claims bounded by a function's cluster-wide max_in_flight count what it holds.
    "
    CREATE INDEX executions_held_function ON executions (function)
        WHERE status IN ('starting', 'running');
    ",
    // 6: what each node last said it holds of each function (JSON), for the others.
    "
    CREATE TABLE node_loads (
        node_id      text PRIMARY KEY,
        address      text NOT NULL,
        published_at bigint NOT NULL,
        functions    text NOT NULL
    );
    ",
    // 7: the W3C trace context each execution runs under.
    "
    ALTER TABLE executions ADD COLUMN traceparent text;
    ALTER TABLE executions ADD COLUMN tracestate text;
    ",
    // 8: per schedule of a function, the last tick it fired (milliseconds).
    "
    CREATE TABLE schedule_cursors (
        function  text NOT NULL,
        key       text NOT NULL,
        last_tick bigint NOT NULL,
        PRIMARY KEY (function, key)
    );
    ",
    // 9: when a delayed execution became due (its queue age starts there), and the
    // queued executions of one function, oldest first, for the sweep of expired ones.
    "
    ALTER TABLE executions ADD COLUMN due_at bigint;
    CREATE INDEX executions_queued_function ON executions (function, id)
        WHERE status = 'queued';
    ",
    // 10: final results on their way to callback and destination URLs.
    "
    CREATE TABLE IF NOT EXISTS deliveries (
        id             text PRIMARY KEY,
        execution_id   text NOT NULL,
        state          text NOT NULL,
        next_at        bigint,
        round_attempts bigint NOT NULL DEFAULT 0,
        owner          text,
        lease_until    bigint,
        body           text,
        record         text NOT NULL
    );
    CREATE INDEX IF NOT EXISTS deliveries_execution ON deliveries (execution_id);
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, id);
    ",
    // 11: the schedule tick an execution fires (milliseconds).
    "
    ALTER TABLE executions ADD COLUMN scheduled_for bigint;
    ",
];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date on `client`, a connection of its own: the caller
/// closes it afterwards, which also releases the lock if a failure left it held.
pub(super) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("lock the schema for migration"))?;
    let applied = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("unlock the schema"));
    applied.and(unlocked.map(|_| ()))
}

/// Applies the migrations the database has not seen, each in a transaction with its
/// row in `schema_migrations`.
async fn apply(client: &mut Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    bigint PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db("create the migrations table"))?;
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db("read the schema version"))?;
    check_version(current)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = client
            .transaction()
            .await
            .map_err(db("begin a migration"))?;
        tx.batch_execute(migration)
            .await
            .map_err(db("migrate the schema"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db("record the schema version"))?;
        tx.commit().await.map_err(db("commit a migration"))?;
        tracing::info!(version, "migrated the PostgreSQL schema");
    }
    Ok(())
}

/// Refuses a schema this build does not know: one written by a newer Gantry.
fn check_version(current: i64) -> Result<(), StoreError> {
    if current > SCHEMA_VERSION {
        return Err(failure(
            "check the schema version",
            Fault::Other,
            format!(
                "the database's schema is at version {current}, newer than this build of \
                 gantry knows (up to {SCHEMA_VERSION}): run a newer gantry against it"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_schema_is_refused() {
        assert!(check_version(0).is_ok());
        assert!(check_version(SCHEMA_VERSION).is_ok());
        let err = check_version(SCHEMA_VERSION + 1).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
