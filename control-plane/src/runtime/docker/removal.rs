//! Removal of the runtime's containers once they are done: force-removed in the
//! background, tracked so that the server's drain waits for it, and retried while the
//! engine is unreachable. A removal that falls in an engine outage therefore happens
//! when the engine is back; if the server stops first, its next start's orphan sweep
//! removes the container (it carries the server's owner label).

use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{is_connection_error, is_not_found};

/// The first wait before trying an unreachable engine again; it doubles up to
/// [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between two attempts: how late a removal can trail the engine's
/// return. A failed attempt is a refused connection, cheap at this rate.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// The background removals of one runtime (and the other work its drain waits for).
#[derive(Clone)]
pub(super) struct Removals {
    docker: Docker,
    tracker: TaskTracker,
    stopping: CancellationToken,
}

impl Removals {
    /// Removals on the engine `docker` talks to.
    pub(super) fn new(docker: Docker) -> Removals {
        Removals {
            docker,
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }
    }

    /// The tracker the drain waits on, for other background work of the runtime.
    pub(super) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Removes `containers` (ids or names) one after the other (a container, then the
    /// network sandbox it joined) in the background, each retried while the engine is
    /// unreachable. Must be called within the tokio runtime.
    pub(super) fn remove_later(&self, containers: Vec<String>) {
        let (docker, stopping) = (self.docker.clone(), self.stopping.clone());
        self.tracker.spawn(async move {
            for container in containers {
                remove_until_gone(&docker, &container, &stopping).await;
            }
        });
    }

    /// Stops taking work and waits up to `limit` for what runs. Removals waiting for
    /// an unreachable engine try once more and give up (the next start removes their
    /// containers). False when work was still running at `limit`.
    pub(super) async fn finish(&self, limit: Duration) -> bool {
        self.tracker.close();
        self.stopping.cancel();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Force-removes the container `id` (and its anonymous volumes) once; a container that
/// is already gone is not an error.
pub(super) async fn remove_once(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Err(err) if !is_not_found(&err) => Err(err),
        _ => Ok(()),
    }
}

/// [`remove_once`], retried while the engine is unreachable (until `stopping`); a
/// failure is logged.
async fn remove_until_gone(docker: &Docker, id: &str, stopping: &CancellationToken) {
    if let Err(err) = retry_while_unreachable(|| remove_once(docker, id), stopping).await {
        tracing::warn!(container = id, "cannot remove the container: {err}");
    }
}

/// Runs `attempt` until it succeeds or fails for a reason other than an unreachable
/// engine, waiting between attempts (100 ms, doubling up to 2 s). Once `stopping` is
/// cancelled it makes one last attempt and returns its outcome.
async fn retry_while_unreachable<F, Fut>(
    mut attempt: F,
    stopping: &CancellationToken,
) -> Result<(), DockerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), DockerError>>,
{
    let mut wait = FIRST_WAIT;
    loop {
        match attempt().await {
            Err(err) if is_connection_error(&err) && !stopping.is_cancelled() => {}
            outcome => return outcome,
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopping.cancelled() => return attempt().await,
        }
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;

    fn refused() -> DockerError {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
    }

    fn conflict() -> DockerError {
        DockerError::DockerResponseServerError {
            status_code: 409,
            message: "removal of container is already in progress".into(),
        }
    }

    /// An attempt that fails with `failure` for its first `failures` calls, counting
    /// its calls.
    fn failing(
        failures: usize,
        failure: fn() -> DockerError,
    ) -> (
        Arc<AtomicUsize>,
        impl FnMut() -> std::future::Ready<Result<(), DockerError>>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let attempt = move || {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if call < failures {
                Err(failure())
            } else {
                Ok(())
            })
        };
        (calls, attempt)
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_engine_is_tried_again_with_growing_waits() {
        let (calls, attempt) = failing(7, refused);
        let started = Instant::now();
        let outcome = retry_while_unreachable(attempt, &CancellationToken::new()).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 8);
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6, then the 2 s ceiling twice.
        assert_eq!(started.elapsed(), Duration::from_millis(7_100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_tried_again() {
        let (calls, attempt) = failing(1, conflict);
        let outcome = retry_while_unreachable(attempt, &CancellationToken::new()).await;
        assert!(
            matches!(
                outcome,
                Err(DockerError::DockerResponseServerError {
                    status_code: 409,
                    ..
                })
            ),
            "{outcome:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_makes_one_last_attempt() {
        let (calls, attempt) = failing(usize::MAX, refused);
        let stopping = CancellationToken::new();
        let stop = stopping.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            stop.cancel();
        });
        let started = Instant::now();
        let outcome = retry_while_unreachable(attempt, &stopping).await;
        assert!(outcome.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        // 0.1 .. 1.6 s (5 waits, 3.1 s), then 2 s waits up to 60 s (28 more), plus the
        // first and the last attempt.
        assert_eq!(calls.load(Ordering::SeqCst), 5 + 28 + 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_gone_when_stopping_is_tried_once() {
        let (calls, attempt) = failing(usize::MAX, refused);
        let stopping = CancellationToken::new();
        stopping.cancel();
        assert!(retry_while_unreachable(attempt, &stopping).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
