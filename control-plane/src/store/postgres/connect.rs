//! Reaching the PostgreSQL server: the connection URL read (and described without its
//! password), TLS as its `sslmode` asks, and the pool of connections the store uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
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

/// A connection URL, read: the driver's settings and the CA file to trust, if named.
#[derive(Clone)]
pub(super) struct Target {
    /// What the driver connects with.
    pub(super) config: tokio_postgres::Config,
    /// `sslrootcert`: PEM certificates to trust instead of the system's.
    pub(super) root_cert: Option<PathBuf>,
}

/// Reads a connection URL (`postgres://user:password@host:port/database?sslmode=...`,
/// or libpq's `key=value` form). Without an `sslmode` the connection is plain; with no
/// `connect_timeout` it gives up after ten seconds. `sslrootcert=FILE` (which the driver
/// does not know) names the CA certificates to trust.
pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
    let (url, root_cert) = take_root_cert(url);
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| codec::database("read the database URL", err))?;
    if !names_sslmode(&url) {
        // The driver's default is `prefer`; plain unless asked is what we document.
        config.ssl_mode(SslMode::Disable);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("gantry");
    }
    Ok(Target { config, root_cert })
}

/// Whether `url` is the URL form rather than `key=value` pairs.
fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Whether `url` sets `sslmode` (in a URL's query or as a `key=value` pair).
fn names_sslmode(url: &str) -> bool {
    let is_sslmode = |pair: &str| pair.trim_start().starts_with("sslmode=");
    if is_url(url) {
        url.split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(is_sslmode))
    } else {
        url.split_whitespace().any(is_sslmode)
    }
}

/// `url` without its `sslrootcert` parameter, and that parameter's value.
fn take_root_cert(url: &str) -> (String, Option<PathBuf>) {
    const KEY: &str = "sslrootcert=";
    let mut root_cert = None;
    if is_url(url) {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.strip_prefix(KEY) {
                Some(value) => {
                    let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                    root_cert = Some(PathBuf::from(value.as_ref()));
                    false
                }
                None => true,
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (url, root_cert)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|pair| match pair.strip_prefix(KEY) {
                Some(value) => {
                    root_cert = Some(PathBuf::from(value));
                    false
                }
                None => true,
            })
            .collect();
        (kept.join(" "), root_cert)
    }
}

/// The TLS connector for `mode`: the server's certificate checked, host name included,
/// against `root_cert`'s certificates or else the system's trusted ones (or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), with ring as the crypto provider.
pub(super) fn tls(
    mode: SslMode,
    root_cert: Option<&Path>,
) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match (mode, root_cert) {
        (SslMode::Disable, _) => {}
        (_, Some(file)) => {
            let unreadable = |err: &dyn std::fmt::Display| {
                failure(
                    "read sslrootcert",
                    Fault::Other,
                    format!("cannot read the certificates in {}: {err}", file.display()),
                )
            };
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|err| unreadable(&err))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| unreadable(&err))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(unreadable(&"no certificate in it"));
            }
        }
        (_, None) => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!("cannot read a trusted certificate for the database: {err}");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    ignored,
                    "no trusted certificate found: TLS connections to the database will \
                     fail (name the CA that signed the server's certificate with \
                     sslrootcert in the URL, or SSL_CERT_FILE)"
                );
            }
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

/// The pool of connections to `target`'s server; it connects lazily, on first use.
pub(super) fn pool(target: Target) -> Result<Pool, StoreError> {
    let Target { config, root_cert } = target;
    let tls = tls(config.get_ssl_mode(), root_cert.as_deref())?;
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
        let described = describe(&config.config);
        assert_eq!(described, "db.example:6543, database jobs");
        assert!(!described.contains("s3cret"));
        let config = parse("host=/run/pg user=me password=hidden").unwrap();
        assert_eq!(
            describe(&config.config),
            "/run/pg/.s.PGSQL.5432, database me"
        );
    }

    #[test]
    fn tls_is_off_unless_the_url_asks_for_it() {
        let plain = parse("postgres://u@h/db").unwrap().config;
        assert_eq!(plain.get_ssl_mode(), SslMode::Disable);
        let required = parse("postgres://u@h/db?connect_timeout=3&sslmode=require")
            .unwrap()
            .config;
        assert_eq!(required.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            required.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let preferred = parse("host=h sslmode=prefer").unwrap().config;
        assert_eq!(preferred.get_ssl_mode(), SslMode::Prefer);
        assert!(parse("postgres://u@h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url_for_tls_to_use() {
        let target =
            parse("postgres://u@h/db?sslrootcert=%2Fetc%2Fca%20x.pem&sslmode=require").unwrap();
        assert_eq!(target.root_cert, Some(PathBuf::from("/etc/ca x.pem")));
        assert_eq!(target.config.get_ssl_mode(), SslMode::Require);
        let target = parse("host=h sslrootcert=/ca.pem user=u").unwrap();
        assert_eq!(target.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(target.config.get_user(), Some("u"));
        assert_eq!(parse("postgres://u@h/db").unwrap().root_cert, None);
        let missing = tls(SslMode::Require, Some(Path::new("/nonexistent/ca.pem")));
        let err = missing.err().expect("an unreadable CA file is refused");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let Err(err) = parse("postgres://u:pw@h/db?nonsense=1") else {
            panic!("an unknown option is refused");
        };
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
