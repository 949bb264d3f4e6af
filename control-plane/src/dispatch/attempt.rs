//! One attempt of an execution, cold or warm, as one state machine. Once the instance
//! runs (a cold instance started for it, or a warm instance leased), the attempt ends at
//! the first of: the instance's answer, a cancel, its hard deadline, or shutdown. Each
//! kind of run supplies only what differs ([`Running`]): how it waits for an answer,
//! what the answer means, and how its instance is stopped. The margins around a
//! deadline are defined here, once.

use std::future::Future;
use std::time::Duration;

use gantry_protocol::env;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outcome;
use super::Recorded;
use crate::domain::Finished;

/// Time the control plane grants beyond a call's timeout and the watchdog's own kill
/// grace before it stops the instance itself.
pub(super) const DEADLINE_MARGIN: Duration = Duration::from_millis(1_000);
/// Grace between SIGTERM and SIGKILL when the control plane stops an instance.
pub(super) const STOP_GRACE: Duration = Duration::from_millis(1_000);
/// How long an instance may take to exit after it answered.
pub(super) const EXIT_AFTER_REPORT: Duration = Duration::from_millis(3_000);

/// When the control plane stops waiting for an attempt whose own deadline is `deadline`:
/// the watchdog enforces the deadline and reports, so the control plane waits for its
/// kill grace and a margin before it acts itself.
pub(super) fn hard_limit(deadline: Instant) -> Instant {
    deadline + Duration::from_millis(env::defaults::KILL_GRACE_MS) + DEADLINE_MARGIN
}

/// What a running attempt needs from its kind of run.
pub(super) trait Running: Send {
    /// What the instance answers (a report, the instance's end, an HTTP answer).
    type Answer: Send;

    /// Waits for the instance's answer.
    fn answer(&mut self) -> impl Future<Output = Self::Answer> + Send;

    /// What `answer` means, `elapsed` after the attempt began.
    fn outcome(
        &mut self,
        answer: Self::Answer,
        elapsed: Duration,
    ) -> impl Future<Output = Ended> + Send;

    /// Stops the instance: the attempt was cancelled, ran out of time, or the server
    /// stops. A report that arrives meanwhile is answered at once, not applied.
    fn stop(&mut self) -> impl Future<Output = ()> + Send;
}

/// How an attempt ended.
pub(super) enum Ended {
    /// With this result; `ack` answers the watchdog's callback once it is durable.
    Finished(Finished, Option<oneshot::Sender<Recorded>>),
    /// The call never ran (the instance refused it): another instance may take it.
    Refused(Finished),
    /// The server stops: no result is recorded, the next start settles the execution.
    Abandoned,
}

/// Why and when an attempt is stopped from outside.
pub(super) struct Bounds<'a> {
    /// A user's cancel.
    pub(super) cancel: &'a CancellationToken,
    /// The server's shutdown.
    pub(super) shutdown: &'a CancellationToken,
    /// See [`hard_limit`].
    pub(super) limit: Instant,
    /// The execution's timeout, for the message of a deadline it ran past.
    pub(super) timeout_ms: u64,
    /// What runs it ("instance", "warm instance"), for messages.
    pub(super) instance: &'static str,
    /// When the attempt began (elapsed times are measured from it).
    pub(super) started: std::time::Instant,
}

/// Runs the attempt to its end.
pub(super) async fn drive<R: Running>(run: &mut R, bounds: Bounds<'_>) -> Ended {
    enum Step<A> {
        Answer(A),
        Cancelled,
        Deadline,
        Shutdown,
    }
    let step = tokio::select! {
        biased;
        answer = run.answer() => Step::Answer(answer),
        () = bounds.cancel.cancelled() => Step::Cancelled,
        () = bounds.shutdown.cancelled() => Step::Shutdown,
        () = tokio::time::sleep_until(bounds.limit) => Step::Deadline,
    };
    let elapsed = bounds.started.elapsed();
    match step {
        Step::Answer(answer) => run.outcome(answer, elapsed).await,
        Step::Cancelled => {
            run.stop().await;
            Ended::Finished(outcome::cancelled_running(bounds.instance, elapsed), None)
        }
        Step::Deadline => {
            run.stop().await;
            let finished = outcome::timed_out(bounds.timeout_ms, bounds.instance, elapsed);
            Ended::Finished(finished, None)
        }
        Step::Shutdown => {
            run.stop().await;
            Ended::Abandoned
        }
    }
}
