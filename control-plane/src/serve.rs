//! `gantry serve`: checks the settings, opens the store, recovers what a previous run
//! left, and serves the API until SIGINT or SIGTERM, then drains.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, AppState};
use crate::config::{RuntimeKind, ServeArgs, EXIT_CONFIG};
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::pool::Supervision;
use crate::registry::catalog::Catalog;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::docker_select::RuntimeSelector;
use crate::runtime::process::{locate_watchdog, ProcessRuntime};
use crate::runtime::Runtime;
use crate::store::{SqliteStore, Store};

/// Inputs up to this size travel in INVOCATION_PAYLOAD; larger ones via PAYLOAD_URL.
const MAX_ENV_PAYLOAD_BYTES: usize = 64 * 1024;

fn config_error(message: String) -> ExitCode {
    eprintln!("gantry serve: {message}");
    ExitCode::from(EXIT_CONFIG)
}

/// A stable id for `data_dir`, created on first use; it marks the processes this data
/// directory's server starts, so a later start finds those a crash left behind.
fn owner_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("owner-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

/// Runs the server with `args`; `token` is the API token (`--token`/`GANTRY_TOKEN`).
pub async fn serve_main(mut args: ServeArgs, token: Option<String>) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let token = token.filter(|token| !token.is_empty());
    if token.is_none() && !args.listen.ip().is_loopback() {
        return config_error(format!(
            "GANTRY_TOKEN (--token) is required to listen on {}, which is not a loopback address",
            args.listen
        ));
    }
    if let Some(url) = &args.advertise_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return config_error(format!(
                "GANTRY_ADVERTISE_URL (--advertise-url) must be an http:// or https:// URL, got {url:?}"
            ));
        }
    }
    if args.log_cap_bytes == 0 {
        return config_error("GANTRY_LOG_CAP_BYTES (--log-cap-bytes) must be above 0".into());
    }
    if args.runtime == RuntimeKind::Docker && token.is_none() {
        return config_error(
            "GANTRY_TOKEN (--token) is required with GANTRY_RUNTIME (--runtime) docker: containers reach this server over the Docker network"
                .into(),
        );
    }
    let watchdog = match (locate_watchdog(args.watchdog.as_deref()), args.runtime) {
        (Ok(path), _) => Some(path),
        // The docker runtime runs the watchdog baked into images; without one on this
        // host, `command`-only functions are refused at deploy.
        (Err(_), RuntimeKind::Docker) if args.watchdog.is_none() => None,
        (Err(message), _) => return config_error(message),
    };
    // Instances run in their functions' working directories, so the paths handed to
    // them (FILE mode's INPUT_FILE and OUTPUT_FILE) must not be relative to ours.
    if let Ok(absolute) = std::path::absolute(&args.data_dir) {
        args.data_dir = absolute;
    }
    if let Err(err) = std::fs::create_dir_all(args.data_dir.join("run")) {
        return config_error(format!(
            "GANTRY_DATA_DIR (--data-dir) {} cannot be created: {err}",
            args.data_dir.display()
        ));
    }
    let owner = match owner_id(&args.data_dir) {
        Ok(owner) => owner,
        Err(err) => {
            return config_error(format!(
                "GANTRY_DATA_DIR (--data-dir) {} is not writable: {err}",
                args.data_dir.display()
            ))
        }
    };
    let store: Arc<dyn Store> = match SqliteStore::open(&args.data_dir) {
        Ok(store) => Arc::new(store),
        Err(err) => {
            eprintln!("gantry serve: {err}");
            return ExitCode::FAILURE;
        }
    };
    let docker = match args.runtime {
        RuntimeKind::Docker => {
            match DockerRuntime::connect(owner.clone(), args.docker_sandboxes).await {
                Ok(docker) => Some(docker),
                Err(message) => {
                    eprintln!("gantry serve: {message}; start the engine or use --runtime process");
                    return ExitCode::FAILURE;
                }
            }
        }
        RuntimeKind::Process => None,
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("gantry serve: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(args.listen);
    // With the docker runtime, containers reach this server through their network's
    // gateway: advertise that address and, unless this server already listens on every
    // address (or is told where it is reachable), listen there too.
    let mut gateway_listener = None;
    let advertise = match (&args.advertise_url, &docker) {
        (Some(url), _) => url.clone(),
        (None, Some(docker)) => {
            let gateway = std::net::SocketAddr::new(docker.gateway(), local.port());
            if !local.ip().is_unspecified() && local.ip() != gateway.ip() {
                match TcpListener::bind(gateway).await {
                    Ok(listener) => gateway_listener = Some(listener),
                    Err(err) => {
                        eprintln!(
                            "gantry serve: cannot listen on {gateway} (the gateway of the Docker network {}): {err}; set GANTRY_ADVERTISE_URL (--advertise-url) to an address containers reach",
                            docker.network()
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
            format!("http://{gateway}")
        }
        (None, None) => {
            let host = if local.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                local.ip().to_string()
            };
            format!("http://{host}:{}", local.port())
        }
    };
    let process = watchdog
        .clone()
        .map(|watchdog| ProcessRuntime::new(watchdog, owner, args.data_dir.join("run")));
    let runtime: Arc<dyn Runtime> = match (docker, process) {
        (Some(docker), process) => Arc::new(RuntimeSelector::new(docker, process)),
        (None, Some(process)) => Arc::new(process),
        (None, None) => return config_error("no runtime is available".into()),
    };
    let runtime_name = runtime.name();
    let catalog = Arc::new(Catalog::new(store.clone(), runtime.clone()));
    let draining = runtime.clone();
    let logs = Arc::new(LogHub::default());
    let metrics = Arc::new(Metrics::new());
    let dispatcher = Dispatcher::new(
        store.clone(),
        runtime,
        catalog.clone(),
        logs.clone(),
        metrics.clone(),
        DispatchSettings {
            callback_base: format!("{}/v1/internal/executions", advertise.trim_end_matches('/')),
            log_cap_bytes: args.log_cap_bytes,
            max_env_payload_bytes: MAX_ENV_PAYLOAD_BYTES,
            warm: Supervision {
                health_interval: Duration::from_millis(args.health_interval_ms),
                ready_timeout: Duration::from_millis(args.ready_timeout_ms),
                stop_grace: Duration::from_millis(2_000),
            },
            max_chain_depth: args.max_chain_depth,
        },
    );
    let state = Arc::new(AppState {
        store,
        catalog,
        dispatcher: dispatcher.clone(),
        logs,
        metrics,
        token,
        ready: AtomicBool::new(false),
        max_body_bytes: args.max_body_bytes,
    });
    match dispatcher.recover().await {
        Ok(recovered) => tracing::info!(
            orphans_stopped = recovered.orphans_stopped,
            requeued = recovered.requeued,
            retried = recovered.retried,
            failed = recovered.failed,
            "recovered the previous run's executions"
        ),
        Err(err) => {
            eprintln!("gantry serve: recovery failed: {err}");
            return ExitCode::FAILURE;
        }
    }
    dispatcher.prewarm().await;
    state.ready.store(true, Ordering::Relaxed);
    eprintln!(
        "gantry listening on http://{local} (runtime {}, watchdog {}, data dir {}, advertised to instances as {advertise})",
        runtime_name,
        watchdog
            .as_ref()
            .map_or_else(|| "none".to_owned(), |path| path.display().to_string()),
        args.data_dir.display()
    );
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let stopped = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = gateway_listener {
        let stopped = stopped.clone();
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(err) = api::run(listener, state, stopped.cancelled_owned()).await {
                tracing::error!("the listener on the Docker network failed: {err}");
            }
        });
    }
    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("stopping: waiting up to {grace:?} for running executions");
        dispatcher.shutdown(grace).await;
        // Exited containers are removed in the background; let that finish.
        draining.drain(Duration::from_secs(10)).await;
        stopped.cancel();
    };
    match api::run(listener, state, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gantry serve: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
