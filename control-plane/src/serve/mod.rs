//! `gantry serve` in three steps: the settings checked (flags, descriptor limit, the
//! private data directory and its owner id), the app built ([`app::App::build`]: store,
//! secrets, tokens, runtimes, dispatcher, recovery) and the app run until SIGINT or
//! SIGTERM, then drained.

mod access;
mod app;
mod runtimes;

use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};

use self::app::App;
use crate::api::HostPolicy;
use crate::config::{LogFormat, ServeArgs, EXIT_CONFIG};
use crate::datadir;

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
    init_tracing(args.log_format);
    // Other processes of this user (functions included, when they run as it) must not
    // read this server's memory or environment, which hold tokens and secret keys.
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make the server non-dumpable: {err}");
    }
    match serve(args, operator_token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match LOG_FORMAT.get() {
                Some(LogFormat::Json) => {
                    tracing::error!(target: "gantry::serve", "{}", failure.message)
                }
                _ => eprintln!("gantry serve: {}", failure.message),
            }
            ExitCode::from(failure.code)
        }
    }
}

/// The log format chosen at start, for the lines written before and beside the log.
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn init_tracing(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // The current span names the execution a line is about.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Writes a start-up line for the operator: as it is in text logs, as a log record
/// in JSON logs (so the stream stays one object per line).
pub(crate) fn say(line: &str) {
    match LOG_FORMAT.get() {
        Some(LogFormat::Json) => tracing::info!(target: "gantry::serve", "{line}"),
        _ => eprintln!("{line}"),
    }
}

async fn serve(args: ServeArgs, operator_token: Option<String>) -> Result<(), Failure> {
    let settings = Settings::check(args)?;
    let dir = settings.args.data_dir.clone();
    // Blocking: it may retry for a moment.
    let _data_dir = tokio::task::spawn_blocking(move || lock_data_dir(&dir))
        .await
        .map_err(|err| Failure::fatal(format!("cannot lock the data directory: {err}")))??;
    let app = App::build(settings, operator_token).await?;
    app.run().await
}

/// Flags that passed every check, with the data directory prepared, its owner id and
/// the node id.
struct Settings {
    args: ServeArgs,
    /// The data directory's own id: it marks the processes and names the cgroups this
    /// node starts, so it is unique on the host whatever the node is called.
    owner: String,
    /// The node's id in the store: `--node-id`, else the owner id.
    node_id: String,
}

impl Settings {
    /// Checks the flags, raises the descriptor limit and prepares the data directory.
    fn check(mut args: ServeArgs) -> Result<Settings, Failure> {
        check_args(&args)?;
        raise_descriptor_limit();
        prepare_data_dir(&mut args)?;
        let owner = owner_id(&args.data_dir).map_err(|err| {
            Failure::config(format!(
                "GANTRY_DATA_DIR (--data-dir) {} is not writable: {err}",
                args.data_dir.display()
            ))
        })?;
        let node_id = args.node_id.clone().unwrap_or_else(|| owner.clone());
        Ok(Settings {
            args,
            owner,
            node_id,
        })
    }
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
    if let Some(id) = &args.node_id {
        check_node_id(id)?;
    }
    if let Some(url) = args.otlp_endpoint() {
        crate::telemetry::check_endpoint(url).map_err(|err| Failure::config(err.to_string()))?;
    }
    args.sampler()
        .map_err(|err| Failure::config(err.to_string()))?;
    if let Some(url) = &args.node_url {
        let host = url.strip_prefix("http://").unwrap_or_default();
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(Failure::config(format!(
                "GANTRY_NODE_URL (--node-url) must be an http:// URL without credentials, query or fragment, got {url:?}"
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

/// A node id names processes, containers and cgroups: a short word of safe characters.
fn check_node_id(id: &str) -> Result<(), Failure> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(safe) {
        return Err(Failure::config(format!(
            "GANTRY_NODE_ID (--node-id) must be 1 to 64 letters, digits, '.', '_' or '-', got {id:?}"
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

/// Takes the data directory's lock for the life of the server, or says which directory
/// another server uses.
fn lock_data_dir(dir: &Path) -> Result<datadir::DataDirLock, Failure> {
    datadir::lock_patiently(dir, datadir::LOCK_PATIENCE).map_err(|err| {
        let why = if err.kind() == std::io::ErrorKind::WouldBlock {
            "is in use by another gantry server (one server per data directory; give each node its own)".to_owned()
        } else {
            format!("cannot be locked: {err}")
        };
        Failure::config(format!(
            "GANTRY_DATA_DIR (--data-dir) {} {why}",
            dir.display()
        ))
    })
}

/// The names the Host header may carry: `--allowed-host`, and the hosts of the
/// advertised URL and of `--node-url` when they are names.
fn host_policy(args: &ServeArgs, advertise: &str) -> HostPolicy {
    let host_of = |url: &str| {
        url.split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default().to_owned())
    };
    let advertised = host_of(advertise);
    let node = args.node_url.as_deref().and_then(host_of);
    HostPolicy::new(
        args.allowed_hosts
            .iter()
            .cloned()
            .chain(advertised)
            .chain(node),
    )
}

/// A stable, random id for `data_dir`, created on first use; it marks the processes
/// this data directory's server starts, so a later start finds those a crash left
/// behind, and names its cgroups. It is the node id too, unless `--node-id` names one.
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

/// Resolves on SIGTERM or SIGINT, caught from the moment it is made (before the server
/// says it listens): a supervisor that signals right after that line gets a clean stop,
/// not the default action's abrupt end.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    let caught = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = caught else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
