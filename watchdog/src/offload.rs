//! Blocking work (file I/O, DNS resolution) kept off the event loop without tokio's
//! blocking pool, whose `spawn_blocking` panics when the OS refuses a new thread (a
//! function that exhausts its container's pids limit makes every `clone` fail with
//! EAGAIN). Here a refused thread only means the work runs inline, on the caller's
//! thread: briefly blocking the event loop beats aborting the watchdog.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Stack of a helper thread: enough for std's file I/O and musl's `getaddrinfo`.
const STACK_SIZE: usize = 256 * 1024;

/// Runs `work` on a helper thread and waits for its value; runs it inline when no
/// thread can be started. `None` when the helper died without an answer.
pub async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    // Shared so that `work` is still ours when the thread cannot be started.
    let slot = Arc::new(Mutex::new(Some(work)));
    let theirs = Arc::clone(&slot);
    let (answer, value) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let work = theirs.lock().ok().and_then(|mut slot| slot.take());
            if let Some(work) = work {
                let _ = answer.send(work());
            }
        });
    match spawned {
        Ok(_) => value.await.ok(),
        Err(_) => {
            let work = slot.lock().ok().and_then(|mut slot| slot.take());
            work.map(|work| work())
        }
    }
}
