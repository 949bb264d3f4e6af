//! When a WARM watchdog stops: on SIGTERM/SIGINT, after WARM_IDLE_TIMEOUT_MS without an
//! invocation, or once WARM_MAX_INVOCATIONS have completed. Tracks the invocations in
//! flight, which the drain waits for.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

/// Why an invocation was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The watchdog is shutting down.
    Draining,
    /// WARM_MAX_INVOCATIONS have already been admitted.
    Exhausted,
}

/// Shared stop state of a WARM watchdog.
#[derive(Debug)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    reason: Mutex<Option<String>>,
    in_flight: AtomicUsize,
    admitted: AtomicU64,
    completed: AtomicU64,
    last_activity: Mutex<Instant>,
    activity: Notify,
    idle_timeout: Option<Duration>,
    max_invocations: Option<u64>,
}

impl Lifecycle {
    /// A lifecycle with the given limits (`None` = no limit).
    pub fn new(idle_timeout: Option<Duration>, max_invocations: Option<u64>) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            shutdown: CancellationToken::new(),
            reason: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            last_activity: Mutex::new(Instant::now()),
            activity: Notify::new(),
            idle_timeout,
            max_invocations,
        })
    }

    /// Admits one invocation; the returned guard marks it finished when dropped.
    pub fn begin(self: &Arc<Self>) -> Result<InFlight, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let admitted = self.admitted.fetch_add(1, Ordering::SeqCst);
        if self.max_invocations.is_some_and(|max| admitted >= max) {
            return Err(Refusal::Exhausted);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Ok(InFlight(Arc::clone(self)))
    }

    /// Starts the shutdown; the first reason given is kept.
    pub fn stop(&self, reason: impl Into<String>) {
        let mut kept = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        kept.get_or_insert_with(|| reason.into());
        self.shutdown.cancel();
    }

    /// Why the watchdog is stopping, if it is.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// A token cancelled when shutdown starts.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Invocations running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Invocations completed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Restarts the idle clock (after an invocation, or when the runtime becomes ready:
    /// start-up time is not idle time).
    pub fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_since(&self) -> Instant {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once the watchdog has been idle for the idle timeout (after starting the
    /// shutdown), or when shutdown starts for another reason. Never, without a timeout.
    pub async fn watch_idle(&self) {
        let Some(idle) = self.idle_timeout else {
            return self.shutdown.cancelled().await;
        };
        loop {
            if self.in_flight() > 0 {
                tokio::select! {
                    () = self.activity.notified() => continue,
                    () = self.shutdown.cancelled() => return,
                }
            }
            let due = self.idle_since() + idle;
            tokio::select! {
                () = sleep_until(due) => {}
                () = self.shutdown.cancelled() => return,
            }
            if self.in_flight() == 0 && Instant::now() >= self.idle_since() + idle {
                self.stop(format!(
                    "idle for WARM_IDLE_TIMEOUT_MS ({} ms)",
                    crate::outcome::millis(idle)
                ));
                return;
            }
        }
    }
}

/// An admitted invocation; dropping it records the completion.
#[derive(Debug)]
pub struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let lifecycle = &self.0;
        lifecycle.touch();
        lifecycle.in_flight.fetch_sub(1, Ordering::SeqCst);
        let completed = lifecycle.completed.fetch_add(1, Ordering::SeqCst) + 1;
        lifecycle.activity.notify_one();
        if let Some(max) = lifecycle.max_invocations {
            if completed >= max {
                lifecycle.stop(format!("completed WARM_MAX_INVOCATIONS ({max})"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_only_after_quiet_period() {
        let lifecycle = Lifecycle::new(Some(Duration::from_millis(500)), None);
        let started = Instant::now();
        let watcher = tokio::spawn({
            let lifecycle = Arc::clone(&lifecycle);
            async move { lifecycle.watch_idle().await }
        });
        // Busy for 2 s: the timer must not fire while an invocation runs.
        let guard = lifecycle.begin().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!lifecycle.is_draining());
        drop(guard);
        watcher.await.unwrap();
        assert!(lifecycle.is_draining());
        assert_eq!(started.elapsed(), Duration::from_millis(2500));
        assert!(lifecycle.reason().unwrap().contains("WARM_IDLE_TIMEOUT_MS"));
        assert_eq!(lifecycle.begin().unwrap_err(), Refusal::Draining);
    }

    #[tokio::test(start_paused = true)]
    async fn max_invocations_admits_exactly_that_many_then_stops() {
        let lifecycle = Lifecycle::new(None, Some(2));
        let first = lifecycle.begin().unwrap();
        let second = lifecycle.begin().unwrap();
        assert_eq!(lifecycle.begin().unwrap_err(), Refusal::Exhausted);
        drop(first);
        assert!(!lifecycle.is_draining());
        drop(second);
        assert!(lifecycle.is_draining());
        assert_eq!(lifecycle.completed(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_idle_timeout_the_watch_waits_for_shutdown() {
        let lifecycle = Lifecycle::new(None, None);
        let waited = tokio::time::timeout(Duration::from_secs(3600), lifecycle.watch_idle()).await;
        assert!(waited.is_err());
        lifecycle.stop("SIGTERM");
        lifecycle.stop("later reason");
        lifecycle.watch_idle().await;
        assert_eq!(lifecycle.reason().as_deref(), Some("SIGTERM"));
    }
}
