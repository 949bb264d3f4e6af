//! The life of a [`PostgresStore`]: opening it (the schema brought up to date, the
//! listener and the insert writer started), closing it, what it shows of itself, and
//! the connection from the pool that each call takes.

use deadpool_postgres::Object;

use super::codec::{self, pool};
use super::insert_batch::InsertWriter;
use super::{connect, listener, schema, PostgresStore};
use crate::store::StoreError;

impl PostgresStore {
    /// Connects to the server `url` names (`postgres://user:password@host:port/database`,
    /// `?sslmode=disable|prefer|require`, plain without one; `&sslrootcert=FILE` to trust
    /// that CA), checks it answers and brings the schema up to date: several nodes may
    /// do this at once.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let parsed = connect::parse(url)?;
        let target = connect::describe(&parsed.config);
        let pool = connect::pool(parsed.clone())?;
        let mut client = pool.get().await.map_err(codec::pool("connect"))?;
        let migrated = schema::migrate(&mut client).await;
        // The migration's session ends here, whatever happened, so no advisory lock
        // outlives it.
        drop(Object::take(client));
        migrated?;
        let (finished, listener) = listener::spawn(parsed);
        let inserts = InsertWriter::start(pool.clone());
        Ok(PostgresStore {
            pool,
            target,
            finished,
            listener,
            inserts,
        })
    }

    /// Where the store is (hosts, ports, database), without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Closes the pool: later calls answer [`StoreError::Closed`].
    pub fn close(&self) {
        self.pool.close();
        self.inserts.close();
    }

    /// A connection from the pool, for one call.
    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool("get a connection"))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish()
    }
}
