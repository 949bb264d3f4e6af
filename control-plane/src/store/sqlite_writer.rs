//! The store's single writer thread and its group commit.
//!
//! Every write is a [`Job`] sent over a channel. The thread takes the first waiting job,
//! drains every other one already queued (up to [`MAX_BATCH`]), runs them all in one
//! transaction, each inside its own savepoint so that a failing job (a duplicate
//! idempotency key, say) only undoes itself, commits once, and only then answers each
//! caller. One commit thus pays for a whole batch, which is what lets the store take
//! tens of thousands of durable writes per second.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use rusqlite::{ffi, Connection};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most jobs committed in one transaction (bounds the latency of the first of them).
const MAX_BATCH: usize = 4096;

/// A write, run by the writer thread inside a batch transaction.
pub(super) trait Job: Send {
    /// Runs the write on `conn`; `true` if it succeeded (its savepoint is released),
    /// `false` if it failed (its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Replaces the outcome with a failure: the write was not committed.
    fn fail(&mut self, source: rusqlite::Error);
    /// Answers the caller.
    fn reply(self: Box<Self>);
}

/// A [`Job`] made of a closure and the channel of its caller.
struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn fail(&mut self, source: rusqlite::Error) {
        self.result = Some(Err(super::sql::database("commit writes", source)));
    }

    fn reply(self: Box<Self>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(super::sql::database("commit writes", aborted())));
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(result);
    }
}

/// What the writer thread is asked.
enum Message {
    /// Run a write.
    Job(Box<dyn Job>),
    /// Finish the writes queued before this and stop; answer on the channel.
    Shutdown(Option<oneshot::Sender<()>>),
}

/// The handle of the writer thread.
pub(super) struct Writer {
    sender: Sender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Connection) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gantry-store-writer".into())
            .spawn(move || run(conn, receiver))
            .map_err(|err| {
                super::sql::database(
                    "start the writer thread",
                    super::schema::failure(err.to_string()),
                )
            })?;
        Ok(Writer {
            sender,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `work` in the next batch and answers its result once the batch is
    /// committed. [`StoreError::Closed`] once the writer has stopped.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Pending {
            work: Some(work),
            result: None,
            reply,
        };
        self.sender
            .send(Message::Job(Box::new(job)))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the thread to stop after the writes queued so far; answers when they are
    /// committed (at once if it had already stopped).
    pub(super) async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.sender.send(Message::Shutdown(Some(done))).is_ok() {
            let _ = stopped.await;
        }
    }

    /// Stops the thread after the writes queued so far and waits for it to exit.
    pub(super) fn join(&self) {
        let _ = self.sender.send(Message::Shutdown(None));
        let handle = match self.thread.lock() {
            Ok(mut thread) => thread.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

/// The writer thread: batches until told to stop or every sender is gone.
fn run(conn: Connection, receiver: Receiver<Message>) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        let mut stop: Option<Option<oneshot::Sender<()>>> = None;
        while let Some(message) = next.take() {
            match message {
                Message::Job(job) => jobs.push(job),
                Message::Shutdown(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if jobs.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !jobs.is_empty() {
            run_batch(&conn, std::mem::take(&mut jobs));
        }
        if let Some(done) = stop {
            if let Some(done) = done {
                let _ = done.send(());
            }
            break;
        }
    }
    // Later messages are dropped with the receiver: their callers get `Closed`.
    drop(receiver);
    if let Err((_, err)) = conn.close() {
        tracing::warn!(error = %err, "closing the store's write connection failed");
    }
}

/// Runs `jobs` in one transaction, each in a savepoint, commits, and answers them.
fn run_batch(conn: &Connection, jobs: Vec<Box<dyn Job>>) {
    // Jobs in the open transaction, and jobs already settled (answered after the commit).
    let mut in_tx: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
    let mut settled: Vec<Box<dyn Job>> = Vec::new();
    for mut job in jobs {
        if conn.is_autocommit() {
            if let Err(err) = exec(conn, "BEGIN IMMEDIATE") {
                job.fail(err);
                settled.push(job);
                continue;
            }
        }
        if let Err(err) = exec(conn, "SAVEPOINT job") {
            job.fail(err);
            settled.push(job);
            continue;
        }
        if job.run(conn) {
            if let Err(err) = exec(conn, "RELEASE job") {
                job.fail(err);
            }
        } else {
            let _ = exec(conn, "ROLLBACK TO job");
            let _ = exec(conn, "RELEASE job");
        }
        in_tx.push(job);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an I/O error):
            // nothing in it was written. Later jobs start a new one.
            for mut job in in_tx.drain(..) {
                job.fail(aborted());
                settled.push(job);
            }
        }
    }
    if !conn.is_autocommit() {
        if let Err(err) = exec(conn, "COMMIT") {
            tracing::error!(error = %err, jobs = in_tx.len(), "committing store writes failed");
            for job in &mut in_tx {
                job.fail(copy_error(&err));
            }
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
        }
    }
    for job in settled.into_iter().chain(in_tx) {
        job.reply();
    }
}

/// Runs one statement without parameters (kept prepared).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The error answered for writes whose transaction SQLite rolled back.
fn aborted() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_ABORT),
        Some("the write batch was rolled back".into()),
    )
}

/// A copy of `err` for each job of a failed commit (rusqlite errors are not `Clone`).
fn copy_error(err: &rusqlite::Error) -> rusqlite::Error {
    match err {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
