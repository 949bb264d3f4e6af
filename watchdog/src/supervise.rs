//! Runs work that drives a process group under a timeout, forwarding SIGTERM and SIGINT
//! received by the watchdog to the group (its PID 1 duty) and sending SIGKILL when the
//! group outlives the grace period after such a signal.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep_until, Instant};

use crate::diag;
use crate::process::signal_group;

/// Set once the watchdog received SIGTERM or SIGINT.
static STOP_ASKED: AtomicBool = AtomicBool::new(false);

/// Whether the watchdog was asked to stop. Its report then gets one delivery attempt,
/// not a series of retries: whoever stops it (a server shutting down, or the next
/// server clearing up after a crash) must not wait for a control plane that may be gone.
pub fn stop_asked() -> bool {
    STOP_ASKED.load(Ordering::Relaxed)
}

/// SIGTERM and SIGINT listeners; installing them replaces the default (terminating)
/// action, so the watchdog outlives the signal long enough to report.
pub struct ForwardedSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ForwardedSignals {
    /// Starts listening for SIGTERM and SIGINT.
    pub fn install() -> std::io::Result<ForwardedSignals> {
        Ok(ForwardedSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> Signal {
        let signal = tokio::select! {
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
        };
        STOP_ASKED.store(true, Ordering::Relaxed);
        signal
    }
}

/// How supervised work ended.
#[derive(Debug)]
pub enum Supervised<T> {
    /// The work finished with this value.
    Finished(T),
    /// The timeout passed first; the work was dropped and the group is still to be stopped.
    TimedOut,
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn next_signal(signals: Option<&mut ForwardedSignals>) -> Signal {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// Drives `work` for the process group `pgid` until it finishes or `timeout` passes.
pub async fn supervise<T>(
    pgid: i32,
    work: impl Future<Output = T>,
    timeout: Option<Duration>,
    grace: Duration,
    mut signals: Option<&mut ForwardedSignals>,
) -> Supervised<T> {
    tokio::pin!(work);
    let deadline = timeout.map(|limit| Instant::now() + limit);
    let mut kill_at = None;
    loop {
        tokio::select! {
            biased;
            value = &mut work => return Supervised::Finished(value),
            () = until(deadline) => return Supervised::TimedOut,
            received = next_signal(signals.as_deref_mut()) => {
                diag!("received {}; forwarding it to the function's process group", received.as_str());
                signal_group(pgid, received);
                kill_at.get_or_insert(Instant::now() + grace);
            }
            () = until(kill_at) => {
                diag!("function still running {} ms after the signal; sending SIGKILL", crate::outcome::millis(grace));
                signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
            }
        }
    }
}
