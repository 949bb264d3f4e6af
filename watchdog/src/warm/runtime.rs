//! The long-lived HTTP runtime of a WARM watchdog: started at boot, polled until
//! healthy, restarted (with backoff when it keeps failing) whenever it dies or an
//! invocation times out, and stopped at shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_protocol::{ErrorCode, FunctionError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::{CommandLine, HttpRuntimeConfig};
use crate::diag;
use crate::http_client::HttpClient;
use crate::logs::{Attribution, InFlight};
use crate::modes::{http, Invocation, RunContext};
use crate::outcome::{self, Outcome};

/// Where the runtime is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeState {
    /// Spawned (or about to be), not yet healthy.
    Starting,
    /// Healthy; invocations are proxied to it. Each start has a new generation.
    Ready(u64),
    /// The last start failed; another attempt follows after a backoff.
    Failed(FunctionError),
    /// Stopped for good (shutdown).
    Stopped,
}

/// Handle to the supervised runtime.
#[derive(Debug)]
pub struct RuntimeSupervisor {
    state: watch::Receiver<RuntimeState>,
    restart: mpsc::UnboundedSender<u64>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    http: HttpRuntimeConfig,
    client: HttpClient,
    /// The calls being served, whose lines the runtime's output is marked with.
    in_flight: Arc<InFlight>,
}

/// How long a call that lost its runtime waits for the supervisor to notice.
const CRASH_NOTICE: Duration = Duration::from_millis(500);

/// A runtime that was healthy for less than this before dying counts as failing.
const STABLE_AFTER: Duration = Duration::from_secs(1);

fn restart_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    (Duration::from_millis(100) * (1 << (failures - 1).min(6))).min(Duration::from_secs(5))
}

impl RuntimeSupervisor {
    /// Starts the runtime and the task that keeps it alive.
    pub fn start(
        command: CommandLine,
        http: HttpRuntimeConfig,
        ctx: RunContext,
        client: HttpClient,
    ) -> RuntimeSupervisor {
        let (state_tx, state) = watch::channel(RuntimeState::Starting);
        let (restart, restart_requests) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let in_flight = Arc::new(InFlight::default());
        let launch = RuntimeLaunch {
            command,
            http: http.clone(),
            ctx,
            attribution: Attribution::InFlight(in_flight.clone()),
        };
        let task = tokio::spawn(keep_alive(
            launch,
            client.clone(),
            state_tx,
            restart_requests,
            stop.clone(),
        ));
        RuntimeSupervisor {
            state,
            restart,
            stop,
            task: Mutex::new(Some(task)),
            http,
            client,
            in_flight,
        }
    }

    /// The current state.
    pub fn state(&self) -> RuntimeState {
        self.state.borrow().clone()
    }

    /// Calls `on_ready` each time the runtime becomes ready (after a start or a
    /// restart); returns only when the supervisor is gone.
    pub async fn became_ready(&self, mut on_ready: impl FnMut()) {
        let mut state = self.state.clone();
        while state.changed().await.is_ok() {
            if matches!(*state.borrow_and_update(), RuntimeState::Ready(_)) {
                on_ready();
            }
        }
    }

    /// Proxies one invocation, waiting (within its timeout) for the runtime to be ready.
    pub async fn invoke(&self, invocation: &Invocation, max_output: usize) -> Outcome {
        let started = Instant::now();
        let deadline = started + invocation.timeout;
        let mut state = self.state.clone();
        let generation = loop {
            let current = state.borrow_and_update().clone();
            match current {
                RuntimeState::Ready(generation) => break generation,
                RuntimeState::Failed(error) => return Outcome::failed(error, started.elapsed()),
                RuntimeState::Stopped => {
                    let error = FunctionError::new(
                        ErrorCode::RuntimeCrashed,
                        "the runtime has been stopped",
                    );
                    return Outcome::failed(error, started.elapsed());
                }
                RuntimeState::Starting => {}
            }
            match timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let error = FunctionError::new(
                        ErrorCode::RuntimeCrashed,
                        "the runtime supervisor stopped",
                    );
                    return Outcome::failed(error, started.elapsed());
                }
                Err(_) => {
                    return Outcome::failed(outcome::timeout(invocation.timeout), started.elapsed())
                }
            }
        };
        let _call = self.in_flight.enter(&invocation.execution_id);
        let proxied = http::invoke(
            &self.client,
            &self.http.invoke_url,
            invocation,
            deadline,
            max_output,
        );
        let result = match timeout_at(deadline, proxied).await {
            Ok(Err(error)) if error.code == ErrorCode::RuntimeCrashed => {
                // The connection breaks a moment before the exit is reaped: answer only
                // once the supervisor has seen this runtime go, so /health is already
                // truthful when the caller hears of the crash.
                let gone = state.wait_for(|now| *now != RuntimeState::Ready(generation));
                let _ = tokio::time::timeout(CRASH_NOTICE, gone).await;
                Err(error)
            }
            Ok(result) => result,
            Err(_) => {
                // The runtime may be stuck in this call: its whole group is stopped and
                // it is started afresh.
                let _ = self.restart.send(generation);
                Err(outcome::timeout(invocation.timeout))
            }
        };
        Outcome {
            result,
            exit_code: None,
            duration: started.elapsed(),
        }
    }

    /// Stops the runtime (SIGTERM to its group, SIGKILL after the grace period).
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// How the runtime is started, each time.
struct RuntimeLaunch {
    command: CommandLine,
    http: HttpRuntimeConfig,
    ctx: RunContext,
    /// Its output lines are marked with the call in flight.
    attribution: Attribution,
}

async fn keep_alive(
    launch: RuntimeLaunch,
    client: HttpClient,
    state: watch::Sender<RuntimeState>,
    mut restart_requests: mpsc::UnboundedReceiver<u64>,
    stop: CancellationToken,
) {
    let RuntimeLaunch {
        command,
        http,
        ctx,
        attribution,
    } = launch;
    let mut failures = 0u32;
    let mut generation = 0u64;
    while !stop.is_cancelled() {
        let delay = restart_delay(failures);
        if !delay.is_zero() {
            tokio::select! {
                () = sleep(delay) => {}
                () = stop.cancelled() => break,
            }
        }
        state.send_replace(RuntimeState::Starting);
        let spawned = http::spawn_runtime(&command, &http, &ctx, attribution.clone());
        let (mut process, forwarders) = match spawned {
            Ok(runtime) => runtime,
            Err(error) => {
                diag!("{error}");
                state.send_replace(RuntimeState::Failed(error));
                failures += 1;
                continue;
            }
        };
        let ready = tokio::select! {
            ready = http::wait_ready(&client, &mut process, &http.health_url, http.ready_timeout) => ready,
            () = stop.cancelled() => Ok(()),
        };
        if let Err(error) = ready {
            diag!("{error}");
            state.send_replace(RuntimeState::Failed(error));
            process.terminate(ctx.kill_grace).await;
            failures += 1;
            continue;
        }
        if stop.is_cancelled() {
            process.terminate(ctx.kill_grace).await;
            break;
        }
        let ready_at = Instant::now();
        generation += 1;
        state.send_replace(RuntimeState::Ready(generation));
        loop {
            tokio::select! {
                status = process.wait() => {
                    diag!("runtime exited with {status}; restarting it");
                    break;
                }
                Some(timed_out) = restart_requests.recv() => {
                    // Requests about an earlier generation are stale: that one is gone.
                    if timed_out == generation {
                        diag!("an invocation timed out; restarting the runtime");
                        break;
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        state.send_replace(RuntimeState::Starting);
        process.terminate(ctx.kill_grace).await;
        drop(forwarders);
        failures = if ready_at.elapsed() < STABLE_AFTER {
            failures + 1
        } else {
            0
        };
    }
    state.send_replace(RuntimeState::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_is_immediate_then_backs_off_to_five_seconds() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(2), Duration::from_millis(200));
        assert_eq!(
            restart_delay(7),
            Duration::from_millis(6400).min(Duration::from_secs(5))
        );
        assert_eq!(restart_delay(30), Duration::from_secs(5));
    }
}
