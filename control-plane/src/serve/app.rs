//! The server as one value: [`App::build`] opens the store, the secrets, the tokens and
//! the runtimes, wires the dispatcher and the API, and settles what a previous run left;
//! [`App::run`] serves until SIGINT or SIGTERM, then drains.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::runtimes::{RuntimeSetup, REFUSED_START_DRAIN};
use super::{access, host_policy, stop_signal, Failure, Settings, MAX_ENV_PAYLOAD_BYTES};
use crate::access::Credentials;
use crate::api::{self, AppState};
use crate::config::ServeArgs;
use crate::destinations::{AddressPolicy, DeliverySettings, Destinations};
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::domain::NodeRecord;
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::pool::Supervision;
use crate::registry::catalog::Catalog;
use crate::runtime::Runtime;
use crate::secrets::Vault;
use crate::store::{PostgresStore, SqliteStore, Store, WriteBehind};
use crate::telemetry::TracingSettings;

/// How often a caller waiting for a result reads it when several nodes share the store.
const POLL_RESULTS: Duration = Duration::from_millis(250);

/// Longest a stop waits for records written behind that the store still refuses.
const WRITE_BEHIND_GRACE: Duration = Duration::from_secs(10);
/// How long a stopping server waits for the spans still queued to be exported.
const SPAN_FLUSH: Duration = Duration::from_secs(5);

/// A built server, recovered and ready to serve.
pub(super) struct App {
    args: ServeArgs,
    state: Arc<AppState>,
    behind: Arc<WriteBehind>,
    dispatcher: Arc<Dispatcher>,
    runtimes: RuntimeSetup,
    listener: TcpListener,
    local: SocketAddr,
    advertise: String,
    instance_listener: Option<TcpListener>,
    operator_token_given: bool,
    /// Which store keeps the state, for the start line.
    store_name: String,
}

impl App {
    /// Opens everything the server needs and settles the previous run's executions. A
    /// start refused once the runtimes are set up undoes their setup (cgroups, the
    /// function user's scratch root), so it leaves nothing behind.
    pub async fn build(settings: Settings, operator_token: Option<String>) -> Result<App, Failure> {
        let Settings {
            args,
            owner,
            node_id,
        } = settings;
        let (durable, store_name) = open_store(&args).await?;
        // Everything reads through the decorator, so records written behind are seen.
        let behind = Arc::new(WriteBehind::new(durable));
        let store: Arc<dyn Store> = behind.clone();
        let vault = access::open_vault(&store, &args.data_dir, args.database_url.is_some()).await?;
        let credentials =
            access::open_credentials(&store, operator_token.as_deref(), &args).await?;
        let spans = span_settings(&args)?;
        // After the settings that can still be refused: it makes the cgroups and logs how
        // functions run, which a start refused with one line of reason must not do.
        let runtimes = RuntimeSetup::new(&args, &owner).await?;
        let runtime = runtimes.runtime.clone();
        let opened = Opened {
            args,
            node_id,
            store_name,
            behind,
            vault,
            credentials,
            spans,
            operator_token_given: operator_token.is_some(),
        };
        let built = opened.assemble(runtimes).await;
        if built.is_err() {
            runtime.drain(REFUSED_START_DRAIN).await;
        }
        built
    }

    /// Serves the API (and the instances' listener) until a signal, then lets running
    /// executions finish for the shutdown grace and stops.
    pub async fn run(self) -> Result<(), Failure> {
        let App {
            args,
            state,
            dispatcher,
            runtimes,
            ..
        } = &self;
        let signalled = stop_signal();
        state.ready.store(true, Ordering::Relaxed);
        access::announce(&state.credentials, args, self.operator_token_given);
        access::announce_console(
            &state.credentials,
            args,
            self.operator_token_given,
            self.local,
        );
        super::say(&format!(
            "gantry listening on http://{} (runtime {}, {}, data dir {}, store {}, advertised to instances as {})",
            self.local,
            runtimes.runtime.name(),
            runtimes.describe(),
            args.data_dir.display(),
            self.store_name,
            self.advertise,
        ));
        let stopped = CancellationToken::new();
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
        state.catalog.keep_fresh(stopped.clone());
        crate::schedule::runner::start(
            state.store.clone(),
            state.catalog.clone(),
            dispatcher.clone(),
            stopped.clone(),
        );
        if let Some(destinations) = dispatcher.destinations() {
            crate::destinations::start(destinations, stopped.clone());
        }
        let started_at = crate::domain::now();
        let address = args
            .node_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.local));
        // Only nodes sharing a database have others to exchange loads with.
        let exchange = args.database_url.as_ref().map(|_| {
            crate::cluster::keep_exchanging(
                state.store.clone(),
                dispatcher.clone(),
                dispatcher.node_id().to_owned(),
                address.trim_end_matches('/').to_owned(),
                stopped.child_token(),
            )
        });
        let heartbeat = crate::nodes::keep_heartbeat(
            state.store.clone(),
            dispatcher.clone(),
            NodeRecord {
                id: dispatcher.node_id().to_owned(),
                address,
                runtime: runtimes.runtime.name().to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at,
                heartbeat_at: started_at,
                running: 0,
                stopped_at: None,
            },
            stopped.child_token(),
        );
        let grace = Duration::from_millis(args.shutdown_grace_ms);
        let (dispatcher, runtime) = (dispatcher.clone(), runtimes.runtime.clone());
        let App {
            state,
            listener,
            instance_listener,
            behind,
            ..
        } = self;
        if let Some(listener) = instance_listener {
            serve_instances(listener, &state, stopped.clone());
        }
        let stop_heartbeat = stopped.clone();
        let shutdown = async move {
            signalled.await;
            tracing::info!("stopping: waiting up to {grace:?} for running executions");
            dispatcher.shutdown(grace).await;
            // Exited containers are removed in the background; let that finish.
            runtime.drain(Duration::from_secs(10)).await;
            stopped.cancel();
        };
        let served = api::run(listener, state, shutdown)
            .await
            .map_err(|err| Failure::fatal(err.to_string()));
        // Its last record says it stopped (not lost), even when serving failed.
        stop_heartbeat.cancel();
        let _ = heartbeat.await;
        if let Some(exchange) = exchange {
            let _ = exchange.await;
        }
        // A clean stop writes what was written behind before the store closes.
        behind.close(WRITE_BEHIND_GRACE).await;
        if let Err(err) = crate::telemetry::shutdown(SPAN_FLUSH).await {
            tracing::warn!("{err}");
        }
        served
    }
}

/// What a start opens before it sets the runtimes up.
struct Opened {
    args: ServeArgs,
    node_id: String,
    store_name: String,
    behind: Arc<WriteBehind>,
    vault: Arc<Vault>,
    credentials: Arc<Credentials>,
    /// Where spans go, when they are exported.
    spans: Option<TracingSettings>,
    operator_token_given: bool,
}

impl Opened {
    /// Listens, wires the dispatcher and the API around `runtimes`, and recovers.
    async fn assemble(self, runtimes: RuntimeSetup) -> Result<App, Failure> {
        let Opened {
            args,
            node_id,
            store_name,
            behind,
            vault,
            credentials,
            spans,
            operator_token_given,
        } = self;
        let store: Arc<dyn Store> = behind.clone();
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|err| Failure::fatal(format!("cannot listen on {}: {err}", args.listen)))?;
        let local = listener.local_addr().unwrap_or(args.listen);
        let (advertise, instance_listener) = runtimes.advertise(&args, local).await?;
        let runtime: Arc<dyn Runtime> = runtimes.runtime.clone();
        let catalog = Arc::new(
            Catalog::new(store.clone(), runtime.clone(), vault.clone())
                .with_max_chains(args.max_chains as usize)
                .with_destination_policy(destination_policy(&args)),
        );
        let metrics = Arc::new(Metrics::new());
        // Decides the traces of every execution from here on.
        let sampler = args
            .sampler()
            .map_err(|err| Failure::config(err.to_string()))?;
        crate::telemetry::install_sampler(sampler);
        if let Some(spans) = &spans {
            // The settings passed the checks: what fails now is no setting's fault.
            crate::telemetry::install(spans, metrics.spans_dropped())
                .map_err(|err| Failure::fatal(err.to_string()))?;
        }
        let logs = Arc::new(LogHub::with_metrics(metrics.clone()));
        let dispatcher = Dispatcher::new(
            behind.clone(),
            runtime,
            catalog.clone(),
            vault.clone(),
            logs.clone(),
            metrics.clone(),
            dispatch_settings(&args, &advertise, node_id),
        );
        dispatcher.set_destinations(Destinations::new(
            store.clone(),
            vault.clone(),
            delivery_settings(&args, dispatcher.node_id()),
        ));
        let state = Arc::new(AppState {
            store,
            catalog,
            dispatcher: dispatcher.clone(),
            logs,
            metrics,
            credentials,
            vault,
            hosts: host_policy(&args, &advertise),
            forwarder: api::Forwarder::new(dispatcher.node_id().to_owned()),
            ready: AtomicBool::new(false),
            max_body_bytes: args.max_body_bytes,
            max_report_bytes: args.max_output_bytes + crate::dispatch::REPORT_ENVELOPE_BYTES,
            limits: api::listener::Limits {
                max_connections: args.max_connections,
                header_timeout: Duration::from_millis(args.header_timeout_ms),
            },
        });
        recover(&dispatcher).await?;
        Ok(App {
            args,
            state,
            behind,
            dispatcher,
            runtimes,
            listener,
            local,
            advertise,
            instance_listener,
            operator_token_given,
            store_name,
        })
    }
}

/// Where spans are exported and how, when `--otlp-endpoint` is set; a setting of the
/// exporter that cannot be used (a malformed header list) refuses the start.
fn span_settings(args: &ServeArgs) -> Result<Option<TracingSettings>, Failure> {
    let Some(endpoint) = args.otlp_endpoint() else {
        return Ok(None);
    };
    TracingSettings::new(endpoint, &args.otlp_service_name)
        .map(Some)
        .map_err(|err| Failure::config(err.to_string()))
}

/// The durable store: the PostgreSQL database of `--database-url`, or else SQLite in
/// the data directory. A URL that cannot be read is a bad setting (exit 64); a server
/// that cannot be reached or refuses us stops the start (exit 1). Messages name the
/// server, never the password.
/// Answers it with how to name it at start.
async fn open_store(args: &ServeArgs) -> Result<(Arc<dyn Store>, String), Failure> {
    let Some(url) = &args.database_url else {
        let sqlite =
            SqliteStore::open(&args.data_dir).map_err(|err| Failure::fatal(err.to_string()))?;
        return Ok((Arc::new(sqlite), "SQLite in the data dir".to_owned()));
    };
    let target = crate::store::postgres::describe_url(url.expose()).map_err(|err| {
        Failure::config(format!(
            "GANTRY_DATABASE_URL (--database-url) cannot be read ({err}): expected \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE, optionally with \
             ?sslmode=disable|prefer|require"
        ))
    })?;
    let store = PostgresStore::open(url.expose()).await.map_err(|err| {
        Failure::fatal(format!(
            "cannot open the PostgreSQL database on {target}: {err}"
        ))
    })?;
    Ok((Arc::new(store), format!("PostgreSQL on {target}")))
}

/// Which destination addresses the flags allow.
fn destination_policy(args: &ServeArgs) -> AddressPolicy {
    AddressPolicy {
        allow_private: args.allow_private_destinations,
    }
}

/// How results are delivered, from the flags.
fn delivery_settings(args: &ServeArgs, node_id: &str) -> DeliverySettings {
    let mut settings = DeliverySettings::new(node_id.to_owned(), destination_policy(args));
    settings.first_backoff = Duration::from_millis(args.destination_backoff_ms);
    settings.max_attempts = args.destination_max_attempts;
    settings
}

/// How the dispatcher runs executions, from the flags.
fn dispatch_settings(args: &ServeArgs, advertise: &str, node_id: String) -> DispatchSettings {
    DispatchSettings {
        callback_base: format!("{}/v1/internal/executions", advertise.trim_end_matches('/')),
        log_cap_bytes: args.log_cap_bytes,
        max_env_payload_bytes: MAX_ENV_PAYLOAD_BYTES,
        owner: node_id,
        // One node on its own database runs every execution it is asked about; on a
        // shared one, another node may run it.
        poll_results: args.database_url.as_ref().map(|_| POLL_RESULTS),
        warm: Supervision {
            health_interval: Duration::from_millis(args.health_interval_ms),
            ready_timeout: Duration::from_millis(args.ready_timeout_ms),
            stop_grace: Duration::from_millis(2_000),
            max_output_bytes: args.max_output_bytes,
        },
        max_chain_depth: args.max_chain_depth,
        max_output_bytes: args.max_output_bytes,
        max_queue_age: args.max_queue_age_ms.map(Duration::from_millis),
    }
}

/// Settles the executions a previous run of this node left started, then starts the
/// warm pools' minimum instances.
async fn recover(dispatcher: &Arc<Dispatcher>) -> Result<(), Failure> {
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
    Ok(())
}

/// Serves the callback and payload routes on the instances' own listener until
/// `stopped`.
fn serve_instances(listener: TcpListener, state: &Arc<AppState>, stopped: CancellationToken) {
    let router = api::internal_app(state.clone());
    tokio::spawn(async move {
        let limits = api::listener::Limits::default();
        let shutdown = stopped.cancelled_owned();
        if let Err(err) = api::listener::serve(listener, router, limits, shutdown).await {
            tracing::error!("the listener for instances failed: {err}");
        }
    });
}
