//! One warm instance's life: started on the runtime, polled on `/health` until ready,
//! health-checked while it serves, stopped when its pool asks, and reported gone when it
//! stops or dies. The supervising task owns the runtime's instance; the pool holds an
//! [`InstanceHandle`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::client::Connections;
use super::FunctionPool;
use crate::domain::codes;
use crate::logs::{ExecutionLogs, InstanceLog};
use crate::runtime::{Instance, InstanceExit, OomProbe, WarmLaunch, WarmStarted};
use crate::secrets::Masker;

/// Consecutive failed health checks after which a ready instance is replaced.
const HEALTH_FAILURES: u32 = 3;
/// Longest wait for one health answer.
const HEALTH_ANSWER_LIMIT: Duration = Duration::from_millis(1_000);
/// Longest pause between readiness polls of a starting instance.
const READY_POLL_MAX: Duration = Duration::from_millis(50);

/// The pool's handle on one instance.
#[derive(Debug)]
pub struct InstanceHandle {
    /// Unique key (labels, markers).
    pub key: Uuid,
    /// The instance's own credential (its WARM_TOKEN): `/invoke` refuses calls without
    /// it, so only this control plane can call the instance.
    credential: String,
    id: OnceLock<String>,
    connections: OnceLock<Connections>,
    masker: OnceLock<Masker>,
    oom: OnceLock<OomProbe>,
    /// The OOM kills counted when last read. A call starts from it and only a call that
    /// fails reads the count again, so a call that succeeds reads no cgroup file; the
    /// health checks refresh it, so a kill between calls is not blamed on a later one.
    oom_known: AtomicU64,
    stop: CancellationToken,
    /// Files its output lines under their executions, or as its own.
    pub log: Arc<InstanceLog>,
}

impl InstanceHandle {
    /// A handle for an instance about to start, with a new random credential, whose
    /// executions' lines go to `logs`.
    pub fn new(logs: ExecutionLogs) -> InstanceHandle {
        InstanceHandle {
            log: InstanceLog::new(logs),
            key: Uuid::new_v4(),
            credential: crate::access::generate_token(),
            id: OnceLock::new(),
            connections: OnceLock::new(),
            masker: OnceLock::new(),
            oom: OnceLock::new(),
            oom_known: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// The instance's credential, for its WARM_TOKEN.
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// Hides the values of the secrets the instance was started with.
    pub fn masker(&self) -> Masker {
        self.masker.get().cloned().unwrap_or_default()
    }

    /// The runtime's id of the instance (`process-<pid>`, a container id); `starting`
    /// until it is known.
    pub fn id(&self) -> &str {
        self.id.get().map_or("starting", String::as_str)
    }

    /// Reads how many processes the instance's memory limit has killed so far (0 where
    /// the runtime cannot say), and remembers it.
    pub fn oom_kills(&self) -> u64 {
        let kills = self.oom.get().map_or(0, OomProbe::kills);
        self.oom_known.fetch_max(kills, Ordering::Relaxed);
        kills
    }

    /// The OOM kills as last read by [`InstanceHandle::oom_kills`], without reading.
    pub fn oom_kills_known(&self) -> u64 {
        self.oom_known.load(Ordering::Relaxed)
    }

    /// Its connections, once it is started.
    pub fn connections(&self) -> Option<&Connections> {
        self.connections.get()
    }

    /// Asks the supervising task to stop the instance.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Timings of the supervision.
#[derive(Debug, Clone, Copy)]
pub struct Supervision {
    /// Time between health checks of a ready instance.
    pub health_interval: Duration,
    /// Time a new instance has to answer `/health` with 200.
    pub ready_timeout: Duration,
    /// SIGTERM to SIGKILL when an instance is stopped.
    pub stop_grace: Duration,
    /// Largest output of a call (the instances' MAX_OUTPUT_BYTES); an answer longer
    /// than that and its envelope is not read.
    pub max_output_bytes: usize,
}

enum Readiness {
    Ready,
    Exited(InstanceExit),
    TimedOut,
    Stopped,
}

/// Starts the instance of `handle` and looks after it until it is gone.
pub async fn supervise(
    pool: Arc<FunctionPool>,
    handle: Arc<InstanceHandle>,
    mut launch: WarmLaunch,
) {
    let timing = pool.shared.supervision;
    let key = handle.key;
    match pool
        .shared
        .vault
        .resolve(&launch.function.spec.secrets)
        .await
    {
        Ok(secrets) => {
            launch.env.extend(secrets.env);
            launch.logs = launch.logs.masked(secrets.masker.clone());
            let _ = handle.masker.set(secrets.masker);
        }
        Err(err) => {
            let message = format!("cannot read the function's secrets: {err}");
            pool.start_failed(key, codes::SPAWN_ERROR, message);
            return;
        }
    }
    let started = pool.shared.runtime.start_warm(launch).await;
    let WarmStarted {
        mut instance,
        endpoint,
    } = match started {
        Ok(started) => started,
        Err(err) => {
            pool.start_failed(key, codes::SPAWN_ERROR, err.to_string());
            return;
        }
    };
    let _ = handle.id.set(instance.id().to_owned());
    if let Some(probe) = instance.oom_probe() {
        let _ = handle.oom.set(probe);
    }
    let answer_limit = timing.max_output_bytes + crate::dispatch::REPORT_ENVELOPE_BYTES;
    let connections = match Connections::new(&endpoint, handle.credential(), answer_limit) {
        Ok(connections) => handle.connections.get_or_init(|| connections),
        Err(message) => {
            instance.kill(timing.stop_grace).await;
            pool.start_failed(key, codes::SPAWN_ERROR, message);
            return;
        }
    };
    match wait_ready(
        &handle,
        connections,
        instance.as_mut(),
        timing.ready_timeout,
    )
    .await
    {
        Readiness::Ready => pool.ready(key),
        Readiness::Exited(exit) => {
            let message = format!("the warm instance ended with {exit} before it was ready");
            pool.start_failed(key, codes::STARTUP_ERROR, message);
            return;
        }
        Readiness::TimedOut => {
            instance.kill(timing.stop_grace).await;
            let message = format!(
                "the warm instance did not answer /health within {} ms",
                timing.ready_timeout.as_millis()
            );
            pool.start_failed(key, codes::STARTUP_ERROR, message);
            return;
        }
        Readiness::Stopped => {
            connections.close();
            instance.kill(timing.stop_grace).await;
            pool.gone(key, None);
            return;
        }
    }
    let mut failures = 0;
    loop {
        tokio::select! {
            exit = instance.wait() => {
                pool.unavailable(key);
                connections.close();
                // What the watchdog started may outlive it: stop what carries its marks.
                instance.kill(timing.stop_grace).await;
                pool.gone(key, Some(format!("it ended with {exit}")));
                return;
            }
            () = handle.stop.cancelled() => {
                connections.close();
                instance.kill(timing.stop_grace).await;
                pool.gone(key, None);
                return;
            }
            () = sleep(timing.health_interval) => {
                handle.oom_kills();
                if connections.healthy(HEALTH_ANSWER_LIMIT).await {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= HEALTH_FAILURES {
                        pool.unavailable(key);
                        connections.close();
                        instance.kill(timing.stop_grace).await;
                        pool.gone(key, Some(format!("it failed {failures} health checks in a row")));
                        return;
                    }
                }
            }
        }
    }
}

/// Polls `/health` (1 ms, then doubling up to 50 ms apart) until it answers 200.
async fn wait_ready(
    handle: &InstanceHandle,
    connections: &Connections,
    instance: &mut dyn Instance,
    limit: Duration,
) -> Readiness {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if handle.stop.is_cancelled() {
            return Readiness::Stopped;
        }
        if connections.healthy(HEALTH_ANSWER_LIMIT).await {
            return Readiness::Ready;
        }
        if Instant::now() >= deadline {
            return Readiness::TimedOut;
        }
        tokio::select! {
            exit = instance.wait() => return Readiness::Exited(exit),
            () = handle.stop.cancelled() => return Readiness::Stopped,
            () = sleep(pause) => {}
        }
        pause = (pause * 2).min(READY_POLL_MAX);
    }
}
