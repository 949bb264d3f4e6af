//! The SQLite store's pool of read-only connections, used from tokio's blocking threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::schema;
use crate::store::StoreError;

/// The pool of read-only connections.
pub(super) struct Readers {
    pub(super) dir: PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
    /// One permit per connection.
    pub(super) permits: Semaphore,
}

impl Readers {
    /// Runs `work` on an idle connection in a blocking thread.
    pub(super) async fn read<T, F>(pool: &Arc<Readers>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = pool
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool_ref = Arc::clone(pool);
        let joined = tokio::task::spawn_blocking(move || {
            let conn = match pool_ref.take() {
                Some(conn) => conn,
                // A connection is lost only if a read panicked: open another.
                None => schema::open_reader(&pool_ref.dir)?,
            };
            let result = work(&conn);
            pool_ref.give(conn);
            result
        })
        .await;
        drop(permit);
        match joined {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    fn take(&self) -> Option<Connection> {
        match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
    }

    fn give(&self, conn: Connection) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }
}
