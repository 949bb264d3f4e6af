//! WARM mode: an HTTP server on WARM_PORT that runs many invocations in one container,
//! through a long-lived HTTP runtime or a STDIO/FILE process per invocation. It stops
//! cleanly (drains in-flight work, stops the runtime, exits 0) on SIGTERM/SIGINT, after
//! WARM_IDLE_TIMEOUT_MS without work, or after WARM_MAX_INVOCATIONS.

pub mod lifecycle;
pub mod request;
pub mod runtime;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{Config, WarmRuntime};
use crate::http_client::HttpClient;
use crate::logs::Target;
use crate::modes::file::FilePaths;
use crate::modes::{file, stdio, Invocation, RunContext};
use crate::outcome::Outcome;
use crate::{diag, exit_code};
use lifecycle::Lifecycle;
use runtime::RuntimeSupervisor;

/// Everything the request handlers share.
#[derive(Debug)]
pub struct Warm {
    config: Config,
    ctx: RunContext,
    client: HttpClient,
    lifecycle: Arc<Lifecycle>,
    permits: Arc<Semaphore>,
    runtime: Option<RuntimeSupervisor>,
    /// Callbacks still being delivered after their response was sent.
    background: TaskTracker,
    sequence: AtomicU64,
}

impl Warm {
    /// Runs one invocation on the configured runtime.
    async fn run(&self, invocation: &Invocation) -> Outcome {
        match (&self.runtime, self.config.warm.runtime) {
            (Some(runtime), _) => runtime.invoke(invocation, self.ctx.max_output).await,
            (None, WarmRuntime::File) => {
                let shared = FilePaths {
                    input: self.config.input_file.clone(),
                    output: self.config.output_file.clone(),
                };
                // Concurrent invocations must not share files.
                let paths = if self.config.warm.concurrency > 1 {
                    shared.numbered(self.sequence.fetch_add(1, Ordering::Relaxed))
                } else {
                    shared
                };
                file::run(&self.config.command, &paths, invocation, &self.ctx, None).await
            }
            (None, _) => stdio::run(&self.config.command, invocation, &self.ctx, None).await,
        }
    }
}

/// Serves until shutdown and returns the exit code.
pub async fn serve(config: Config) -> i32 {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            diag!("cannot listen for SIGTERM/SIGINT: {err}");
            return exit_code::INTERNAL;
        }
    };
    let address = SocketAddr::new(config.warm.host, config.warm.port);
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => {
            diag!("cannot listen on {address} (WARM_HOST/WARM_PORT): {err}");
            return exit_code::INTERNAL;
        }
    };
    let local = listener.local_addr().unwrap_or(address);
    let ctx = RunContext {
        kill_grace: config.kill_grace,
        max_output: config.max_output_bytes,
        child_stdout: Target::Stdout,
        mark_lines: true,
    };
    let client = HttpClient::new();
    let runtime = (config.warm.runtime == WarmRuntime::Http).then(|| {
        RuntimeSupervisor::start(
            config.command.clone(),
            config.http.clone(),
            ctx,
            client.clone(),
        )
    });
    let lifecycle = Lifecycle::new(config.warm.idle_timeout, config.warm.max_invocations);
    diag!(
        "WARM listening on {local} (runtime {:?}, concurrency {}, command {})",
        config.warm.runtime,
        config.warm.concurrency,
        config.command
    );
    if config.warm_token.is_none() {
        diag!(
            "WARM_TOKEN is unset: anyone who reaches port {} may POST /invoke",
            local.port()
        );
    }
    let warm = Arc::new(Warm {
        permits: Arc::new(Semaphore::new(config.warm.concurrency)),
        config,
        ctx,
        client,
        lifecycle: Arc::clone(&lifecycle),
        runtime,
        background: TaskTracker::new(),
        sequence: AtomicU64::new(0),
    });
    let stopper = {
        let warm = Arc::clone(&warm);
        tokio::spawn(async move {
            let lifecycle = &warm.lifecycle;
            let ready = async {
                match &warm.runtime {
                    Some(runtime) => runtime.became_ready(|| lifecycle.touch()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term.recv() => lifecycle.stop("SIGTERM"),
                _ = int.recv() => lifecycle.stop("SIGINT"),
                () = lifecycle.watch_idle() => {}
                () = ready => {}
            }
        })
    };
    server::run(listener, Arc::clone(&warm)).await;
    diag!(
        "stopping ({}): in-flight invocations done, {} completed",
        lifecycle.reason().unwrap_or_default(),
        lifecycle.completed()
    );
    warm.background.close();
    warm.background.wait().await;
    if let Some(runtime) = &warm.runtime {
        runtime.stop().await;
    }
    stopper.abort();
    exit_code::SUCCESS
}
