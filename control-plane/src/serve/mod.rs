//! `gantry serve`: checks the settings, prepares the private data directory, opens the
//! store, the secrets and the tokens, recovers what a previous run left, and serves the
//! API until SIGINT or SIGTERM, then drains.

mod access;
mod runtimes;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, AppState, HostPolicy};
use crate::config::{ServeArgs, EXIT_CONFIG};
use crate::datadir;
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::pool::Supervision;
use crate::registry::catalog::Catalog;
use crate::store::{SqliteStore, Store};

/// Inputs up to this size travel in INVOCATION_PAYLOAD; larger ones via PAYLOAD_URL.
const MAX_ENV_PAYLOAD_BYTES: usize = 64 * 1024;

/// A start-up failure: what to print and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// A bad setting (exit 64).
    fn config(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: EXIT_CONFIG,
        }
    }

    /// Anything else that stops the server from starting (exit 1).
    fn fatal(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

/// Runs the server with `args`; `operator_token` is the operator's own admin token
/// (`GANTRY_TOKEN` or `--token-file`), if given.
pub async fn serve_main(args: ServeArgs, operator_token: Option<String>) -> ExitCode {
    init_tracing();
    // Other processes of this user (functions included, when they run as it) must not
    // read this server's memory or environment, which hold tokens and secret keys.
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make the server non-dumpable: {err}");
    }
    match serve(args, operator_token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("gantry serve: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

async fn serve(mut args: ServeArgs, operator_token: Option<String>) -> Result<(), Failure> {
    check_args(&args)?;
    raise_descriptor_limit();
    prepare_data_dir(&mut args)?;
    let owner = owner_id(&args.data_dir).map_err(|err| {
        Failure::config(format!(
            "GANTRY_DATA_DIR (--data-dir) {} is not writable: {err}",
            args.data_dir.display()
        ))
    })?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&args.data_dir).map_err(|err| Failure::fatal(err.to_string()))?);
    let vault = access::open_vault(&store, &args.data_dir).await?;
    let credentials = access::open_credentials(&store, operator_token.as_deref(), &args).await?;
    // After the settings that can still be refused: it makes the cgroups and logs how
    // functions run, which a start refused with one line of reason must not do.
    let runtimes = runtimes::RuntimeSetup::new(&args, &owner).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| Failure::fatal(format!("cannot listen on {}: {err}", args.listen)))?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let (advertise, instance_listener) = runtimes.advertise(&args, local).await?;
    let runtime = runtimes.runtime.clone();
    let catalog = Arc::new(
        Catalog::new(store.clone(), runtime.clone(), vault.clone())
            .with_max_chains(args.max_chains as usize),
    );
    let metrics = Arc::new(Metrics::new());
    let logs = Arc::new(LogHub::with_metrics(metrics.clone()));
    let dispatcher = Dispatcher::new(
        store.clone(),
        runtime.clone(),
        catalog.clone(),
        vault.clone(),
        logs.clone(),
        metrics.clone(),
        DispatchSettings {
            callback_base: format!("{}/v1/internal/executions", advertise.trim_end_matches('/')),
            log_cap_bytes: args.log_cap_bytes,
            max_env_payload_bytes: MAX_ENV_PAYLOAD_BYTES,
            owner: owner.clone(),
            warm: Supervision {
                health_interval: Duration::from_millis(args.health_interval_ms),
                ready_timeout: Duration::from_millis(args.ready_timeout_ms),
                stop_grace: Duration::from_millis(2_000),
                max_output_bytes: args.max_output_bytes,
            },
            max_chain_depth: args.max_chain_depth,
            max_output_bytes: args.max_output_bytes,
        },
    );
    let state = Arc::new(AppState {
        store,
        catalog,
        dispatcher: dispatcher.clone(),
        logs,
        metrics,
        credentials,
        vault,
        hosts: host_policy(&args, &advertise),
        ready: AtomicBool::new(false),
        max_body_bytes: args.max_body_bytes,
        max_report_bytes: args.max_output_bytes + crate::dispatch::REPORT_ENVELOPE_BYTES,
        limits: api::listener::Limits {
            max_connections: args.max_connections,
            header_timeout: Duration::from_millis(args.header_timeout_ms),
        },
    });
    let recovered = dispatcher
        .recover()
        .await
        .map_err(|err| Failure::fatal(format!("recovery failed: {err}")))?;
    tracing::info!(
        orphans_stopped = recovered.orphans_stopped,
        retried = recovered.retried,
        failed = recovered.failed,
        deferred = recovered.deferred,
        "settled the previous run's started executions"
    );
    dispatcher.prewarm().await;
    state.ready.store(true, Ordering::Relaxed);
    access::announce(&state.credentials, &args, operator_token.is_some());
    eprintln!(
        "gantry listening on http://{local} (runtime {}, {}, data dir {}, advertised to instances as {advertise})",
        runtime.name(),
        runtimes.describe(),
        args.data_dir.display()
    );
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let stopped = tokio_util::sync::CancellationToken::new();
    crate::retention::start(
        state.store.clone(),
        state.catalog.clone(),
        crate::retention::RetentionSettings {
            keep: args.retention,
            interval: Duration::from_millis(args.prune_interval_ms),
            keep_versions: args.keep_versions,
        },
        stopped.clone(),
    );
    if let Some(listener) = instance_listener {
        let (stopped, router) = (stopped.clone(), api::internal_app(state.clone()));
        tokio::spawn(async move {
            let limits = api::listener::Limits::default();
            let shutdown = stopped.cancelled_owned();
            if let Err(err) = api::listener::serve(listener, router, limits, shutdown).await {
                tracing::error!("the listener for instances failed: {err}");
            }
        });
    }
    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("stopping: waiting up to {grace:?} for running executions");
        dispatcher.shutdown(grace).await;
        // Exited containers are removed in the background; let that finish.
        runtime.drain(Duration::from_secs(10)).await;
        stopped.cancel();
    };
    api::run(listener, state, shutdown)
        .await
        .map_err(|err| Failure::fatal(err.to_string()))
}

/// The checks that need nothing but the flags.
fn check_args(args: &ServeArgs) -> Result<(), Failure> {
    if args.insecure_no_auth && !args.listen.ip().is_loopback() {
        return Err(Failure::config(format!(
            "GANTRY_INSECURE_NO_AUTH (--insecure-no-auth) is only allowed on a loopback address, not on {}",
            args.listen
        )));
    }
    if let Some(url) = &args.advertise_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Failure::config(format!(
                "GANTRY_ADVERTISE_URL (--advertise-url) must be an http:// or https:// URL, got {url:?}"
            )));
        }
    }
    if args.log_cap_bytes == 0 {
        return Err(Failure::config(
            "GANTRY_LOG_CAP_BYTES (--log-cap-bytes) must be above 0",
        ));
    }
    let cpus = args.docker_cpus;
    if cpus.is_nan() || cpus <= 0.0 || cpus > 1024.0 {
        return Err(Failure::config(format!(
            "GANTRY_DOCKER_CPUS (--docker-cpus) must be above 0 and at most 1024, got {cpus}"
        )));
    }
    Ok(())
}

/// Makes the data directory absolute (instances run elsewhere and get paths in it) and
/// private: 0700, its files 0600.
fn prepare_data_dir(args: &mut ServeArgs) -> Result<(), Failure> {
    if let Ok(absolute) = std::path::absolute(&args.data_dir) {
        args.data_dir = absolute;
    }
    datadir::prepare(&args.data_dir).map_err(|err| {
        Failure::config(format!(
            "GANTRY_DATA_DIR (--data-dir) {} cannot be prepared: {err}",
            args.data_dir.display()
        ))
    })
}

/// The names the Host header may carry: `--allowed-host`, and the advertised URL's
/// host when it is a name.
fn host_policy(args: &ServeArgs, advertise: &str) -> HostPolicy {
    let advertised = advertise
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default().to_owned());
    HostPolicy::new(args.allowed_hosts.iter().cloned().chain(advertised))
}

/// A stable id for `data_dir`, created on first use; it marks the processes this data
/// directory's server starts, so a later start finds those a crash left behind.
fn owner_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("owner-id");
    match datadir::read_trimmed(&path)? {
        Some(id) => Ok(id),
        None => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            datadir::write_private(&path, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// Raises the open-file limit to its hard limit: every connection and every instance's
/// pipes use descriptors.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {err}");
            }
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
