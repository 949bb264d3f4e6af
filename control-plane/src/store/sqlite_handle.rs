//! The life of a [`SqliteStore`]: opening and closing it, what it shows of itself, and
//! how its calls reach the database (a write as a job of the writer thread, a read on
//! one of the read-only connections).

use std::borrow::Borrow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::readers::Readers;
use super::writer::Writer;
use super::{schema, SqliteStore};
use crate::store::StoreError;

/// Read-only connections kept open for reads.
const READERS: usize = 4;

impl SqliteStore {
    /// Opens (creating it and `data_dir` if needed) `gantry.db` in `data_dir`, brings its
    /// schema up to date and starts the writer thread. Blocks while doing so.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let write_conn = schema::open_writer(data_dir)?;
        let idle = (0..READERS)
            .map(|_| schema::open_reader(data_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let writer = Writer::start(write_conn)?;
        Ok(SqliteStore {
            writer: Arc::new(writer),
            readers: Arc::new(Readers {
                dir: data_dir.to_path_buf(),
                idle: Mutex::new(idle),
                permits: Semaphore::new(READERS),
            }),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Finishes the writes queued so far, then stops the writer thread. Every later
    /// call answers [`StoreError::Closed`].
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.readers.permits.close();
        self.writer.shutdown().await;
        let writer = Arc::clone(&self.writer);
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }

    /// Runs `work` on the writer thread, in its next group commit; answers once that
    /// is committed.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.check_open()?;
        self.writer.write(work).await
    }

    /// Runs `work` on a read-only connection in one of tokio's blocking threads.
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.check_open()?;
        Readers::read(&self.readers, work).await
    }

    /// [`StoreError::Closed`] once the store is closed.
    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }
}

/// `work` on a copy of `arg`, as a job for [`SqliteStore::write`] or
/// [`SqliteStore::read`]: they run it on another thread, which cannot borrow from the
/// caller.
pub(super) fn with_copy<A, T>(
    arg: &A,
    work: fn(&Connection, &A) -> Result<T, StoreError>,
) -> impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static
where
    A: ToOwned + ?Sized + 'static,
    A::Owned: Send,
    T: 'static,
{
    let arg = arg.to_owned();
    move |conn| work(conn, arg.borrow())
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.readers.dir)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Blocks until the queued writes are committed.
        self.writer.join();
    }
}
