//! Reaching the PostgreSQL server: the connection URL read (and described without its
//! password), TLS as its `sslmode` asks, and the pool of connections the store uses.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::codec::{self, failure};
use crate::store::{Fault, StoreError};

/// Connections the pool keeps at most.
const POOL_SIZE: usize = 16;
/// How long opening a connection may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a free connection before the store counts as unavailable.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a URL points, for messages: hosts, ports and database, never the password.
pub(super) fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let port = ports.get(n).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{hosts}, database {database}")
}

/// Reads a connection URL (`postgres://user:password@host:port/database?sslmode=...`,
/// or libpq's `key=value` form). Without an `sslmode` the connection is plain; with no
/// `connect_timeout` it gives up after ten seconds.
pub(super) fn parse(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| codec::database("read the database URL", err))?;
    if !names_sslmode(url) {
        // The driver's default is `prefer`; plain unless asked is what we document.
        config.ssl_mode(SslMode::Disable);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("gantry");
    }
    Ok(config)
}

/// Whether `url` sets `sslmode` (in a URL's query or as a `key=value` pair).
fn names_sslmode(url: &str) -> bool {
    let is_sslmode = |pair: &str| pair.trim_start().starts_with("sslmode=");
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        url.split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(is_sslmode))
    } else {
        url.split_whitespace().any(is_sslmode)
    }
}

/// The TLS connector for `mode`: the server's certificate checked against the
/// system's trusted certificates (or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set) and the
/// host name, with ring as the crypto provider.
pub(super) fn tls(mode: SslMode) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    if mode != SslMode::Disable {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!("cannot read a trusted certificate for the database: {err}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                ignored,
                "no trusted certificate found: TLS connections to the database will fail \
                 (set SSL_CERT_FILE to the CA that signed the server's certificate)"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| failure("set up TLS", Fault::Other, err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The pool of connections to `config`'s server; it connects lazily, on first use.
pub(super) fn pool(config: tokio_postgres::Config) -> Result<Pool, StoreError> {
    let tls = tls(config.get_ssl_mode())?;
    let connect = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        // The driver's own timeout covers the TCP connect; this one the TLS handshake
        // and the authentication too.
        .create_timeout(Some(connect + Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|err| failure("build the connection pool", Fault::Other, err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_described_without_its_password() {
        let config = parse("postgres://gantry:s3cret@db.example:6543/jobs").unwrap();
        let described = describe(&config);
        assert_eq!(described, "db.example:6543, database jobs");
        assert!(!described.contains("s3cret"));
        let config = parse("host=/run/pg user=me password=hidden").unwrap();
        assert_eq!(describe(&config), "/run/pg/.s.PGSQL.5432, database me");
    }

    #[test]
    fn tls_is_off_unless_the_url_asks_for_it() {
        let plain = parse("postgres://u@h/db").unwrap();
        assert_eq!(plain.get_ssl_mode(), SslMode::Disable);
        let required = parse("postgres://u@h/db?connect_timeout=3&sslmode=require").unwrap();
        assert_eq!(required.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            required.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let preferred = parse("host=h sslmode=prefer").unwrap();
        assert_eq!(preferred.get_ssl_mode(), SslMode::Prefer);
        assert!(parse("postgres://u@h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = parse("postgres://u:pw@h/db?nonsense=1").unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
